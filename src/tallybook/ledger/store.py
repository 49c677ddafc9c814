"""The one write door to the ledger, and the small reads the write path needs.

Every function takes a SQLAlchemy `Connection` inside the caller's transaction
(`with engine.begin() as conn:`), so a chunk of records, its sync progress and
its window replacement commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tallybook.errors import LedgerError
from tallybook.ledger import schema as t
from tallybook.ledger.records import USAGE_DIMENSIONS, CostRecord, ProviderObject, UsageRecord
from tallybook.money import to_nanos

NATURAL_KEY = ("org_id", "connection_id", "source", "stream", "bucket_width", "bucket_start", "record_key")
USAGE_MEASURES = (
    "input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "output_tokens",
    "reasoning_tokens", "audio_input_tokens", "audio_output_tokens", "requests", "quantity",
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --- organisations and connections -------------------------------------------------------------

def ensure_org(conn: Connection, slug: str, name: str | None = None) -> int:
    found = conn.execute(select(t.organisations.c.id).where(t.organisations.c.slug == slug)).scalar()
    if found is not None:
        return int(found)
    result = conn.execute(insert(t.organisations).values(slug=slug, name=name or slug, created_at=utcnow()))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def save_connection(
    conn: Connection, *, org_id: int, name: str, provider: str, base_url: str, secret_sealed: str,
    key_fingerprint: str,
) -> tuple[int, bool]:
    """Create the connection, or rotate its key if one of that name exists. Returns (id, rotated)."""
    c = t.connections.c
    existing = conn.execute(select(c.id).where(c.org_id == org_id, c.name == name)).scalar()
    if existing is None:
        result = conn.execute(insert(t.connections).values(
            org_id=org_id, name=name, provider=provider, base_url=base_url, secret_sealed=secret_sealed,
            key_fingerprint=key_fingerprint, status="active", created_at=utcnow()))
        return int(result.inserted_primary_key[0]), False  # type: ignore[index]
    conn.execute(update(t.connections).where(c.id == existing).values(
        provider=provider, base_url=base_url, secret_sealed=secret_sealed, key_fingerprint=key_fingerprint,
        status="active", rotated_at=utcnow(), last_error=None))
    return int(existing), True


def list_connections(conn: Connection, org_id: int, provider: str | None = None) -> list[Any]:
    c = t.connections.c
    query = select(t.connections).where(c.org_id == org_id).order_by(c.name)
    if provider:
        query = query.where(c.provider == provider)
    return list(conn.execute(query))


def mark_connection(conn: Connection, connection_id: int, *, status: str, error: str | None,
                    synced: bool) -> None:
    values: dict[str, Any] = {"status": status, "last_error": error}
    if synced:
        values["last_sync_at"] = utcnow()
    conn.execute(update(t.connections).where(t.connections.c.id == connection_id).values(**values))


def delete_connection(conn: Connection, org_id: int, name: str) -> bool:
    c = t.connections.c
    return bool(conn.execute(delete(t.connections).where(c.org_id == org_id, c.name == name)).rowcount)


# --- usage and cost records -----------------------------------------------------------------------

def usage_rows(org_id: int, connection_id: int, records: Iterable[UsageRecord]) -> list[dict[str, Any]]:
    """Records as table rows, with duplicates of one natural key merged by summing their measures."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        key = r.key()
        ident = (r.source, r.stream, r.bucket_width, r.bucket_start, key)
        row = merged.get(ident)
        if row is not None:
            for m in USAGE_MEASURES:
                row[m] += getattr(r, m)
            continue
        merged[ident] = {
            "org_id": org_id, "connection_id": connection_id, "source": r.source, "stream": r.stream,
            "bucket_start": r.bucket_start, "bucket_width": r.bucket_width, "record_key": key,
            "provider": r.provider, "model": r.model, "project": r.project, "api_key": r.api_key,
            "user": r.user, "service_tier": r.service_tier, "batch": r.batch,
            "context_window": r.context_window, "inference_geo": r.inference_geo, "detail": r.detail,
            "unit": r.unit, "input_tokens": r.input_tokens, "cache_read_tokens": r.cache_read_tokens,
            "cache_write_5m_tokens": r.cache_write_5m_tokens, "cache_write_1h_tokens": r.cache_write_1h_tokens,
            "output_tokens": r.output_tokens, "reasoning_tokens": r.reasoning_tokens,
            "audio_input_tokens": r.audio_input_tokens, "audio_output_tokens": r.audio_output_tokens,
            "requests": r.requests, "quantity": r.quantity, "origin": r.origin,
        }
    return list(merged.values())


def cost_rows(org_id: int, connection_id: int, records: Iterable[CostRecord]) -> list[dict[str, Any]]:
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        key = r.key()
        ident = (r.source, r.stream, r.bucket_width, r.bucket_start, key)
        nanos = to_nanos(r.amount)
        row = merged.get(ident)
        if row is not None:
            row["amount_nanos"] += nanos
            continue
        merged[ident] = {
            "org_id": org_id, "connection_id": connection_id, "source": r.source, "stream": r.stream,
            "bucket_start": r.bucket_start, "bucket_width": r.bucket_width, "record_key": key,
            "provider": r.provider, "model": r.model, "project": r.project, "api_key": r.api_key,
            "line_item": r.line_item, "token_type": r.token_type, "cost_type": r.cost_type,
            "service_tier": r.service_tier, "context_window": r.context_window,
            "inference_geo": r.inference_geo, "currency": r.currency.upper(), "amount_nanos": nanos,
            "quantity": None if r.quantity is None else str(r.quantity), "quantity_unit": r.quantity_unit,
            "origin": r.origin,
        }
    return list(merged.values())


def _upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key_cols: Sequence[str],
            update_cols: Sequence[str]) -> None:
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        stmt: Any = sqlite.insert(table)
    elif dialect == "postgresql":
        stmt = postgresql.insert(table)
    else:  # pragma: no cover - guarded by config validation
        raise LedgerError(f"Unsupported database {dialect!r}: use SQLite or PostgreSQL.")
    stmt = stmt.on_conflict_do_update(index_elements=list(key_cols),
                                      set_={c: stmt.excluded[c] for c in update_cols})
    conn.execute(stmt, list(rows))


def upsert_usage(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert usage rows; a row whose natural key exists replaces the stored measures."""
    _upsert(conn, t.usage_records, rows, NATURAL_KEY, (*USAGE_MEASURES, "origin"))


def upsert_costs(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    _upsert(conn, t.cost_records, rows, NATURAL_KEY, ("amount_nanos", "quantity", "quantity_unit", "origin"))


def replace_window(
    conn: Connection, *, org_id: int, connection_id: int, source: str, stream: str, bucket_width: str,
    start: datetime, end: datetime, usage: Iterable[UsageRecord] = (), costs: Iterable[CostRecord] = (),
) -> int:
    """Make the ledger hold exactly `usage`/`costs` for this stream, width and [start, end).

    Rows the provider no longer returns for the window are removed, so a re-synced day
    replaces what was there and never adds to it. Returns the number of rows written.
    """
    written = 0
    for table, rows, write in (
        (t.usage_records, usage_rows(org_id, connection_id, usage), upsert_usage),
        (t.cost_records, cost_rows(org_id, connection_id, costs), upsert_costs),
    ):
        c = table.c
        conn.execute(delete(table).where(and_(
            c.org_id == org_id, c.connection_id == connection_id, c.source == source, c.stream == stream,
            c.bucket_width == bucket_width, c.bucket_start >= start, c.bucket_start < end)))
        for row in rows:
            if not (start <= row["bucket_start"] < end) or row["stream"] != stream:
                raise LedgerError(
                    f"A {source} record for {row['bucket_start']:%Y-%m-%d %H:%M} ({row['stream']}) lies outside "
                    f"the window being replaced ({stream} {start:%Y-%m-%d}..{end:%Y-%m-%d}); nothing was written.")
        write(conn, rows)
        written += len(rows)
    return written


def upsert_names(conn: Connection, org_id: int, connection_id: int, objects: Iterable[ProviderObject]) -> int:
    now = utcnow()
    rows = [
        {"org_id": org_id, "connection_id": connection_id, "provider": o.provider, "kind": o.kind,
         "object_id": o.object_id, "name": o.name, "email": o.email, "parent_id": o.parent_id,
         "status": o.status, "updated_at": now}
        for o in objects
    ]
    _upsert(conn, t.provider_objects, rows, ("org_id", "provider", "kind", "object_id"), ("connection_id", "name", "email", "parent_id", "status", "updated_at"))
    return len(rows)


# --- sync runs ----------------------------------------------------------------------------------

def start_run(conn: Connection, *, org_id: int, connection_id: int, provider: str, start: datetime,
              end: datetime, tasks_total: int) -> int:
    result = conn.execute(insert(t.sync_runs).values(
        org_id=org_id, connection_id=connection_id, provider=provider, window_start=start, window_end=end,
        status="running", started_at=utcnow(), tasks_total=tasks_total))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def record_task(conn: Connection, run_id: int, task_id: str, *, rows: int, pages: int) -> None:
    conn.execute(insert(t.sync_tasks).values(run_id=run_id, task_id=task_id, rows=rows, pages=pages,
                                             finished_at=utcnow()))
    r = t.sync_runs.c
    conn.execute(update(t.sync_runs).where(r.id == run_id).values(
        tasks_done=r.tasks_done + 1, rows=r.rows + rows, pages=r.pages + pages))


def finish_run(conn: Connection, run_id: int, *, status: str, error: str | None = None) -> None:
    conn.execute(update(t.sync_runs).where(t.sync_runs.c.id == run_id).values(
        status=status, error=error, finished_at=utcnow()))


def resumable_tasks(conn: Connection, connection_id: int) -> set[str]:
    """Task ids committed by runs that did not finish (killed or failed) since the last successful run."""
    r = t.sync_runs.c
    newest_success = select(func.max(r.started_at)).where(
        r.connection_id == connection_id, r.status == "succeeded").scalar_subquery()
    runs = select(r.id).where(
        r.connection_id == connection_id, r.status.in_(("running", "failed")),
        (newest_success.is_(None)) | (r.started_at > newest_success))
    rows = conn.execute(select(t.sync_tasks.c.task_id).where(t.sync_tasks.c.run_id.in_(runs)))
    return {row[0] for row in rows}


def last_successful_end(conn: Connection, connection_id: int) -> datetime | None:
    r = t.sync_runs.c
    return conn.execute(select(func.max(r.window_end)).where(
        r.connection_id == connection_id, r.status == "succeeded")).scalar()


def close_stale_runs(conn: Connection, connection_id: int) -> None:
    """Runs still marked running belong to a process that died: mark them failed."""
    r = t.sync_runs.c
    conn.execute(update(t.sync_runs).where(r.connection_id == connection_id, r.status == "running").values(
        status="failed", error="interrupted", finished_at=utcnow()))
