"""Background sync jobs and the daily scheduler, through the real connectors against the faithful fakes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from tallybook.cli.connect import secret_context
from tallybook.config import Settings
from tallybook.errors import AccessError
from tallybook.fakes.launcher import DEMO_KEYS, FakeCloud, start_fakes
from tallybook.ledger import schema as t
from tallybook.ledger import store
from tallybook.ledger.schema_access import sync_jobs, sync_locks
from tallybook.security.redaction import fingerprint
from tallybook.security.vault import Vault
from tallybook.web.jobs import JobStatus, start_sync, sync_status
from tallybook.web.scheduler import Scheduler, parse_schedule, set_schedule
from tests.support import FAKE_NOW, window

START, END = window(3)


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    fakes = start_fakes(now=FAKE_NOW)
    yield fakes
    fakes.stop()


@pytest.fixture(autouse=True)
def no_faults(cloud: FakeCloud) -> None:
    for fake in cloud.fakes.values():
        fake.faults.clear()  # type: ignore[attr-defined]


def connect(engine: sa.Engine, settings: Settings, cloud: FakeCloud, org: str, provider: str = "openai",
            key: str | None = None) -> tuple[int, int]:
    """Store a connection to the fake as `tallybook connect` would; returns (org_id, connection_id)."""
    key = key or DEMO_KEYS[provider]
    with engine.begin() as conn:
        org_id = store.ensure_org(conn, org)
        connection_id, _ = store.save_connection(
            conn, org_id=org_id, name=provider, provider=provider, base_url=cloud.base_url(provider),
            secret_sealed=Vault.from_settings(settings).seal(key, context=secret_context(org_id, provider)),
            key_fingerprint=fingerprint(key))
    return org_id, connection_id


def wait(engine: sa.Engine, org_id: int, job_id: int, timeout: float = 60) -> JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            status = sync_status(conn, org_id, job_id)
        assert status is not None
        if status.status not in ("queued", "running"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"sync job {job_id} still {status.status} after {timeout} s")


def ledger_rows(engine: sa.Engine, connection_id: int) -> int:
    """Usage and cost rows the connection has in the ledger."""
    with engine.connect() as conn:
        return sum(int(conn.execute(sa.select(sa.func.count()).select_from(table)
                                    .where(table.c.connection_id == connection_id)).scalar_one())
                   for table in (t.usage_records, t.cost_records))


def test_job_syncs_in_the_background_with_progress(engine: sa.Engine, web_settings: Settings,
                                                   cloud: FakeCloud) -> None:
    org_id, connection_id = connect(engine, web_settings, cloud, "acme")
    job_id = start_sync(engine, org_id, connection_id, START, END, settings=web_settings)
    done = wait(engine, org_id, job_id)
    assert (done.status, done.trigger, done.error) == ("succeeded", "manual", None)
    [run] = done.runs
    assert (run.connection, run.provider, run.status) == ("openai", "openai", "succeeded")
    assert run.tasks_total > 0 and run.tasks_done == run.tasks_total
    assert run.rows > 0 and run.rows == ledger_rows(engine, connection_id)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sync_locks)).scalar_one() == 0  # released


def test_a_running_connection_is_not_synced_twice(engine: sa.Engine, web_settings: Settings,
                                                  cloud: FakeCloud) -> None:
    org_id, connection_id = connect(engine, web_settings, cloud, "acme")
    httpx.post(f"{cloud.servers['openai'].url}/_fake/faults",
               json=[{"path": "", "kind": "delay", "seconds": 1.5, "times": 1}]).raise_for_status()
    first = start_sync(engine, org_id, connection_id, START, END, settings=web_settings)
    time.sleep(0.5)
    assert start_sync(engine, org_id, connection_id, START, END, settings=web_settings) == first
    assert wait(engine, org_id, first).status == "succeeded"
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sync_jobs)).scalar_one() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(t.sync_runs)).scalar_one() == 1


def test_a_connection_locked_by_another_process_is_skipped_until_the_lock_lapses(
        engine: sa.Engine, web_settings: Settings, cloud: FakeCloud) -> None:
    org_id, connection_id = connect(engine, web_settings, cloud, "acme")
    with engine.begin() as conn:  # another process is syncing it right now
        conn.execute(sa.insert(sync_locks).values(connection_id=connection_id, job_id=999, holder="other:1",
                                                  expires_at=store.utcnow() + timedelta(minutes=5)))
    assert start_sync(engine, org_id, connection_id, START, END, settings=web_settings) == 999
    every = wait(engine, org_id, start_sync(engine, org_id, None, START, END, settings=web_settings))
    assert every.status == "failed" and "another sync of this connection is running" in (every.error or "")
    assert every.runs == [] and ledger_rows(engine, connection_id) == 0
    with engine.begin() as conn:  # that process died: its lock lapses
        conn.execute(sa.update(sync_locks).values(expires_at=store.utcnow() - timedelta(seconds=1)))
    job_id = start_sync(engine, org_id, connection_id, START, END, settings=web_settings)
    assert job_id != 999 and wait(engine, org_id, job_id).status == "succeeded"


def test_jobs_belong_to_one_organisation(engine: sa.Engine, web_settings: Settings, cloud: FakeCloud) -> None:
    acme, connection_id = connect(engine, web_settings, cloud, "acme")
    with engine.begin() as conn:
        globex = store.ensure_org(conn, "globex")
    with pytest.raises(AccessError) as refused:
        start_sync(engine, globex, connection_id, START, END, settings=web_settings)
    assert refused.value.status == 404
    job_id = start_sync(engine, acme, connection_id, START, END, settings=web_settings)
    wait(engine, acme, job_id)
    with engine.connect() as conn:
        assert sync_status(conn, globex, job_id) is None


def test_a_failed_sync_is_recorded_without_the_key(engine: sa.Engine, web_settings: Settings,
                                                   cloud: FakeCloud) -> None:
    wrong = "sk-admin-WRONGwrongWRONGwrong-zz99"
    org_id, connection_id = connect(engine, web_settings, cloud, "acme", key=wrong)
    done = wait(engine, org_id, start_sync(engine, org_id, connection_id, START, END, settings=web_settings))
    assert done.status == "failed" and done.error and done.error.startswith("openai: ")
    assert wrong not in done.error and "WRONGwrong" not in done.error
    assert [r.status for r in done.runs] == ["failed"]


def test_schedule_syntax() -> None:
    assert parse_schedule("daily@02:30").isoformat() == "02:30:00"  # type: ignore[union-attr]
    assert parse_schedule("off") is None
    with pytest.raises(ValueError, match="daily@HH:MM"):
        parse_schedule("weekly@02:00")
    with pytest.raises(ValueError, match="TALLYBOOK_SYNC_SCHEDULE"):
        Settings(sync_schedule="daily@2am")


def test_scheduler_runs_each_organisation_once_a_day_at_its_time(engine: sa.Engine, web_settings: Settings,
                                                                 cloud: FakeCloud) -> None:
    settings = web_settings.model_copy(update={"sync_schedule": "daily@02:00", "sync_default_days": 1})
    acme, _ = connect(engine, settings, cloud, "acme")
    globex, _ = connect(engine, settings, cloud, "globex", provider="anthropic")
    initech, _ = connect(engine, settings, cloud, "initech")
    with engine.begin() as conn:  # organisations may choose their own time, or none
        set_schedule(conn, globex, "daily@06:00", actor="system:test")
        set_schedule(conn, initech, "off", actor="system:test")
    scheduler = Scheduler(engine, settings)
    day = datetime(2026, 11, 24)
    assert scheduler.tick(day.replace(hour=1, minute=59)) == []
    first = scheduler.tick(day.replace(hour=2))
    assert len(first) == 1
    second = Scheduler(engine, settings)  # another `tallybook serve` on the same ledger
    assert second.tick(day.replace(hour=2, minute=0, second=30)) == []
    assert scheduler.tick(day.replace(hour=5)) == []
    six = second.tick(day.replace(hour=6, minute=1))
    assert len(six) == 1
    tomorrow = scheduler.tick(day.replace(hour=6, minute=1) + timedelta(days=1))  # both are due again
    assert len(tomorrow) == 2
    jobs = {}
    for job_id in first + six + tomorrow:
        with engine.connect() as conn:
            org_id = conn.execute(sa.select(sync_jobs.c.org_id).where(sync_jobs.c.id == job_id)).scalar_one()
        jobs[job_id] = wait(engine, org_id, job_id)
    assert {(j.org_id, j.trigger) for j in jobs.values()} == {(acme, "schedule"), (globex, "schedule")}
    assert all(j.status in ("succeeded", "failed") for j in jobs.values())  # two at once may meet a lock


def test_scheduler_tick_drops_expired_sessions_and_old_sign_in_attempts(engine: sa.Engine,
                                                                         web_settings: Settings) -> None:
    from tallybook.ledger.schema_access import login_attempts, web_sessions
    from tallybook.web.auth import create_user, start_session
    from tallybook.web.auth.users import add_member

    with engine.begin() as conn:
        user_id = create_user(conn, "ada@example.com", "correct horse battery staple")
        add_member(conn, store.ensure_org(conn, "acme"), user_id, "admin")
        start_session(conn, user_id, days=1)
        start_session(conn, user_id, days=30)
        conn.execute(sa.insert(login_attempts).values(email="ada@example.com", client_ip="10.0.0.1",
                                                      at=store.utcnow() - timedelta(days=3), succeeded=0))
    assert Scheduler(engine, web_settings).tick(store.utcnow() + timedelta(days=2)) == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(web_sessions)).scalar_one() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(login_attempts)).scalar_one() == 0


def test_tallybook_sync_and_the_web_never_sync_one_connection_at_once(
        engine: sa.Engine, web_settings: Settings, cloud: FakeCloud, cli_env: dict[str, str]) -> None:
    from tallybook.web.jobs import ConnectionBusy, connection_lock
    from tests.cli.helpers import ok, run

    ok("connect", "openai", "--base-url", cloud.base_url("openai"),
       env={**cli_env, "OPENAI_ADMIN_KEY": DEMO_KEYS["openai"]})
    with engine.connect() as conn:
        org_id, connection_id = conn.execute(sa.select(t.connections.c.org_id, t.connections.c.id)).one()
    settings = web_settings.model_copy(update={"master_key": None,  # the key `tallybook connect` sealed with
                                               "master_key_file": cli_env["TALLYBOOK_MASTER_KEY_FILE"]})
    with connection_lock(engine, connection_id, "openai", job_id=12345):  # the web app is syncing it
        busy = run("sync", "--since", "2026-11-17", "--until", "2026-11-18")
        assert busy.exit_code == 1 and "being synced by another process" in busy.stderr
    with connection_lock(engine, connection_id, "openai"), pytest.raises(ConnectionBusy, match="tallybook sync"):
        start_sync(engine, org_id, connection_id, START, END, settings=settings)  # `tallybook sync` is syncing it
    ok("sync", "--since", "2026-11-17", "--until", "2026-11-18")  # free again
    assert wait(engine, org_id, start_sync(engine, org_id, connection_id, START, END,
                                           settings=settings)).status == "succeeded"
