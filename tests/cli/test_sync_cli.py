"""The foundation's acceptance, end to end: connect, sync and report against the faithful fakes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tallybook.fakes.launcher import DEMO_KEYS, FakeCloud, start_fakes
from tallybook.ledger import schema as t
from tallybook.ledger.db import connect
from tests.cli.helpers import ok, run
from tests.support import FAKE_NOW

MEASURES = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
            "output_tokens", "requests")
SINCE, UNTIL = "2026-09-01", "2026-10-15"  # inclusive UTC days, inside the fakes' 120 days
START, END = datetime(2026, 9, 1), datetime(2026, 10, 16)


@pytest.fixture(scope="module")
def cloud() -> FakeCloud:
    fakes = start_fakes(now=FAKE_NOW)
    yield fakes
    fakes.stop()


@pytest.fixture(autouse=True)
def no_faults(cloud: FakeCloud) -> None:
    for fake in cloud.fakes.values():
        fake.faults.clear()  # type: ignore[attr-defined]


def fault(cloud: FakeCloud, provider: str, **spec: object) -> None:
    httpx.post(f"{cloud.servers[provider].url}/_fake/faults", json=[spec]).raise_for_status()


CONNECTED = ("openai", "anthropic")  # the fakes connect_all connects (the cloud also runs Cursor)


def connect_all(cloud: FakeCloud, env: dict[str, str]) -> None:
    for provider, var in (("openai", "OPENAI_ADMIN_KEY"), ("anthropic", "ANTHROPIC_ADMIN_KEY")):
        ok("connect", provider, "--base-url", cloud.base_url(provider), env={**env, var: DEMO_KEYS[provider]})


def usage_by_provider_model(env: dict[str, str]) -> dict[tuple[str, str | None], dict[str, int]]:
    rows = ok("report", "usage", "--from", SINCE, "--to", UNTIL, "--group-by", "provider,model",
              "--format", "json", env=env).json()
    return {(r["provider"], r["model"]): {**{m: r[m] for m in MEASURES}, "quantities": r["quantities"]}
            for r in rows}


def costs_by_line_item(env: dict[str, str]) -> dict[tuple[str, str], Decimal]:
    rows = ok("report", "costs", "--from", SINCE, "--to", UNTIL, "--group-by", "provider,line_item",
              "--format", "json", env=env).json()
    assert {r["currency"] for r in rows} == {"USD"}
    return {(r["provider"], r["line_item"]): Decimal(r["amount"]) for r in rows}


def expected_usage(cloud: FakeCloud) -> dict[tuple[str, str | None], dict[str, int]]:
    expected = {}
    for provider, fake in cloud.fakes.items():
        if provider not in CONNECTED:
            continue
        for model, measures in fake.expected_usage(START, END).items():  # type: ignore[attr-defined]
            expected[(provider, model)] = {
                **{m: measures.get(m, 0) for m in MEASURES},
                "quantities": {u: q for u, q in measures.get("quantities", {}).items() if q},
            }
    return expected


def expected_costs(cloud: FakeCloud) -> dict[tuple[str, str], Decimal]:
    return {(provider, item): amount
            for provider, fake in cloud.fakes.items() if provider in CONNECTED
            for item, amount in fake.expected_costs(START, END).items()}  # type: ignore[attr-defined]


def cents(values: dict[tuple[str, str], Decimal]) -> dict[tuple[str, str], Decimal]:
    return {k: v.quantize(Decimal("0.01")) for k, v in values.items()}


def test_sync_then_report_equals_the_fakes_seeded_totals(cloud: FakeCloud, cli_env: dict[str, str]) -> None:
    connect_all(cloud, cli_env)
    ok("sync", "--since", SINCE, "--until", UNTIL, env=cli_env)
    got = usage_by_provider_model(cli_env)
    for row in got.values():
        row["quantities"] = {u: q for u, q in row["quantities"].items() if q}
    assert got == expected_usage(cloud)
    assert cents(costs_by_line_item(cli_env)) == cents(expected_costs(cloud))
    # and the grand totals, to the cent, per provider
    for provider in ("openai", "anthropic"):
        got_total = sum(v for (p, _), v in costs_by_line_item(cli_env).items() if p == provider)
        want_total = sum(v for (p, _), v in expected_costs(cloud).items() if p == provider)
        assert got_total.quantize(Decimal("0.01")) == want_total.quantize(Decimal("0.01"))


def test_syncing_the_same_window_twice_changes_nothing(cloud: FakeCloud, cli_env: dict[str, str]) -> None:
    connect_all(cloud, cli_env)
    ok("sync", "--since", SINCE, "--until", UNTIL, env=cli_env)
    first = (usage_by_provider_model(cli_env), costs_by_line_item(cli_env))
    ok("sync", "--since", SINCE, "--until", UNTIL, env=cli_env)
    ok("sync", "--provider", "openai", "--since", "2026-09-10", "--until", "2026-09-20", env=cli_env)
    assert (usage_by_provider_model(cli_env), costs_by_line_item(cli_env)) == first


def test_429_with_retry_after_is_waited_out(cloud: FakeCloud, cli_env: dict[str, str]) -> None:
    connect_all(cloud, cli_env)
    log_url = f"{cloud.servers['anthropic'].url}/_fake/requests"
    seen = len(httpx.get(log_url).json())
    fault(cloud, "anthropic", path="/v1/organizations/usage_report/messages", kind="status", status=429,
          retry_after="2", times=3)
    began = time.monotonic()
    ok("sync", "--provider", "anthropic", "--since", "2026-10-01", "--until", "2026-10-05", env=cli_env)
    assert time.monotonic() - began >= 6.0
    calls = [r for r in httpx.get(log_url).json()[seen:] if r["path"].endswith("/messages")][:4]
    assert [c["status"] for c in calls] == [429, 429, 429, 200]
    gaps = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= 1.9 for gap in gaps), gaps


FAULTS = [
    pytest.param("openai", {"kind": "status", "status": 401, "times": -1}, "OpenAI rejected the admin key", id="401"),
    pytest.param("anthropic", {"kind": "status", "status": 403, "times": -1}, "Anthropic admin key", id="403"),
    pytest.param("openai", {"kind": "status", "status": 500, "times": -1}, "OpenAI", id="500-forever"),
    pytest.param("anthropic", {"kind": "malformed_json", "times": -1}, "not JSON", id="malformed-json"),
    pytest.param("openai", {"kind": "extra_field", "field": "surprise_dimension", "value": "x", "times": -1},
                 "surprise_dimension", id="unknown-field"),
    pytest.param("anthropic", {"kind": "null_field", "field": "model", "times": -1}, "model", id="null-dimension"),
]


@pytest.mark.parametrize("provider, spec, message", FAULTS)
def test_faults_give_one_clear_line_and_lose_nothing(
    cloud: FakeCloud, cli_env: dict[str, str], provider: str, spec: dict[str, object], message: str,
) -> None:
    env = {**cli_env, "TALLYBOOK_HTTP_RETRIES": "2"}
    connect_all(cloud, env)
    ok("sync", "--since", SINCE, "--until", UNTIL, env=env)
    before = (usage_by_provider_model(env), costs_by_line_item(env))
    fault(cloud, provider, **spec)
    result = run("sync", "--provider", provider, "--since", SINCE, "--until", UNTIL, env=env)
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    assert message in result.stderr.replace("\n", " ")
    label = {"openai": "OpenAI", "anthropic": "Anthropic"}[provider]
    assert label in lines[0]
    assert "Traceback" not in result.stderr
    for fake in cloud.fakes.values():
        fake.faults.clear()  # type: ignore[attr-defined]
    assert (usage_by_provider_model(env), costs_by_line_item(env)) == before
    listed = ok("connections", "list", "--format", "json", env=env).json()
    failed = next(c for c in listed if c["provider"] == provider)
    assert failed["status"] in ("failing", "error") and failed["last_error"]


@pytest.mark.slow
def test_a_killed_sync_resumes_and_totals_are_unchanged(
    cloud: FakeCloud, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    connect_all(cloud, cli_env)
    log = tmp_path / "killed-sync.log"
    fault(cloud, "openai", kind="delay", seconds=0.15, times=-1)
    log_file = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tallybook.cli", "sync", "--provider", "openai",
                             "--since", SINCE, "--until", UNTIL],
                            env={**os.environ, **cli_env}, stdout=subprocess.DEVNULL, stderr=log_file)
    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    try:
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            with engine.connect() as conn:
                done = conn.execute(sa.select(sa.func.count()).select_from(t.sync_tasks)).scalar() or 0
            if done >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"sync finished before it could be killed: {log.read_text()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        log_file.close()
        with engine.connect() as conn:
            assert conn.execute(sa.select(t.sync_runs.c.status)).scalars().all() == ["running"]
    finally:
        engine.dispose()
        log_file.close()
    for fake in cloud.fakes.values():
        fake.faults.clear()  # type: ignore[attr-defined]
    result = ok("sync", "--provider", "openai", "--since", SINCE, "--until", UNTIL, env=cli_env)
    assert "resumed" in result.stderr
    got = {k: v for k, v in usage_by_provider_model(cli_env).items() if k[0] == "openai"}
    for row in got.values():
        row["quantities"] = {u: q for u, q in row["quantities"].items() if q}
    assert got == {k: v for k, v in expected_usage(cloud).items() if k[0] == "openai"}
    assert cents({k: v for k, v in costs_by_line_item(cli_env).items() if k[0] == "openai"}) == \
        cents({k: v for k, v in expected_costs(cloud).items() if k[0] == "openai"})


def test_the_admin_key_appears_nowhere(tmp_path: Path, cli_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    planted = "sk-admin-PLANTED" + "Zx9" * 12 + "q7w8"
    from tallybook.fakes.openai_admin import OpenAIAdminFake
    from tallybook.fakes.server import serve_in_thread

    fake = OpenAIAdminFake(now=FAKE_NOW, admin_keys=(planted,))
    caplog.set_level("DEBUG")
    outputs = []
    with serve_in_thread(fake.app) as server:
        env = {**cli_env, "OPENAI_ADMIN_KEY": planted, "TALLYBOOK_HTTP_RETRIES": "2"}
        base = server.url + "/v1"
        outputs.append(ok("connect", "openai", "--base-url", base, env=env))
        outputs.append(ok("sync", "--since", "2026-10-01", "--until", "2026-10-03", env=env))
        outputs.append(ok("connections", "list", env=env))
        outputs.append(ok("connections", "list", "--format", "json", env=env))
        outputs.append(ok("report", "costs", "--from", "2026-10-01", "--to", "2026-10-03", env=env))
        outputs.append(ok("config", env=env))
        fake.faults.add({"kind": "status", "status": 401, "times": -1})
        outputs.append(run("sync", "--since", "2026-10-01", "--until", "2026-10-03", env=env))
        assert outputs[-1].exit_code != 0
    text = "\n".join(o.stdout + o.stderr for o in outputs) + caplog.text
    assert planted not in text
    assert "sk-admin-...q7w8" in text  # the fingerprint is what people see
    database = cli_env["TALLYBOOK_DATABASE_URL"]
    if database.startswith("sqlite"):
        path = Path(database.removeprefix("sqlite:///"))
        for file in path.parent.glob(path.name + "*"):
            blob = file.read_bytes()
            assert planted.encode() not in blob and b"PLANTEDZx9" not in blob, file
    else:
        engine = connect(database)
        with engine.connect() as conn:
            for table in t.metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    assert planted not in repr(tuple(row))
        engine.dispose()
