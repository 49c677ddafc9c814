"""OpenAI-shaped requests for Anthropic, Cohere and Ollama models go to those providers' own
OpenAI-compatible APIs, and each is metered exactly with the usage that upstream reported."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.gateway.test_gateway_sdks import HELLO, assert_exact, oai

# (model, X-LLM-Provider or None, the fake that must have served it, the path it must have reached)
ROUTED = [
    ("claude-haiku-4-5", None, "anthropic", "/v1/chat/completions"),
    ("claude-sonnet-4-6", "anthropic", "anthropic", "/v1/chat/completions"),
    ("command-r-plus", None, "cohere", "/compatibility/v1/chat/completions"),
    ("command-a-03-2025", "cohere", "cohere", "/compatibility/v1/chat/completions"),
    ("llama3.2", None, "ollama", "/v1/chat/completions"),
    ("qwen2.5:7b", "ollama", "ollama", "/v1/chat/completions"),
]


def fake_of(gw, name: str):
    return getattr(gw, name)


@pytest.mark.parametrize(("model", "header", "provider", "path"), ROUTED)
def test_non_streamed_answer_is_the_upstreams_and_metered_exactly(gw, model, header, provider, path) -> None:
    client = oai(gw, **({"X-LLM-Provider": header} if header else {}))
    raw = client.chat.completions.with_raw_response.create(model=model, messages=HELLO)
    reply = raw.parse()
    fake = fake_of(gw, provider)
    served = fake.served.last()
    assert (served.provider, served.path, served.model) == (provider, path, model)
    assert raw.http_response.content == gw.recorders[provider].bodies[-1]  # the bytes the SDK got
    assert reply.usage is not None and reply.usage.prompt_tokens == served.tokens.input_tokens
    event = gw.spool.last()
    assert (event.provider, event.endpoint, event.model, event.outcome) == (provider, "chat.completions", model, "ok")
    assert_exact(event, fake)
    assert event.usage.input_tokens == served.tokens.input_tokens and event.usage.output_tokens > 0


@pytest.mark.parametrize(("model", "header", "provider", "path"), ROUTED[::2])
def test_streams_are_metered_exactly_whether_or_not_the_client_asked_for_usage(gw, model, header, provider,
                                                                                path) -> None:
    client = oai(gw, **({"X-LLM-Provider": header} if header else {}))
    fake = fake_of(gw, provider)

    chunks = list(client.chat.completions.create(model=model, messages=HELLO, stream=True))
    assert chunks and all(c.usage is None for c in chunks)  # the usage chunk the gateway asked for stays hidden
    assert fake.served.last().path == path
    assert gw.spool.last().streamed and gw.spool.last().outcome == "ok"
    assert_exact(gw.spool.last(), fake)

    chunks = list(client.chat.completions.create(model=model, messages=HELLO, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == fake.served.last().tokens.output_tokens
    assert_exact(gw.spool.last(), fake)


def test_async_client_to_each_compatible_api(gw) -> None:
    async def run() -> list[tuple[str, int, int]]:
        seen = []
        async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0) as client:
            for model, header, provider, _ in ROUTED[::2]:
                extra = {"X-LLM-Provider": header} if header else {}
                reply = await client.chat.completions.create(model=model, messages=HELLO, extra_headers=extra)
                assert reply.usage is not None
                seen.append((provider, reply.usage.prompt_tokens, reply.usage.completion_tokens))
                event = gw.spool.last()
                assert event.provider == provider
                assert (event.usage.input_tokens, event.usage.output_tokens) == seen[-1][1:]
        return seen

    for provider, prompt, completion in asyncio.run(run()):
        assert prompt > 0 and completion > 0, provider


def test_a_cancelled_stream_to_a_compatible_api_is_estimated(gw) -> None:
    before = len(gw.spool.events)
    body = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Tell a long story " * 20}],
            "stream": True}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {gw.key}", "x-fake-chunk-delay": "0.05"}) as response:
        assert response.status_code == 200
        for _ in zip(range(3), response.iter_raw(), strict=False):
            pass
    event = gw.spool.wait_for(before + 1)[-1]
    assert (event.provider, event.outcome, event.usage.origin) == ("anthropic", "cancelled", "estimated")
    assert not gw.anthropic.served.last().completed
    assert event.usage.input_tokens > 0 and event.usage.output_tokens >= 1
