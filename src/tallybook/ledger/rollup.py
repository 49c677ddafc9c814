"""Daily rollups: the ledger's daily buckets summed over the few dimensions most reports group by.

`usage_daily` and `cost_daily` hold one row per (org, day, source, provider, model, tier, ...)
instead of one per project x API key x user, so a year of rates or trends reads thousands of rows
instead of millions. They are derived data, never written any other way than here:

    refresh_daily(conn, org_id, start, end)   recompute the rollup rows of those days from the
                                              records, in the caller's transaction
    rebuild(conn, org_id=None)                 recompute everything (`tallybook db rebuild-rollups`)
    has_rollup(conn, table, org_id)            whether the org's rollup is maintained at all

Whoever replaces daily buckets (the sync engine, after `store.replace_window`) calls
`refresh_daily` for the same window in the same transaction, so the rollup never disagrees with
the records it came from. Reports use a rollup only for an organisation that has rollup rows, so a
ledger written before the rollups existed (or by a writer that does not refresh them) is read
from the records, never from a half-built rollup.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, select

from tallybook.ledger import schema as t

USAGE_KEYS = ("source", "provider", "model", "service_tier", "batch", "context_window", "unit")
USAGE_SUMS = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
              "output_tokens", "reasoning_tokens", "audio_input_tokens", "audio_output_tokens", "requests",
              "quantity")
COST_KEYS = ("source", "provider", "model", "service_tier", "token_type", "cost_type", "currency")
COST_SUMS = ("amount_nanos",)
# rollup table -> (records table, grouping columns, summed columns)
ROLLUPS: dict[str, tuple[Table, Table, tuple[str, ...], tuple[str, ...]]] = {
    "usage_daily": (t.usage_daily, t.usage_records, USAGE_KEYS, USAGE_SUMS),
    "cost_daily": (t.cost_daily, t.cost_records, COST_KEYS, COST_SUMS),
}


def _refresh(conn: Connection, name: str, org_id: int | None, start: datetime | None,
             end: datetime | None, source: str | None = None) -> int:
    rollup, records, keys, sums = ROLLUPS[name]
    r, c = rollup.c, records.c
    gone: list[Any] = []
    where: list[Any] = [c.bucket_width == "1d"]
    if org_id is not None:
        gone.append(r.org_id == org_id)
        where.append(c.org_id == org_id)
    if start is not None:
        gone.append(r.day >= start)
        where.append(c.bucket_start >= start)
    if end is not None:
        gone.append(r.day < end)
        where.append(c.bucket_start < end)
    if source is not None:
        gone.append(r.source == source)
        where.append(c.source == source)
    conn.execute(delete(rollup).where(*gone))
    group = [c.org_id, c.bucket_start, *(c[k] for k in keys)]
    query = select(*group, *(func.sum(c[s]) for s in sums)).where(*where).group_by(*group)
    conn.execute(insert(rollup).from_select(["org_id", "day", *keys, *sums], query))
    # INSERT ... SELECT reports no row count on every driver: count what the refreshed range holds.
    return int(conn.execute(select(func.count()).select_from(rollup).where(*gone)).scalar_one())


def refresh_daily(conn: Connection, org_id: int, start: datetime, end: datetime, *,
                  source: str | None = None) -> int:
    """Recompute both rollups for the daily buckets in [start, end), of one source or all of them.

    Returns the rollup rows written. Scoping to the source a sync task wrote keeps the work to
    that source's rows; the answer is the same as refreshing every source.
    """
    return sum(_refresh(conn, name, org_id, start, end, source) for name in ROLLUPS)


def rebuild(conn: Connection, org_id: int | None = None) -> int:
    """Recompute both rollups from scratch, for one organisation or all. Returns the rollup rows written."""
    return sum(_refresh(conn, name, org_id, None, None) for name in ROLLUPS)


def has_rollup(conn: Connection, table: Table, org_id: int) -> bool:
    """True when the organisation's rollup in `table` is maintained (it has at least one row)."""
    return conn.execute(select(table.c.id).where(table.c.org_id == org_id).limit(1)).first() is not None
