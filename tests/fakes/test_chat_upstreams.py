"""The fake chat upstreams satisfy the official SDKs, and their ground truth matches what they sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import openai
import pytest

from tallybook.fakes.anthropic_messages import AnthropicMessagesFake
from tallybook.fakes.chat_upstreams import plan_reply
from tallybook.fakes.cohere_chat import CohereChatFake
from tallybook.fakes.ollama_chat import OllamaFake
from tallybook.fakes.openai_chat import OpenAIChatFake, cached_tokens
from tallybook.fakes.server import RunningServer, serve_in_thread

HELLO = [{"role": "user", "content": "Say hello to the ledger."}]
LONG = "All spend is metered. " * 300  # 6600 characters: ~1650 tokens, long enough to cache


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[tuple[OpenAIChatFake, RunningServer]]:
    fake = OpenAIChatFake()
    with serve_in_thread(fake.app) as server:
        yield fake, server


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[tuple[AnthropicMessagesFake, RunningServer]]:
    fake = AnthropicMessagesFake()
    with serve_in_thread(fake.app) as server:
        yield fake, server


@pytest.fixture
def oai(openai_fake) -> Iterator[openai.OpenAI]:
    fake, server = openai_fake
    fake.faults.clear()
    with openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def ant(anthropic_fake) -> Iterator[anthropic.Anthropic]:
    fake, server = anthropic_fake
    fake.faults.clear()
    with anthropic.Anthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


# -- OpenAI ---------------------------------------------------------------------------------------------


def test_chat_completion_usage_is_predictable_and_recorded(oai, openai_fake):
    fake, _ = openai_fake
    response = oai.chat.completions.create(model="gpt-4o-mini", messages=HELLO,
                                           extra_headers={"Idempotency-Key": "idem-1"})
    expected = plan_reply([HELLO[0]["content"]])
    assert response.choices[0].message.content == expected.text
    assert response.usage.prompt_tokens == expected.prompt_tokens
    assert response.usage.completion_tokens == expected.completion_tokens
    assert response.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens
    served = fake.served.find(response._request_id)
    assert served.idempotency_key == "idem-1"
    assert served.api_key == "sk-test" and served.model == "gpt-4o-mini" and served.completed
    assert response.usage.model_dump(exclude_none=True) == served.usage


def test_long_prompt_reads_cache_and_max_tokens_truncates(oai):
    response = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": LONG}],
                                           max_completion_tokens=3)
    prompt = plan_reply([LONG]).prompt_tokens
    assert response.usage.prompt_tokens_details.cached_tokens == cached_tokens(prompt) == 1024
    assert response.usage.completion_tokens == 3
    assert response.choices[0].finish_reason == "length"


def test_chat_stream_with_include_usage_ends_with_a_usage_chunk(oai, openai_fake):
    fake, _ = openai_fake
    with oai.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True,
                                     stream_options={"include_usage": True}) as stream:
        chunks = list(stream)
    *content, last = chunks
    assert last.choices == [] and last.usage is not None
    assert all(chunk.usage is None and chunk.choices for chunk in content)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in content)
    assert text == plan_reply([HELLO[0]["content"]]).text
    assert content[-1].choices[0].finish_reason == "stop"
    served = fake.served.last()
    assert served.stream and served.completed and served.chunks == len(chunks) + 1  # + [DONE]
    assert last.usage.model_dump(exclude_none=True) == served.usage


def test_chat_stream_without_include_usage_has_no_usage(oai):
    with oai.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True) as stream:
        chunks = list(stream)
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)


def test_responses_create_reports_input_and_output_usage(oai, openai_fake):
    fake, _ = openai_fake
    response = oai.responses.create(model="o3-mini", instructions="Be brief.", input=LONG)
    expected = plan_reply(["Be brief.", LONG], reasoning=True)
    assert response.output_text == expected.text
    usage = response.usage
    assert usage.input_tokens == expected.prompt_tokens
    assert usage.input_tokens_details.cached_tokens == cached_tokens(expected.prompt_tokens)
    assert usage.output_tokens == expected.completion_tokens
    assert usage.output_tokens_details.reasoning_tokens == expected.reasoning_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert fake.served.find(response._request_id).usage == usage.model_dump(exclude_none=True)


def test_responses_stream_ends_with_completed_usage(oai, openai_fake):
    fake, _ = openai_fake
    with oai.responses.create(model="gpt-4.1", input="Hi", stream=True) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.usage.model_dump(exclude_none=True) == fake.served.last().usage
    with oai.responses.stream(model="gpt-4.1", input="Hi") as helper:
        final = helper.get_final_response()
    assert final.output_text == plan_reply(["Hi"]).text
    assert final.usage.output_tokens == plan_reply(["Hi"]).completion_tokens


def test_embeddings_and_models(oai, openai_fake):
    fake, _ = openai_fake
    result = oai.embeddings.create(model="text-embedding-3-small", input=["one", "two words"], dimensions=4)
    assert [len(item.embedding) for item in result.data] == [4, 4]
    assert result.usage.prompt_tokens == result.usage.total_tokens == 1 + 3
    assert fake.served.last().tokens.input_tokens == 4
    encoded = oai.embeddings.create(model="text-embedding-3-small", input="one", encoding_format="base64")
    assert isinstance(encoded.data[0].embedding, str)
    assert "gpt-4o-mini" in [model.id for model in oai.models.list()]


def test_async_client_streams_usage(openai_fake):
    _, server = openai_fake

    async def run() -> tuple[str, int]:
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="sk-test") as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True})
            text, usage = "", 0
            async for chunk in stream:
                text += "".join(c.delta.content or "" for c in chunk.choices)
                usage = chunk.usage.completion_tokens if chunk.usage else usage
            return text, usage

    text, completion_tokens = asyncio.run(run())
    assert text == plan_reply([HELLO[0]["content"]]).text
    assert completion_tokens == plan_reply([HELLO[0]["content"]]).completion_tokens


def test_openai_errors_parse_as_sdk_errors(openai_fake, oai):
    _, server = openai_fake
    with openai.OpenAI(base_url=server.url + "/v1", api_key="bad-key", max_retries=0) as client, \
            pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert caught.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as bad:
        oai.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert bad.value.param == "messages"
    response = httpx.post(server.url + "/v1/chat/completions", content=b"{not json",
                          headers={"Authorization": "Bearer sk-test"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    missing = httpx.post(server.url + "/v1/chat/completions", json={"messages": HELLO},
                         headers={"Authorization": "Bearer sk-test"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "model"


def test_injected_429_and_stream_cut(openai_fake, oai):
    fake, server = openai_fake
    httpx.post(server.url + "/_fake/faults", json=[
        {"path": "/v1/chat/completions", "kind": "status", "status": 429, "retry_after": "1"},
        {"path": "/v1/chat/completions", "kind": "stream_cut", "after_chunks": 3},
    ])
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    with oai.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True,
                                     stream_options={"include_usage": True}) as stream:
        chunks = list(stream)
    assert len(chunks) == 3 and all(chunk.usage is None for chunk in chunks)
    served = fake.served.last()
    assert served.chunks == 3 and not served.completed
    assert fake.served.all()[-2].status == 429


def test_cancelled_stream_is_recorded_incomplete():
    fake = OpenAIChatFake(chunk_delay=0.02)
    with serve_in_thread(fake.app) as server, \
            openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test") as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True,
                                                stream_options={"include_usage": True})
        for _, _chunk in zip(range(3), stream, strict=False):
            pass
        stream.close()
        time.sleep(0.2)
        served = fake.served.last()
        assert not served.completed and served.chunks < plan_reply([HELLO[0]["content"]]).completion_tokens
        assert served.usage["completion_tokens"] == plan_reply([HELLO[0]["content"]]).completion_tokens
        assert fake.served.totals()["requests"] == 0
        assert fake.served.totals(completed_only=False)["output_tokens"] == served.tokens.output_tokens
        listed = httpx.get(server.url + "/_fake/served").json()
        assert listed[0]["request_id"] == served.request_id and listed[0]["completed"] is False


# -- Anthropic ------------------------------------------------------------------------------------------


def test_messages_create_usage(ant, anthropic_fake):
    fake, _ = anthropic_fake
    message = ant.messages.create(model="claude-sonnet-4-20250514", max_tokens=1024, messages=HELLO)
    expected = plan_reply([HELLO[0]["content"]])
    assert message.content[0].text == expected.text
    assert message.usage.input_tokens == expected.prompt_tokens
    assert message.usage.output_tokens == expected.completion_tokens
    assert message.usage.cache_read_input_tokens == message.usage.cache_creation_input_tokens == 0
    served = fake.served.find(message._request_id)
    reported = {k: v for k, v in served.usage.items() if v is not None}
    assert message.usage.model_dump(exclude_none=True) == reported


def test_prompt_cache_writes_then_reads(ant, anthropic_fake):
    fake, _ = anthropic_fake
    control = {"type": "ephemeral", "ttl": "1h"}
    system = [{"type": "text", "text": LONG + "cache test", "cache_control": control}]
    first, second = (
        ant.messages.create(model="claude-haiku-4-5", max_tokens=50, system=system, messages=HELLO)
        for _ in range(2)
    )
    written = first.usage.cache_creation_input_tokens
    assert written > 1024 and first.usage.cache_creation.ephemeral_1h_input_tokens == written
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == written and second.usage.cache_creation_input_tokens == 0
    total = plan_reply([system[0]["text"], HELLO[0]["content"]]).prompt_tokens
    assert first.usage.input_tokens + written == total == second.usage.input_tokens + written
    assert fake.served.last().tokens.cache_read_tokens == written


def test_messages_stream_final_usage_matches_ground_truth(ant, anthropic_fake):
    fake, _ = anthropic_fake
    with ant.messages.stream(model="claude-sonnet-4-20250514", max_tokens=4, messages=HELLO) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    served = fake.served.last()
    assert served.completed and final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == served.usage["output_tokens"] == 4
    assert final.usage.input_tokens == served.usage["input_tokens"]
    assert final.content[0].text == plan_reply([HELLO[0]["content"]], 4).text


def test_raw_stream_frames_are_event_and_data_lines(anthropic_fake):
    _, server = anthropic_fake
    response = httpx.post(server.url + "/v1/messages",
                          headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
                          json={"model": "claude", "max_tokens": 100, "messages": HELLO, "stream": True})
    events = _sse_events(response.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    start, delta = events[0][1]["message"]["usage"], events[-2][1]["usage"]
    expected = plan_reply([HELLO[0]["content"]])
    assert start["output_tokens"] == 1 and start["input_tokens"] == expected.prompt_tokens
    assert delta["output_tokens"] == expected.completion_tokens == names.count("content_block_delta")


def test_count_tokens(ant):
    counted = ant.messages.count_tokens(model="claude-sonnet-4-20250514", system="Be brief.", messages=HELLO)
    assert counted.input_tokens == plan_reply(["Be brief.", HELLO[0]["content"]]).prompt_tokens


def test_anthropic_errors_parse_as_sdk_errors(anthropic_fake, ant):
    _, server = anthropic_fake
    with anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0) as client, \
            pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model="claude-sonnet-4-20250514", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.create(model="claude-sonnet-4-20250514", max_tokens=0, messages=HELLO)
    response = httpx.post(server.url + "/v1/messages", headers={"x-api-key": "sk-ant-test"},
                          json={"model": "claude", "max_tokens": 5, "messages": HELLO})
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error",
                                        "message": "anthropic-version: header is required"}


# -- Cohere and Ollama ----------------------------------------------------------------------------------


def _sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_cohere_v2_chat_usage_and_stream():
    fake = CohereChatFake()
    expected = plan_reply([HELLO[0]["content"]])
    auth = {"Authorization": "Bearer co-key"}
    with serve_in_thread(fake.app) as server, httpx.Client(base_url=server.url, headers=auth) as client:
        body = client.post("/v2/chat", json={"model": "command-a-03-2025", "messages": HELLO}).json()
        assert body["finish_reason"] == "COMPLETE"
        assert body["message"]["content"][0]["text"] == expected.text
        usage = body["usage"]
        assert usage["billed_units"] == {"input_tokens": expected.prompt_tokens,
                                         "output_tokens": expected.completion_tokens}
        assert usage["tokens"]["input_tokens"] == expected.prompt_tokens + 66
        streamed = client.post("/v2/chat", json={"model": "command-a-03-2025", "messages": HELLO,
                                                 "stream": True})
        events = _sse_events(streamed.text)
        assert [name for name, _ in events][:2] == ["message-start", "content-start"]
        name, end = events[-1]
        assert name == "message-end" and end["delta"]["usage"] == usage
        assert client.post("/v2/chat", json={"model": "x", "messages": HELLO},
                           headers={"Authorization": ""}).status_code == 401
    assert fake.served.totals()["output_tokens"] == 2 * expected.completion_tokens


def test_ollama_native_and_openai_compatible():
    fake = OllamaFake()
    expected = plan_reply([HELLO[0]["content"]])
    with serve_in_thread(fake.app) as server, httpx.Client(base_url=server.url) as client:
        lines = [json.loads(line) for line in
                 client.post("/api/chat", json={"model": "llama3.2", "messages": HELLO}).text.splitlines()]
        *parts, final = lines
        assert not any(part["done"] for part in parts) and final["done"] and final["done_reason"] == "stop"
        assert "".join(part["message"]["content"] for part in parts) == expected.text
        assert final["prompt_eval_count"] == expected.prompt_tokens
        assert final["eval_count"] == expected.completion_tokens
        assert final["eval_duration"] == expected.completion_tokens * 20_000_000
        assert final["total_duration"] > final["prompt_eval_duration"] + final["eval_duration"]
        single = client.post("/api/chat", json={"model": "llama3.2", "messages": HELLO, "stream": False,
                                                "options": {"num_predict": 2}}).json()
        assert single["done_reason"] == "length" and single["eval_count"] == 2
        assert client.post("/api/chat", json={"messages": HELLO}).json() == {"error": "model is required"}
        with openai.OpenAI(base_url=server.url + "/v1", api_key="ollama") as oai:
            response = oai.chat.completions.create(model="llama3.2", messages=HELLO)
    assert response.system_fingerprint == "fp_ollama" and response.id.startswith("chatcmpl-")
    assert response.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": expected.prompt_tokens, "completion_tokens": expected.completion_tokens,
        "total_tokens": expected.prompt_tokens + expected.completion_tokens}
    assert [s.stream for s in fake.served.all()] == [True, False, False, False]


def test_delay_fault_does_not_stall_other_requests(openai_fake, oai):
    fake, _ = openai_fake
    fake.faults.add({"path": "/v1/chat/completions", "kind": "delay", "seconds": 0.5})
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(oai.chat.completions.create, model="gpt-4o-mini", messages=HELLO)
        time.sleep(0.05)
        started = time.monotonic()
        oai.models.list()
        assert time.monotonic() - started < 0.3
        assert slow.result().usage.total_tokens > 0
