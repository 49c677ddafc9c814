"""The sync engine: plan a window, fetch each task, replace its window in the ledger, resume after a crash.

Each task commits in its own transaction together with its progress row (and, for daily buckets,
the refreshed daily rollup of its window), so a killed run leaves only whole tasks behind and the
next run skips them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from tallybook import audit
from tallybook.connectors.base import Connector, Task
from tallybook.errors import AuthError, ConnectorError, PermissionDenied
from tallybook.ledger import coding, rollup, store


@dataclass
class SyncResult:
    connection: str
    provider: str
    start: datetime
    end: datetime
    tasks: int = 0
    skipped: int = 0
    rows: int = 0
    pages: int = 0
    names: int = 0
    error: str | None = None
    streams: dict[str, int] = field(default_factory=dict)


Progress = Callable[[Task, int], None]  # called after each task with its row count


def midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def default_window(engine: Engine, connection_id: int, *, now: datetime, first_days: int) -> datetime:
    """Since the day the last successful sync ended (re-read, it was partial), else `first_days` back."""
    with engine.connect() as conn:
        last_end = store.last_successful_end(conn, connection_id)
    if last_end is None:
        return midnight(now) - timedelta(days=first_days - 1)
    return midnight(min(last_end, now))


def sync_connection(
    engine: Engine, connector: Connector, *, org_id: int, connection_id: int, connection_name: str,
    start: datetime, end: datetime, hourly_from: datetime | None, now: datetime,
    on_plan: Callable[[int], None] | None = None, on_task: Progress | None = None,
) -> SyncResult:
    """Sync [start, end) for one connection. Raises ConnectorError after recording the failure."""
    result = SyncResult(connection_name, connector.provider, start, end)
    tasks = connector.plan(start, end, hourly_from=hourly_from)
    result.tasks = len(tasks)
    settled = midnight(now) - timedelta(days=1)  # older buckets no longer change at the provider
    with engine.begin() as conn:
        store.close_stale_runs(conn, connection_id)
        done = store.resumable_tasks(conn, connection_id)
        run_id = store.start_run(conn, org_id=org_id, connection_id=connection_id, provider=connector.provider,
                                 start=start, end=end, tasks_total=len(tasks))
    if on_plan:
        on_plan(len(tasks))
    try:
        for task in tasks:
            if task.id in done and task.end <= settled:
                result.skipped += 1
                with engine.begin() as conn:
                    store.record_task(conn, run_id, task.id, rows=0, pages=0)
                if on_task:
                    on_task(task, 0)
                continue
            chunk = connector.fetch(task)
            with engine.begin() as conn:
                written = store.replace_window(
                    conn, org_id=org_id, connection_id=connection_id, source=connector.source,
                    stream=task.stream, bucket_width=task.bucket_width, start=task.start, end=task.end,
                    usage=chunk.usage, costs=chunk.costs)
                if task.bucket_width == "1d":  # reports read daily buckets through the rollups
                    rollup.refresh_daily(conn, org_id, task.start, task.end, source=connector.source)
                store.record_task(conn, run_id, task.id, rows=written, pages=chunk.pages)
            result.rows += written
            result.pages += chunk.pages
            result.streams[task.stream] = result.streams.get(task.stream, 0) + written
            if on_task:
                on_task(task, written)
        objects = list(connector.names())
        listing = getattr(connector, "directory", None)  # coding tools: members and cycle spend
        directory = listing() if listing is not None else None
        with engine.begin() as conn:
            result.names = store.upsert_names(conn, org_id, connection_id, objects)
            if directory is not None:
                coding.save_directory(conn, org_id, connection_id, directory, now=now)
            store.finish_run(conn, run_id, status="succeeded")
            store.mark_connection(conn, connection_id, status="active", error=None, synced=True)
            _audit_use(conn, org_id, result, "succeeded")
    except ConnectorError as exc:
        result.error = str(exc)
        status = "failing" if isinstance(exc, AuthError | PermissionDenied) else "error"
        with engine.begin() as conn:
            store.finish_run(conn, run_id, status="failed", error=str(exc))
            store.mark_connection(conn, connection_id, status=status, error=str(exc), synced=False)
            _audit_use(conn, org_id, result, "failed")
        raise
    except BaseException:
        with engine.begin() as conn:
            store.finish_run(conn, run_id, status="failed", error="interrupted")
        raise
    return result


def _audit_use(conn: Connection, org_id: int, result: SyncResult, status: str) -> None:
    """Each use of a connection's stored admin key is audited (a sensitive read of a secret)."""
    audit.record(conn, org_id, "system:sync", "connection.used", "connection", result.connection, {
        "provider": result.provider, "window_start": result.start.isoformat(), "window_end": result.end.isoformat(),
        "status": status, "rows": result.rows, "pages": result.pages, "error": result.error})
