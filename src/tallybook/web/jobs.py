"""Background sync jobs: the dashboard's "sync now" and the scheduler's daily run.

A job syncs one connection, or every connection of an organisation, through the real
`connectors.sync.sync_connection` in a background thread; its progress is the connection's
`sync_runs` row (tasks done of tasks total, rows, pages). A connection is synced by one job at a
time across every process sharing the ledger (`tallybook sync` included): a sync holds the
connection's row in `sync_locks` and refreshes it while it runs; a lock whose holder died lapses after
`LOCK_SECONDS`.

    job_id = start_sync(engine, org_id, connection_id, start, end)   # returns at once
    sync_status(conn, org_id, job_id)                                # JobStatus, None if not this org's
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tallybook.config import Settings, get_settings
from tallybook.errors import AccessError, TallybookError
from tallybook.ledger import schema as t
from tallybook.ledger.schema_access import sync_jobs, sync_locks
from tallybook.ledger.store import utcnow
from tallybook.security.redaction import redact

log = logging.getLogger("tallybook.web.jobs")
LOCK_SECONDS = 300  # a lock not refreshed for this long belonged to a process that died
HEARTBEAT_SECONDS = 30
CLI_JOB = 0  # the job id `tallybook sync` holds a lock under
HOLDER = f"{socket.gethostname()}:{os.getpid()}"[:100]


@dataclass(frozen=True)
class RunProgress:
    connection_id: int
    connection: str
    provider: str
    status: str  # running | succeeded | failed
    tasks_total: int
    tasks_done: int
    rows: int
    pages: int
    started_at: datetime
    finished_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class JobStatus:
    id: int
    org_id: int
    connection_id: int | None
    trigger: str  # manual | schedule
    status: str  # queued | running | succeeded | failed | interrupted
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    runs: list[RunProgress] = field(default_factory=list)


def start_sync(engine: Engine, org_id: int, connection_id: int | None = None, start: datetime | None = None,
               end: datetime | None = None, *, settings: Settings | None = None, trigger: str = "manual",
               background: bool = True) -> int:
    """Queue a sync of one connection (or all of the organisation's) and run it in a background thread.

    `start`/`end` default to each connection's own window (since its last sync, as `tallybook sync`).
    Asking again for a connection that is syncing returns the job already running it.
    AccessError 404 if the connection is not the organisation's; 400 if it has none."""
    settings = settings or get_settings()
    with engine.begin() as conn:
        targets = _connections(conn, org_id, connection_id)
        if connection_id is not None:
            running = _running_job_for(conn, connection_id)
            if running is not None:
                return running
        now = utcnow()
        job_id = int(conn.execute(insert(sync_jobs).values(
            org_id=org_id, connection_id=connection_id, window_start=start, window_end=end, trigger=trigger,
            status="queued", created_at=now, heartbeat_at=now)).inserted_primary_key[0])  # type: ignore[index]
    if background:
        threading.Thread(target=run_job, args=(engine, job_id, settings), name=f"tallybook-sync-{job_id}",
                         daemon=True).start()
    else:
        run_job(engine, job_id, settings)
    log.info("sync job %s queued for org %s (%d connection(s))", job_id, org_id, len(targets))
    return job_id


def run_job(engine: Engine, job_id: int, settings: Settings) -> None:
    """Run a queued job to its end in this thread; every failure is recorded on the job, never raised."""
    with engine.begin() as conn:
        job = conn.execute(select(sync_jobs).where(sync_jobs.c.id == job_id)).one()
        conn.execute(update(sync_jobs).where(sync_jobs.c.id == job_id).values(
            status="running", started_at=utcnow(), heartbeat_at=utcnow()))
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(engine, job_id, stop), daemon=True,
                            name=f"tallybook-sync-{job_id}-heartbeat")
    beat.start()
    errors: list[str] = []
    try:
        with engine.connect() as conn:
            targets = _connections(conn, job.org_id, job.connection_id)
        for row in targets:
            try:
                with connection_lock(engine, row.id, row.name, job_id=job_id):
                    _sync_one(engine, settings, job, row)
            except ConnectionBusy:
                errors.append(f"{row.name}: another sync of this connection is running")
            except TallybookError as exc:
                errors.append(f"{row.name}: {redact(str(exc))}")
            except Exception as exc:  # a bug must not kill the server's thread silently
                log.exception("sync job %s: %s failed", job_id, row.name)
                errors.append(f"{row.name}: internal error ({type(exc).__name__})")
    except Exception as exc:
        log.exception("sync job %s failed", job_id)
        errors.append(f"internal error ({type(exc).__name__})")
    finally:
        stop.set()
        with engine.begin() as conn:
            conn.execute(update(sync_jobs).where(sync_jobs.c.id == job_id).values(
                status="failed" if errors else "succeeded", finished_at=utcnow(),
                error="; ".join(errors)[:4000] or None))
        _check_alerts(engine, settings, job.org_id)


def _check_alerts(engine: Engine, settings: Settings, org_id: int) -> None:
    """Alert on what the sync revealed (a failure, an anomaly, a gap) right away; never fails the job."""
    from tallybook.alerts.runner import run_once
    from tallybook.security.vault import Vault

    try:
        run_once(engine, settings, Vault.from_settings(settings), org_id=org_id)
    except Exception:
        log.exception("alert check after sync of organisation %s failed", org_id)


def _sync_one(engine: Engine, settings: Settings, job: Row[Any], row: Row[Any]) -> None:
    from tallybook.cli.connect import secret_context
    from tallybook.connectors.registry import build_connector
    from tallybook.connectors.sync import default_window, midnight, sync_connection
    from tallybook.security.vault import Vault

    now = utcnow()
    start = job.window_start or default_window(engine, row.id, now=now, first_days=settings.sync_default_days)
    end = min(job.window_end or now, now)
    if end <= start:
        raise AccessError(f"Nothing to sync: {start:%Y-%m-%d} is in the future.")
    hourly_from = midnight(now) - timedelta(days=settings.sync_hourly_days - 1) if settings.sync_hourly_days else None
    key = Vault.from_settings(settings).open(row.secret_sealed, context=secret_context(row.org_id, row.name))
    connector = build_connector(row.provider, key, base_url=row.base_url, key_hint=row.key_fingerprint,
                                settings=settings)
    try:
        sync_connection(engine, connector, org_id=row.org_id, connection_id=row.id, connection_name=row.name,
                        start=start, end=end, hourly_from=hourly_from, now=now)
    finally:
        connector.close()


def sync_status(conn: Connection, org_id: int, job_id: int) -> JobStatus | None:
    """The job with each connection's run progress; None when it is not this organisation's (answer 404)."""
    job = conn.execute(select(sync_jobs).where(sync_jobs.c.id == job_id, sync_jobs.c.org_id == org_id)).first()
    return None if job is None else _status(conn, job)


def list_jobs(conn: Connection, org_id: int, limit: int = 20) -> list[JobStatus]:
    """The organisation's latest jobs, newest first."""
    j = sync_jobs.c
    rows = conn.execute(select(sync_jobs).where(j.org_id == org_id).order_by(j.created_at.desc(), j.id.desc())
                        .limit(limit)).all()
    return [_status(conn, row) for row in rows]


def _status(conn: Connection, job: Row[Any]) -> JobStatus:
    status = job.status
    beat = job.heartbeat_at or job.created_at
    if status in ("queued", "running") and utcnow() - beat > timedelta(seconds=LOCK_SECONDS):
        status = "interrupted"  # its process died
    runs: list[RunProgress] = []
    if job.started_at is not None:
        r, c = t.sync_runs.c, t.connections.c
        until = job.finished_at or utcnow()
        query = (select(r.connection_id, c.name, r.provider, r.status, r.tasks_total, r.tasks_done, r.rows,
                        r.pages, r.started_at, r.finished_at, r.error)
                 .join_from(t.sync_runs, t.connections, c.id == r.connection_id)
                 .where(r.org_id == job.org_id, r.started_at >= job.started_at, r.started_at <= until)
                 .order_by(r.started_at, r.id))
        if job.connection_id is not None:
            query = query.where(r.connection_id == job.connection_id)
        runs = [RunProgress(*row) for row in conn.execute(query)]
    return JobStatus(job.id, job.org_id, job.connection_id, job.trigger, status, job.created_at, job.started_at,
                     job.finished_at, job.error, runs)


def _connections(conn: Connection, org_id: int, connection_id: int | None) -> list[Row[Any]]:
    c = t.connections.c
    query = select(t.connections).where(c.org_id == org_id).order_by(c.name)
    if connection_id is not None:
        query = query.where(c.id == connection_id)
    rows = list(conn.execute(query))
    if not rows:
        if connection_id is not None:
            raise AccessError(f"No connection {connection_id} in this organisation.", status=404)
        raise AccessError("This organisation has no connection to sync: connect a provider first.")
    return rows


def _running_job_for(conn: Connection, connection_id: int) -> int | None:
    """The live job syncing this connection (by its lock, or queued for it alone), if any."""
    now = utcnow()
    lock = conn.execute(select(sync_locks.c.job_id).where(sync_locks.c.connection_id == connection_id,
                                                          sync_locks.c.expires_at > now)).scalar()
    if lock == CLI_JOB:
        raise ConnectionBusy("This connection is being synced by `tallybook sync`; try again when it finishes.")
    if lock is not None:
        return int(lock)
    j = sync_jobs.c
    found = conn.execute(select(j.id).where(
        j.connection_id == connection_id, j.status.in_(("queued", "running")),
        j.heartbeat_at > now - timedelta(seconds=LOCK_SECONDS)).order_by(j.id.desc()).limit(1)).scalar()
    return None if found is None else int(found)


def _holder_is_dead(holder: str) -> bool:
    """A lock held by a process of this host that no longer runs (killed, even by `kill -9`) is stale
    now, not only once it lapses: a re-run right after a crash must not wait LOCK_SECONDS."""
    pid = holder.rpartition(":")[2]
    if not pid.isdigit() or holder != f"{socket.gethostname()}:{pid}"[:100]:
        return False  # another host's process: only its lapse tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _acquire(engine: Engine, connection_id: int, job_id: int) -> bool:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(delete(sync_locks).where(sync_locks.c.connection_id == connection_id,
                                              sync_locks.c.expires_at <= now))
        held = conn.execute(select(sync_locks.c.holder).where(sync_locks.c.connection_id == connection_id)).scalar()
        if held is not None and _holder_is_dead(held):
            conn.execute(delete(sync_locks).where(sync_locks.c.connection_id == connection_id,
                                                  sync_locks.c.holder == held))
    try:
        with engine.begin() as conn:
            conn.execute(insert(sync_locks).values(connection_id=connection_id, job_id=job_id, holder=HOLDER,
                                                   expires_at=now + timedelta(seconds=LOCK_SECONDS)))
        return True
    except IntegrityError:
        return False


def _release(engine: Engine, connection_id: int, job_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(delete(sync_locks).where(sync_locks.c.connection_id == connection_id,
                                              sync_locks.c.job_id == job_id))


def _heartbeat(engine: Engine, job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            with engine.begin() as conn:
                conn.execute(update(sync_jobs).where(sync_jobs.c.id == job_id).values(heartbeat_at=utcnow()))
        except Exception:  # the database is briefly unreachable: try again next beat
            log.warning("sync job %s: heartbeat failed", job_id, exc_info=True)


class ConnectionBusy(AccessError):
    status = 409


@contextmanager
def connection_lock(engine: Engine, connection_id: int, name: str, *, job_id: int = CLI_JOB) -> Iterator[None]:
    """Hold the connection's sync lock while the block runs (refreshed in the background), or raise
    ConnectionBusy at once. `tallybook sync` takes it too (job id 0), so cron and the web never overlap."""
    if not _acquire(engine, connection_id, job_id):
        raise ConnectionBusy(f"Connection {name} is being synced by another process; try again when it finishes.")
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with engine.begin() as conn:
                    conn.execute(update(sync_locks).where(
                        sync_locks.c.connection_id == connection_id, sync_locks.c.job_id == job_id).values(
                        expires_at=utcnow() + timedelta(seconds=LOCK_SECONDS)))
            except Exception:  # the database is briefly unreachable: try again next beat
                log.warning("sync lock of %s: refresh failed", name, exc_info=True)

    beat = threading.Thread(target=refresh, name=f"tallybook-lock-{connection_id}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        _release(engine, connection_id, job_id)
