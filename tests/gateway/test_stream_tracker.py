"""StreamTracker: however the upstream's bytes are cut into chunks, the relayed bytes are the same,
the terminal event is held back until the event is durable, and the usage is the provider's."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest
from starlette.testclient import TestClient

from tallybook.fakes.anthropic_messages import AnthropicMessagesFake
from tallybook.fakes.cohere_chat import CohereChatFake
from tallybook.fakes.ollama_chat import OllamaFake
from tallybook.fakes.openai_chat import OpenAIChatFake
from tallybook.gateway.events import Usage
from tallybook.gateway.metering import estimate_usage
from tallybook.gateway.providers.anthropic import MESSAGES
from tallybook.gateway.providers.base import Dialect, StreamTracker
from tallybook.gateway.providers.cohere import COHERE_CHAT
from tallybook.gateway.providers.ollama import OLLAMA_CHAT
from tallybook.gateway.providers.openai import CHAT, RESPONSES

HELLO = [{"role": "user", "content": "Say hello to the ledger."}]


def fetch(fake, path: str, body: dict, headers: dict[str, str]) -> tuple[bytes, object]:
    with TestClient(fake.app) as client:
        response = client.post(path, json=body, headers=headers)
    assert response.status_code == 200
    return response.content, fake.served.last().tokens


STREAMS = {
    "openai-chat": (CHAT, lambda: fetch(OpenAIChatFake(), "/v1/chat/completions", {
        "model": "o3-mini", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}},
        {"authorization": "Bearer sk-x"})),
    "openai-responses": (RESPONSES, lambda: fetch(OpenAIChatFake(), "/v1/responses", {
        "model": "gpt-4o", "input": "Hello", "stream": True}, {"authorization": "Bearer sk-x"})),
    "anthropic": (MESSAGES, lambda: fetch(AnthropicMessagesFake(), "/v1/messages", {
        "model": "claude-haiku-4-5", "max_tokens": 100, "messages": HELLO, "stream": True},
        {"x-api-key": "sk-ant-x", "anthropic-version": "2023-06-01"})),
    "cohere": (COHERE_CHAT, lambda: fetch(CohereChatFake(), "/v2/chat", {
        "model": "command-r", "messages": HELLO, "stream": True}, {"authorization": "Bearer k"})),
    "ollama": (OLLAMA_CHAT, lambda: fetch(OllamaFake(), "/api/chat", {"model": "llama3.2", "messages": HELLO}, {})),
}


def cuts(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks, at = [], 0
    while at < len(data):
        step = rng.choice((1, 2, 7, 64, 500))
        chunks.append(data[at:at + step])
        at += step
    return chunks


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_chunking_relays_the_same_bytes_and_finds_the_usage(name: str, seed: int) -> None:
    dialect, get = STREAMS[name]
    data, truth = get()
    tracker = StreamTracker(dialect)
    relayed, held_at = [], None
    for chunk in cuts(data, seed):
        now, held = tracker.feed(chunk)
        relayed.append(now)
        if held:
            assert held_at is None
            held_at = len(b"".join(relayed))
            relayed.append(held)
    relayed.append(tracker.flush())
    assert b"".join(relayed) == data
    assert held_at is not None and tracker.terminated
    assert data[held_at:].strip().splitlines()[-1].strip()  # the terminal event is what was held
    usage = tracker.usage
    assert usage is not None
    assert usage.input_tokens + usage.cache_read_tokens + usage.cache_write_5m_tokens == truth.input_tokens
    assert usage.output_tokens == truth.output_tokens and usage.reasoning_tokens == truth.reasoning_tokens


@pytest.mark.parametrize("seed", [0, 1])
def test_stripping_removes_only_what_the_gateway_asked_for(seed: int) -> None:
    data, truth = STREAMS["openai-chat"][1]()
    tracker = StreamTracker(CHAT, strip_usage=True)
    out = []
    for chunk in cuts(data, seed):
        now, held = tracker.feed(chunk)
        out += [now, held]
    out.append(tracker.flush())
    relayed = b"".join(out)
    assert b'"usage"' not in relayed and relayed.endswith(b"data: [DONE]\n\n")
    frames = [f for f in data.split(b"\n\n") if f and b'"usage":{' not in f]
    assert relayed == b"".join(f.replace(b',"usage":null', b"") + b"\n\n" for f in frames)
    assert tracker.usage is not None and tracker.usage.output_tokens == truth.output_tokens


def test_a_cut_stream_is_estimated_from_the_prompt_and_the_text_seen() -> None:
    data, _ = STREAMS["anthropic"][1]()
    events = data.split(b"\n\n")
    tracker = StreamTracker(MESSAGES)
    for event in events[:6]:  # message_start, block start, ping, three words
        tracker.feed(event + b"\n\n")
    assert not tracker.terminated
    usage = estimate_usage(MESSAGES, {"messages": HELLO}, tracker)
    start = json.loads(events[0].split(b"data: ")[1])["message"]["usage"]
    assert usage.origin == "estimated"
    assert usage.input_tokens == start["input_tokens"]  # the provider's figure where it gave one
    assert usage.output_tokens >= 3  # three words of text seen

    nothing = estimate_usage(CHAT, {"messages": [{"role": "user", "content": "word " * 40}]}, StreamTracker(CHAT))
    assert nothing.origin == "estimated" and nothing.input_tokens >= 40 and nothing.output_tokens == 0


def test_dialects_read_every_usage_field() -> None:
    chat = CHAT.usage({"usage": {"prompt_tokens": 100, "completion_tokens": 40, "prompt_tokens_details": {
        "cached_tokens": 60, "audio_tokens": 5, "cache_write_tokens": 10},
        "completion_tokens_details": {"reasoning_tokens": 12, "audio_tokens": 3}}})
    assert chat == Usage(input_tokens=30, cache_read_tokens=60, cache_write_5m_tokens=10, output_tokens=40,
                         reasoning_tokens=12, audio_input_tokens=5, audio_output_tokens=3)
    assert CHAT.usage({"usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}) == \
        Usage(input_tokens=9, output_tokens=2)  # the minimal shape of proxies and Ollama
    msg = MESSAGES.usage({"usage": {"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 100,
                                    "cache_creation_input_tokens": 30, "output_tokens_details": {"thinking_tokens": 4},
                                    "cache_creation": {"ephemeral_5m_input_tokens": 10,
                                                       "ephemeral_1h_input_tokens": 20}}})
    assert msg == Usage(input_tokens=5, cache_read_tokens=100, cache_write_5m_tokens=10, cache_write_1h_tokens=20,
                        output_tokens=7, reasoning_tokens=4)
    assert MESSAGES.usage({"usage": {"input_tokens": 5, "output_tokens": 7, "cache_creation_input_tokens": 30}}) \
        == Usage(input_tokens=5, cache_write_5m_tokens=30, output_tokens=7)
    assert COHERE_CHAT.usage({"usage": {"billed_units": {"input_tokens": 5, "output_tokens": 9},
                                        "tokens": {"input_tokens": 71, "output_tokens": 9}}}) == \
        Usage(input_tokens=5, output_tokens=9)
    assert OLLAMA_CHAT.usage({"done": True, "prompt_eval_count": 26, "eval_count": 298,
                              "total_duration": 5191566416}).gpu_seconds == Decimal("5.191566416")


def test_a_crlf_sse_stream_is_split_too() -> None:
    frames = [b'data: {"choices":[{"delta":{"content":"Hi"}}]}', (b'data: {"choices":[],"usage":{"prompt_tokens":3,'
              b'"completion_tokens":1}}'), b"data: [DONE]"]
    data = b"\r\n\r\n".join(frames) + b"\r\n\r\n"
    tracker: StreamTracker = StreamTracker(CHAT)
    now, held = tracker.feed(data)
    assert now + held == data and held.startswith(b"data: [DONE]")
    assert tracker.usage == Usage(input_tokens=3, output_tokens=1)


def test_dialect_base_counts_prompt_texts() -> None:
    texts = Dialect().prompt_texts({"system": [{"type": "text", "text": "Be brief."}], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "image"}]},
        {"role": "assistant", "content": "Two"}], "instructions": "Three"})
    assert texts == ["Be brief.", "Three", "One", "Two"]
