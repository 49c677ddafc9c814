"""The event is durable before the client sees the end of its answer: a spool that does not
acknowledge holds back the body of a JSON answer and the terminal event of a stream, nothing else."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import anyio.to_thread
import httpx
import pytest

from tallybook.config import Settings
from tallybook.gateway.app import create_app
from tallybook.gateway.events import UsageEvent
from tallybook.gateway.providers import AnthropicUpstream, OpenAIUpstream
from tallybook.gateway.server import serve_in_thread as serve_gateway
from tests.gateway.conftest import Stack

HELLO = [{"role": "user", "content": "Say hello to the ledger."}]


class GatedSpool:
    """Acknowledges an append only once the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.events: list[UsageEvent] = []

    async def append(self, event: UsageEvent) -> None:
        await anyio.to_thread.run_sync(self.gate.wait)
        self.events.append(event)


@pytest.fixture
def gated(stack: Stack) -> Iterator[tuple[str, str, GatedSpool]]:
    spool = GatedSpool()
    app = create_app(keys=stack.keys, limits=None, spool=spool, settings=Settings(), upstreams=[
        OpenAIUpstream(stack.upstream_urls["openai"], "sk-test"),
        AnthropicUpstream(stack.upstream_urls["anthropic"], "sk-ant-test")])
    server = serve_gateway(app)
    yield server.url, stack.key, spool
    spool.gate.set()
    if app.loop is not None:
        asyncio.run_coroutine_threadsafe(app.aclose(), app.loop).result(timeout=10)
    server.stop()


@pytest.mark.parametrize(("path", "body", "headers", "terminal"), [
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": HELLO, "stream": True}, {}, b"data: [DONE]"),
    ("/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": HELLO, "stream": True},
     {"anthropic-version": "2023-06-01"}, b"event: message_stop"),
])
def test_a_stream_waits_for_the_spool_only_at_its_terminal_event(gated, path, body, headers, terminal) -> None:
    url, key, spool = gated
    with httpx.stream("POST", url + path, json=body, headers={"authorization": f"Bearer {key}", **headers},
                      timeout=10) as response:
        stream = response.iter_raw()
        first = next(stream)  # the answer starts flowing while the event is not yet durable
        pending: list[bytes] = [first]
        stalled = threading.Event()

        def pump() -> None:
            for chunk in stream:
                pending.append(chunk)
                if terminal in chunk:
                    break
            stalled.set()

        threading.Thread(target=pump, daemon=True).start()
        assert not stalled.wait(0.5)  # held: the terminal event waits for the spool
        seen = b"".join(pending)
        assert seen and terminal not in seen and not spool.events
        spool.gate.set()
        assert stalled.wait(5)
    assert terminal in b"".join(pending) and len(spool.events) == 1


def test_a_json_answer_waits_for_the_spool(gated) -> None:
    url, key, spool = gated
    result: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: result.append(httpx.post(
        url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HELLO},
        headers={"authorization": f"Bearer {key}"}, timeout=10)))
    thread.start()
    thread.join(0.5)
    assert not result and not spool.events
    spool.gate.set()
    thread.join(5)
    assert result[0].status_code == 200 and len(spool.events) == 1
