"""The one write door to the ledger, and the small reads the write path needs.

Every function takes a SQLAlchemy `Connection` inside the caller's transaction
(`with engine.begin() as conn:`), so a chunk of records, its sync progress and
its window replacement commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from operator import attrgetter, countOf, itemgetter
from typing import Any

from sqlalchemy import Connection, Dialect, Table, and_, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tallybook.errors import LedgerError
from tallybook.ledger import schema as t
from tallybook.ledger.records import (
    USAGE_DIMENSIONS,
    CostRecord,
    ProviderObject,
    UsageRecord,
    usage_dimensions,
    usage_key,
)
from tallybook.money import to_nanos

NATURAL_KEY = ("org_id", "bucket_start", "bucket_width", "connection_id", "source", "stream", "record_key")
USAGE_MEASURES = (
    "input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "output_tokens",
    "reasoning_tokens", "audio_input_tokens", "audio_output_tokens", "requests", "quantity",
)

# A usage row as a tuple, in table order: what the write path builds, merges and binds.
_USAGE_HEAD = ("source", "stream", "bucket_start", "bucket_width")
USAGE_UPDATES = (*USAGE_MEASURES, "origin")  # what an upsert replaces in a row whose natural key is stored
USAGE_COLUMNS = ("org_id", "connection_id", *_USAGE_HEAD, "record_key", *USAGE_DIMENSIONS, *USAGE_UPDATES)
_usage_measures = attrgetter(*USAGE_UPDATES)
_BUCKET_START = USAGE_COLUMNS.index("bucket_start")
_FIRST_DIMENSION = USAGE_COLUMNS.index(USAGE_DIMENSIONS[0])
_END_DIMENSIONS = _FIRST_DIMENSION + len(USAGE_DIMENSIONS)
Processor = Callable[[Any], Any]
BATCH_ROWS = 10_000  # rows per executemany: bounds the bound-parameter copies held at once


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

@dataclass(slots=True)
class _UsageBatch:
    """Usage records as rows for the driver: the columns written, one tuple of values a row, and each
    row's (source, stream, width, bucket start, record key) in the same order."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    idents: list[tuple[Any, ...]]


def _usage_values(org_id: int, connection_id: int, records: Iterable[UsageRecord],
                  processors: Sequence[tuple[int, Processor]] = (), *,
                  every_column: bool = True) -> _UsageBatch:
    """Records as rows, with duplicates of one natural key merged into the first by summing their measures.

    With the dialect's bind `processors` for `USAGE_COLUMNS` (from `_upsert_statement`) the rows
    hold what the driver takes. Unless `every_column`, a dimension no record sets is left out of the
    columns: the row stores NULL either way, and binding eight such NULLs made SQLite half again as slow.
    """
    bind = dict(processors)
    bind_start = bind.pop(_BUCKET_START, None)
    bind_dims = {i - _FIRST_DIMENSION: bind.pop(i)
                 for i in range(_FIRST_DIMENSION, _END_DIMENSIONS) if i in bind}
    if bind:  # pragma: no cover - a dialect converting a column no record field needs converting on ours
        raise LedgerError(f"Cannot bind usage columns {sorted(USAGE_COLUMNS[i] for i in bind)}.")
    # A sync returns the same dimensions in bucket after bucket: digest each combination once. The
    # types are part of the memo's key because equal values may print apart (True and 1).
    combinations: dict[tuple[Any, ...], list[Any]] = {}  # -> [record key, dimensions, bound dimensions]
    firsts: dict[tuple[Any, ...], tuple[UsageRecord, list[Any]]] = {}
    duplicates: dict[tuple[Any, ...], list[UsageRecord]] = {}
    for r in records:
        dims = usage_dimensions(r)
        typed = (dims, *map(type, dims))
        combination = combinations.get(typed)
        if combination is None:
            combination = combinations[typed] = [usage_key(dims), dims]
        ident = (r.source, r.stream, r.bucket_width, r.bucket_start, combination[0])
        first = firsts.setdefault(ident, (r, combination))
        if first[0] is not r:
            duplicates.setdefault(ident, []).append(r)

    used = [i for i in range(len(USAGE_DIMENSIONS))
            if every_column or any(c[1][i] is not None for c in combinations.values())]
    for combination in combinations.values():
        dims = combination[1]
        combination.append(tuple(bind_dims[i](dims[i]) if i in bind_dims else dims[i] for i in used))
    # Bucket starts are few and naive UTC (records.py): equal ones bind alike, so each binds once.
    starts = {at: at if bind_start is None else bind_start(at) for at in {ident[3] for ident in firsts}}
    rows = []
    for ident, (r, combination) in firsts.items():
        source, stream, bucket_width, bucket_start, key = ident
        measures = _usage_measures(r)
        if duplicates and ident in duplicates:
            summed = [sum(x) for x in zip(*(_usage_measures(d)[:-1] for d in (r, *duplicates[ident])))]
            measures = (*summed, measures[-1])
        rows.append((org_id, connection_id, source, stream, starts[bucket_start], bucket_width, key,
                     *combination[2], *measures))
    columns = (*USAGE_COLUMNS[:_FIRST_DIMENSION], *(USAGE_DIMENSIONS[i] for i in used), *USAGE_UPDATES)
    return _UsageBatch(columns, rows, list(firsts))


def usage_rows(org_id: int, connection_id: int, records: Iterable[UsageRecord]) -> list[dict[str, Any]]:
    """Records as table rows, with duplicates of one natural key merged by summing their measures."""
    return [dict(zip(USAGE_COLUMNS, values)) for values in _usage_values(org_id, connection_id, records).rows]


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
            "origin": r.origin, "user": r.user,
        }
    return list(merged.values())


@lru_cache(maxsize=64)
def _upsert_statement(dialect: Dialect, table: Table, columns: tuple[str, ...], key_cols: tuple[str, ...],
                      update_cols: tuple[str, ...]) -> tuple[str, tuple[str, ...] | None, tuple[Any, ...]]:
    """The dialect's INSERT .. ON CONFLICT DO UPDATE for `columns`, compiled once.

    Returns the SQL, the order positional parameters go in (None for a named paramstyle), and
    (column index, bind processor) for each column whose values the dialect converts.
    """
    if dialect.name == "sqlite":
        stmt: Any = sqlite.insert(table)
    elif dialect.name == "postgresql":
        stmt = postgresql.insert(table)
    else:  # pragma: no cover - guarded by config validation
        raise LedgerError(f"Unsupported database {dialect.name!r}: use SQLite or PostgreSQL.")
    stmt = stmt.on_conflict_do_update(index_elements=list(key_cols),
                                      set_={c: stmt.excluded[c] for c in update_cols})
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    order = tuple(compiled.binds[name].key for name in compiled.positiontup) if compiled.positiontup else None
    if order is None and set(compiled.binds) != set(columns):  # pragma: no cover - an escaped name
        raise LedgerError(f"Cannot bind {table.name} columns by name on {dialect.name}.")
    processors = []
    for i, name in enumerate(columns):
        column_type = table.c[name].type
        process = column_type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((i, process))
    return str(compiled), order, tuple(processors)


def _bound(values: Sequence[tuple[Any, ...]],
           processors: Sequence[tuple[int, Processor]]) -> list[tuple[Any, ...]]:
    """Values as the driver takes them (dates as text on SQLite, ...), through the dialect's own processors.

    The values processors see (bucket starts, flags) repeat row after row, so each is converted
    once; equal values convert alike, which holds for the naive UTC datetimes the ledger stores.
    """
    memos: list[tuple[int, Processor, dict[Any, Any]]] = [(i, p, {}) for i, p in processors]
    bound = []
    for row in values:
        items = list(row)
        for i, process, memo in memos:
            value = items[i]
            try:
                items[i] = memo[value]
            except KeyError:
                items[i] = memo[value] = process(value)
        bound.append(tuple(items))
    return bound


def _write(conn: Connection, table: Table, columns: tuple[str, ...], values: Sequence[tuple[Any, ...]],
           key_cols: Sequence[str], update_cols: Sequence[str], *, bound: bool = False) -> None:
    """Upsert `values` (tuples in `columns` order, `bound` if already processed) with the driver's
    executemany, in batches.

    SQLAlchemy's own executemany builds and processes a parameter dict per row, which cost
    more than SQLite spends storing the row; the SQL and the conversions here are the same.
    """
    sql, order, processors = _upsert_statement(conn.dialect, table, columns, tuple(key_cols),
                                               tuple(update_cols))
    reorder = None if order is None or order == columns else itemgetter(*(columns.index(c) for c in order))
    for at in range(0, len(values), BATCH_ROWS):
        batch = values[at:at + BATCH_ROWS]
        if processors and not bound:
            batch = _bound(batch, processors)
        params: Any
        if order is None:
            params = [dict(zip(columns, row)) for row in batch]
        elif reorder is not None:
            params = [reorder(row) for row in batch]
        else:
            params = batch
        conn.exec_driver_sql(sql, params)


def _upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key_cols: Sequence[str],
            update_cols: Sequence[str]) -> None:
    if not rows:
        return
    columns = tuple(rows[0])
    values = itemgetter(*columns)
    _write(conn, table, columns, [values(row) for row in rows], key_cols, update_cols)


def upsert_usage(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert usage rows; a row whose natural key exists replaces the stored measures."""
    # A dimension no row sets is left out, as in `_usage_values` (counting runs in C: cheaper than binding).
    columns = tuple(c for c in USAGE_COLUMNS
                    if c not in USAGE_DIMENSIONS or countOf(map(itemgetter(c), rows), None) < len(rows))
    values = itemgetter(*columns)
    _write(conn, t.usage_records, columns, [values(row) for row in rows], NATURAL_KEY, USAGE_UPDATES)


def upsert_costs(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = tuple(rows[0])
    if countOf(map(itemgetter("user"), rows), None) == len(rows):  # `user` (0007) unset: leave it out,
        columns = tuple(c for c in columns if c != "user")  # as usage leaves out dimensions no row sets
    values = itemgetter(*columns)
    _write(conn, t.cost_records, columns, [values(row) for row in rows], NATURAL_KEY,
           ("amount_nanos", "quantity", "quantity_unit", "origin"))


def replace_window(
    conn: Connection, *, org_id: int, connection_id: int, source: str, stream: str, bucket_width: str,
    start: datetime, end: datetime, usage: Iterable[UsageRecord] = (), costs: Iterable[CostRecord] = (),
) -> int:
    """Make the ledger hold exactly `usage`/`costs` for this stream, width and [start, end).

    Rows the provider no longer returns for the window are removed, so a re-synced day
    replaces what was there and never adds to it. Returns the number of rows written.
    """
    _, _, processors = _upsert_statement(conn.dialect, t.usage_records, USAGE_COLUMNS, NATURAL_KEY,
                                         USAGE_UPDATES)
    usage_batch = _usage_values(org_id, connection_id, usage, processors, every_column=False)
    cost_values = cost_rows(org_id, connection_id, costs)
    window: dict[str, Any] = {"org_id": org_id, "connection_id": connection_id, "source": source,
                              "stream": stream, "bucket_width": bucket_width, "start": start, "end": end}
    _clear_window(conn, t.usage_records, placed=((at, s) for _, s, _, at, _ in usage_batch.idents), **window)
    _write(conn, t.usage_records, usage_batch.columns, usage_batch.rows, NATURAL_KEY, USAGE_UPDATES,
           bound=True)
    _clear_window(conn, t.cost_records, placed=((r["bucket_start"], r["stream"]) for r in cost_values),
                  **window)
    upsert_costs(conn, cost_values)
    return len(usage_batch.rows) + len(cost_values)


def _clear_window(conn: Connection, table: Table, *, placed: Iterable[tuple[datetime, str]], org_id: int,
                  connection_id: int, source: str, stream: str, bucket_width: str, start: datetime,
                  end: datetime) -> None:
    """Delete the window's rows from `table`; raise if a row to be written lies outside it (the
    caller's transaction then takes the delete back)."""
    c = table.c
    conn.execute(delete(table).where(and_(
        c.org_id == org_id, c.connection_id == connection_id, c.source == source, c.stream == stream,
        c.bucket_width == bucket_width, c.bucket_start >= start, c.bucket_start < end)))
    for bucket_start, row_stream in placed:
        if not (start <= bucket_start < end) or row_stream != stream:
            raise LedgerError(
                f"A {source} record for {bucket_start:%Y-%m-%d %H:%M} ({row_stream}) lies outside the "
                f"window being replaced ({stream} {start:%Y-%m-%d}..{end:%Y-%m-%d}); nothing was written.")


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
