"""A running gateway in front of the four fake upstreams, a ledger with virtual keys, and a spool double."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tallybook.config import Settings
from tallybook.fakes.anthropic_messages import AnthropicMessagesFake
from tallybook.fakes.cohere_chat import CohereChatFake
from tallybook.fakes.ollama_chat import OllamaFake
from tallybook.fakes.openai_chat import OpenAIChatFake
from tallybook.fakes.server import RunningServer, serve_in_thread
from tallybook.gateway.app import create_app
from tallybook.gateway.events import UsageEvent
from tallybook.gateway.keys import KeyCache, create_key, revoke_key
from tallybook.gateway.providers import AnthropicUpstream, CohereUpstream, OllamaUpstream, OpenAIUpstream
from tallybook.gateway.server import Running
from tallybook.gateway.server import serve_in_thread as serve_gateway
from tallybook.ledger import store
from tallybook.ledger.db import open_ledger


class CapturingSpool:
    """Stands in for gateway.spool.Spool: keeps what was appended, in order."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    async def append(self, event: UsageEvent) -> None:
        self.events.append(event)

    def last(self) -> UsageEvent:
        return self.events[-1]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[UsageEvent]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.events


class Recorder:
    """ASGI wrapper of a fake: records the exact bytes of every response body it sends."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        parts: list[bytes] = []

        async def record(message: Any) -> None:
            if message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if not message.get("more_body"):
                    self.bodies.append(b"".join(parts))
            await send(message)

        await self.app(scope, receive, record)


@dataclass
class Stack:
    url: str
    key: str
    revoked_key: str
    key_id: str
    keys: KeyCache
    spool: CapturingSpool
    openai: OpenAIChatFake
    anthropic: AnthropicMessagesFake
    cohere: CohereChatFake
    ollama: OllamaFake
    engine: Any = None
    upstream_urls: dict[str, str] = field(default_factory=dict)
    recorders: dict[str, Recorder] = field(default_factory=dict)
    servers: list[RunningServer | Running] = field(default_factory=list)
    clients: list[Any] = field(default_factory=list)
    app: Any = None  # SDK clients a test made, closed after it


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    engine = open_ledger(f"sqlite:///{tmp_path_factory.mktemp('gw') / 'ledger.db'}")
    with engine.begin() as conn:
        org = store.ensure_org(conn, "default")
        info, secret = create_key(conn, org_id=org, name="app", customer="acme", feature="chat")
        old, revoked = create_key(conn, org_id=org, name="old")
        revoke_key(conn, org, old.id)
    fakes = {"openai": OpenAIChatFake(), "anthropic": AnthropicMessagesFake(), "cohere": CohereChatFake(),
             "ollama": OllamaFake()}
    recorders = {name: Recorder(fake.app) for name, fake in fakes.items()}
    servers = {name: serve_in_thread(recorder) for name, recorder in recorders.items()}
    upstreams = [OpenAIUpstream(servers["openai"].url, "sk-test", timeout=2.0),
                 AnthropicUpstream(servers["anthropic"].url, "sk-ant-test"),
                 CohereUpstream(servers["cohere"].url, "co-test"), OllamaUpstream(servers["ollama"].url)]
    keys = KeyCache(engine, refresh_seconds=3600)
    spool = CapturingSpool()
    settings = Settings(gateway_max_body_bytes=200_000, gateway_gpu_hour_cost="2.00")
    app = create_app(keys=keys, limits=None, spool=spool, upstreams=upstreams, settings=settings)
    gateway = serve_gateway(app)
    stack = Stack(gateway.url, secret, revoked, info.id, keys, spool, fakes["openai"],  # type: ignore[arg-type]
                fakes["anthropic"], fakes["cohere"], fakes["ollama"], engine,  # type: ignore[arg-type]
                {name: server.url for name, server in servers.items()}, recorders, [gateway, *servers.values()],
                  app=app)
    yield stack
    if app.loop is not None:  # close the upstream connection pools on the loop that opened them
        asyncio.run_coroutine_threadsafe(app.aclose(), app.loop).result(timeout=10)
    for server in [gateway, *servers.values()]:
        server.stop()
    engine.dispose()


@pytest.fixture
def gw(stack: Stack) -> Iterator[Stack]:
    for fake in (stack.openai, stack.anthropic, stack.cohere, stack.ollama):
        fake.faults.clear()
        fake.chunk_delay = 0.0
    yield stack
    while stack.clients:
        stack.clients.pop().close()
