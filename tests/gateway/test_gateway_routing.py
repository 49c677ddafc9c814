"""Routing to the OpenAI-compatible APIs of Anthropic, Cohere and Ollama, with upstreams behind a
recording client double (no fake server needed): the right URL, the right auth header, usage read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tallybook.config import Settings
from tallybook.gateway.app import create_app
from tallybook.gateway.providers import AnthropicUpstream, CohereUpstream, OllamaUpstream, OpenAIUpstream
from tallybook.gateway.routing import ROUTES, RouteError, choose_provider, parse_tags, with_stream_usage
from tests.gateway.conftest import CapturingSpool, Stack

CHAT = ROUTES[("POST", "/v1/chat/completions")]


class Sent:
    def __init__(self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.method, self.url, self.body = method, url, body
        self.headers = {k.decode(): v.decode() for k, v in headers}


class Answer:
    """What `HttpClient.send` returns, for a whole JSON answer."""

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status, self.body = status, body
        self.headers = [(b"content-type", b"application/json"), *headers]

    def header(self, name: bytes) -> str | None:
        return next((v.decode() for k, v in self.headers if k == name), None)

    async def read(self) -> bytes:
        return self.body

    async def chunks(self):  # type: ignore[no-untyped-def]
        yield self.body

    def close(self) -> None:
        pass


class RecordingClient:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def send(self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> Answer:
        return self.answer(Sent(method, url, headers, body))

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize(("model", "header", "provider"), [
    ("gpt-4o-mini", None, "openai"), ("o3-mini", None, "openai"), ("text-embedding-3-small", None, "openai"),
    ("claude-sonnet-4-6", None, "anthropic"), ("command-r-plus", None, "cohere"), ("llama3.2", None, "ollama"),
    ("my-finetune:latest", None, "ollama"), ("anything", "Cohere", "cohere"),
])
def test_provider_from_header_or_model(model: str, header: str | None, provider: str) -> None:
    assert choose_provider(CHAT, header, model) == provider


def test_unknown_provider_and_model_name_the_fix() -> None:
    with pytest.raises(RouteError, match="X-LLM-Provider"):
        choose_provider(CHAT, None, "mystery-9")
    with pytest.raises(RouteError, match="does not serve responses"):
        choose_provider(ROUTES[("POST", "/v1/responses")], "anthropic", "claude-sonnet-4-6")
    assert parse_tags("team=core, env = prod,flag") == {"team": "core", "env": "prod", "flag": ""}


def test_compatible_apis_get_the_request_with_their_own_auth(stack: Stack) -> None:
    seen: list[Sent] = []

    def answer(request: Sent) -> Answer:
        seen.append(request)
        body = json.loads(request.body)
        return Answer(200, json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"], "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}).encode(),
            [(b"x-request-id", b"req_mock")])

    def upstream(kind: Any, url: str, key: str | None) -> Any:
        return kind(url, key, client=RecordingClient(answer))

    spool = CapturingSpool()
    app = create_app(keys=stack.keys, limits=None, spool=spool, settings=Settings(), upstreams=[
        upstream(AnthropicUpstream, "https://api.anthropic.com", "sk-ant-x"),
        upstream(CohereUpstream, "https://api.cohere.com/", "co-x"),
        upstream(OllamaUpstream, "http://gpu:11434/v1", None),
        upstream(OpenAIUpstream, "https://api.openai.com/v1", "sk-x")])

    async def call(model: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.post("/v1/chat/completions", json={"model": model, "messages": []},
                                     headers={"authorization": f"Bearer {stack.key}", "anthropic-beta": "x"})

    for model in ("claude-sonnet-4-6", "command-a-03-2025", "llama3.2", "gpt-4o-mini"):
        response = asyncio.run(call(model))
        assert response.status_code == 200 and response.headers["x-request-id"] == "req_mock"
    urls = [str(r.url) for r in seen]
    assert urls == ["https://api.anthropic.com/v1/chat/completions",
                    "https://api.cohere.com/compatibility/v1/chat/completions",
                    "http://gpu:11434/v1/chat/completions", "https://api.openai.com/v1/chat/completions"]
    assert seen[0].headers["x-api-key"] == "sk-ant-x" and "authorization" not in seen[0].headers
    assert seen[0].headers["anthropic-beta"] == "x"  # other headers go through as sent
    assert seen[1].headers["authorization"] == "Bearer co-x"
    assert "authorization" not in seen[2].headers  # keyless Ollama
    assert seen[3].headers["authorization"] == "Bearer sk-x" and seen[3].headers["accept-encoding"] == "identity"
    assert [(e.provider, e.usage.input_tokens, e.usage.output_tokens) for e in spool.events] == [
        ("anthropic", 12, 3), ("cohere", 12, 3), ("ollama", 12, 3), ("openai", 12, 3)]
    assert spool.events[2].usage.gpu_seconds is not None  # wall time: the compatible API has no durations


@pytest.mark.parametrize("raw", [
    b'{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"caf\\u00e9 1.10"}]}',
    b'  \n{ "stream" : true, "temperature": 1.0, "model": "gpt-4o", "n": 12345678901234567890 }',
])
def test_a_stream_asked_for_usage_keeps_every_byte_the_client_sent(raw: bytes) -> None:
    body = json.loads(raw)
    sent, strip = with_stream_usage(CHAT, dict(body), raw)
    assert strip  # the client did not ask for the usage chunk: the gateway hides it again
    assert json.loads(sent) == {**body, "stream_options": {"include_usage": True}}
    spliced = b'"stream_options":{"include_usage":true},'
    assert sent.replace(spliced, b"", 1) == raw  # "1.0", the escape and the big number are as they were


def test_stream_options_of_the_clients_own_are_kept_beside_include_usage() -> None:
    raw = b'{"model":"gpt-4o","stream":true,"stream_options":{"include_obfuscation":false}}'
    sent, strip = with_stream_usage(CHAT, json.loads(raw), raw)
    assert strip and json.loads(sent)["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    asked = b'{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}'
    assert with_stream_usage(CHAT, json.loads(asked), asked) == (asked, False)
