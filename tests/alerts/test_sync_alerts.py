"""Pull-based alerts fire right after the sync that reveals them: a refused admin key, a failed run."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tallybook.fakes.launcher import DEMO_KEYS, FakeCloud, start_fakes
from tests.alerts.receivers import HttpReceiver, start_http_receiver
from tests.cli.helpers import ok, run
from tests.support import FAKE_NOW


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    fakes = start_fakes(now=FAKE_NOW)
    yield fakes
    fakes.stop()


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = start_http_receiver()
    yield receiver
    receiver.close()


def test_a_sync_refused_with_401_alerts_once_per_channel(cli_env: dict[str, str], cloud: FakeCloud,
                                                         http: HttpReceiver) -> None:
    ok("connect", "openai", "--base-url", cloud.base_url("openai"), env={**cli_env, "OPENAI_ADMIN_KEY": DEMO_KEYS["openai"]})
    ok("alerts", "channels", "add", "ops", "--kind", "slack", "--url", http.url + "/slack")
    ok("alerts", "add", "syncs", "--kind", "sync_failed", "--channel", "ops")
    ok("alerts", "add", "keys", "--kind", "key_failing", "--channel", "ops")
    ok("sync", "--since", "2026-11-01", "--until", "2026-11-02")
    assert http.received == []  # a good sync says nothing

    cloud.fakes["openai"].faults.add({"kind": "status", "status": 401, "times": -1})  # type: ignore[attr-defined]
    try:
        for _ in range(2):  # the second failure is another run: one more sync_failed, no second key alert today
            failed = run("sync", "--since", "2026-11-01", "--until", "2026-11-02")
            assert failed.exit_code != 0
    finally:
        cloud.fakes["openai"].faults.clear()  # type: ignore[attr-defined]
    subjects = sorted(json.loads(r.body)["blocks"][0]["text"]["text"] for r in http.received)
    assert subjects == ["Provider key refused: openai (openai)", "Sync failed: openai (openai)",
                        "Sync failed: openai (openai)"]
    assert "Alert syncs -> ops: sent" in failed.stderr
