"""Start the fake provider servers together, on fixed or free loopback ports."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Self

from tallybook.fakes.server import RunningServer, serve_in_thread

DEMO_KEYS = {
    "openai": "sk-admin-demo-openai-0000000000000000",
    "anthropic": "sk-ant-admin01-demo-0000000000000000",
    "cursor": "key_" + "0" * 60 + "demo",  # the Cursor fake's DEMO_KEY
}


@dataclass
class FakeCloud:
    servers: dict[str, RunningServer]
    fakes: dict[str, object]
    stack: ExitStack

    def base_url(self, provider: str) -> str:
        url = self.servers[provider].url
        return url + "/v1" if provider == "openai" else url

    def stop(self) -> None:
        self.stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_fakes(*, ports: dict[str, int] | None = None, seed: int = 7, days: int = 120,
                now: datetime | None = None) -> FakeCloud:
    """The admin-API fakes (OpenAI, Anthropic, Cursor), seeded alike, each on its own port (0 = any free one)."""
    from tallybook.fakes.anthropic_admin import AnthropicAdminFake
    from tallybook.fakes.cursor_admin import CursorAdminFake
    from tallybook.fakes.openai_admin import OpenAIAdminFake

    ports = ports or {}
    fakes: dict[str, object] = {
        "openai": OpenAIAdminFake(seed=seed, days=days, now=now),
        "anthropic": AnthropicAdminFake(seed=seed, days=days, now=now),  # also Claude Code analytics
        "cursor": CursorAdminFake(seed=seed, days=days, now=now),
    }
    stack = ExitStack()
    servers = {}
    try:
        for name, fake in fakes.items():
            servers[name] = stack.enter_context(serve_in_thread(fake.app, port=ports.get(name, 0)))  # type: ignore[attr-defined]
    except BaseException:
        stack.close()
        raise
    return FakeCloud(servers, fakes, stack)
