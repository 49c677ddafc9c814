"""A ledger seeded the way users seed theirs: the faithful fakes, `tallybook connect` and `tallybook sync`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from tallybook.fakes.launcher import DEMO_KEYS, FakeCloud, start_fakes
from tests.cli.helpers import ok
from tests.support import FAKE_NOW

SINCE, UNTIL = "2026-10-01", "2026-10-10"
START, END = datetime(2026, 10, 1), datetime(2026, 10, 11)


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    fakes = start_fakes(now=FAKE_NOW)
    yield fakes
    fakes.stop()


@pytest.fixture
def synced(cloud: FakeCloud, cli_env: dict[str, str]) -> dict[str, str]:
    for provider, var in (("openai", "OPENAI_ADMIN_KEY"), ("anthropic", "ANTHROPIC_ADMIN_KEY")):
        ok("connect", provider, "--base-url", cloud.base_url(provider), env={**cli_env, var: DEMO_KEYS[provider]})
    ok("sync", "--since", SINCE, "--until", UNTIL, env=cli_env)
    return cli_env
