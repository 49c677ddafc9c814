"""Acceptance: the official openai and anthropic SDKs, pointed at the gateway with only base_url and key
changed, get the upstream's exact bytes, streamed and not, sync and async. The SDKs get an HTTP client
whose transport keeps every body byte it hands them. (An OpenAI stream the client did not ask usage
for differs by design: test_gateway_sdks.py derives those bytes from the upstream's.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import httpx2  # the anthropic SDK's own fork of httpx, which it requires for http_client
import openai
import pytest

from tests.gateway.test_gateway_sdks import HELLO, assert_exact

SYSTEM = [{"type": "text", "text": "You keep the ledger. " * 10}]


def keeping(http: Any, *, sync: bool) -> Any:
    """A real transport of the httpx package `http` (the anthropic SDK brings its own, httpx2) that
    records the body bytes of each response as the SDK reads them, in `.bodies`."""

    class Kept(http.SyncByteStream, http.AsyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, stream: Any, into: list[bytes]) -> None:
            self.stream, self.into = stream, into

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self.stream:
                self.into.append(chunk)
                yield chunk

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self.stream:
                self.into.append(chunk)
                yield chunk

        def close(self) -> None:
            self.stream.close()

        async def aclose(self) -> None:
            await self.stream.aclose()

    class Keeping(http.HTTPTransport if sync else http.AsyncHTTPTransport):  # type: ignore[misc, name-defined]
        bodies: list[list[bytes]]

        def keep(self, response: Any) -> Any:
            self.bodies.append([])
            response.stream = Kept(response.stream, self.bodies[-1])
            return response

        def handle_request(self, request: Any) -> Any:
            return self.keep(super().handle_request(request))

        async def handle_async_request(self, request: Any) -> Any:
            return self.keep(await super().handle_async_request(request))

        def last(self) -> bytes:
            return b"".join(self.bodies[-1])

    transport = Keeping()
    transport.bodies = []
    return transport


def calls(sdk: Any, provider: str, stream: bool) -> Any:
    """The SDK call for `provider`, streamed or not; returns what the SDK parsed."""
    if provider == "openai":
        extra = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        return sdk.chat.completions.create(model="gpt-4o-mini", messages=HELLO, **extra)
    return sdk.messages.create(model="claude-haiku-4-5", max_tokens=60, system=SYSTEM, messages=HELLO, stream=stream)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_sync_sdk_gets_the_upstreams_bytes(gw, provider: str, stream: bool) -> None:
    if provider == "openai":
        transport = keeping(httpx, sync=True)
        sdk: Any = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0,
                                 http_client=httpx.Client(transport=transport))
    else:
        transport = keeping(httpx2, sync=True)
        sdk = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0,
                                  http_client=httpx2.Client(transport=transport))
    with sdk:
        result = calls(sdk, provider, stream)
        parsed = list(result) if stream else [result]
    assert parsed
    assert transport.last() == gw.recorders[provider].bodies[-1]
    fake = gw.openai if provider == "openai" else gw.anthropic
    assert_exact(gw.spool.last(), fake)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_async_sdk_gets_the_upstreams_bytes(gw, provider: str, stream: bool) -> None:
    transport = keeping(httpx if provider == "openai" else httpx2, sync=False)

    async def run() -> int:
        if provider == "openai":
            sdk: Any = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0,
                                          http_client=httpx.AsyncClient(transport=transport))
        else:
            sdk = anthropic.AsyncAnthropic(base_url=gw.url, api_key=gw.key, max_retries=0,
                                           http_client=httpx2.AsyncClient(transport=transport))
        async with sdk:
            result = await calls(sdk, provider, stream)
            parsed = [item async for item in result] if stream else [result]
        return len(parsed)

    assert asyncio.run(run())
    assert transport.last() == gw.recorders[provider].bodies[-1]
    fake = gw.openai if provider == "openai" else gw.anthropic
    assert_exact(gw.spool.last(), fake)
