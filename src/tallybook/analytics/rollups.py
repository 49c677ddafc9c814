"""Usage and cost totals for a window, grouped by any dimension or period.

Grouping happens in SQL (one GROUP BY per report), so a report over millions of
rows returns only its groups. Daily buckets answer every question except
`hour`, which reads the hourly buckets; the two are never added together.
When every group and filter is a column of the daily rollups (`ledger.rollup`: provider, model,
tier, source, periods...) and the organisation's rollup is maintained, a report reads the rollup
instead of the records; the answer is the same, read from thousands of rows instead of millions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, Integer, String, Table, cast, func, literal_column, select

from tallybook.ledger import schema as t
from tallybook.ledger.rollup import has_rollup
from tallybook.money import from_nanos

PERIODS = ("hour", "day", "week", "month", "quarter", "year")
USAGE_GROUPS = (
    "provider", "model", "project", "api_key", "user", "service_tier", "batch", "context_window",
    "inference_geo", "source", "stream", "unit", "virtual_key", "customer", "feature", "business_unit", *PERIODS,
)
COST_GROUPS = (
    "provider", "model", "project", "api_key", "line_item", "token_type", "cost_type", "service_tier",
    "source", "stream", *PERIODS,
)
TOKEN_COLUMNS = (
    "input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "output_tokens",
    "reasoning_tokens", "audio_input_tokens", "audio_output_tokens", "requests",
)
# What the daily rollups can answer: their grouping columns and every period but the hour.
ROLLUP_GROUPS = {
    "usage_records": (t.usage_daily, frozenset({"source", "provider", "model", "service_tier", "batch",
                                                "context_window", "unit", *PERIODS} - {"hour"})),
    "cost_records": (t.cost_daily, frozenset({"source", "provider", "model", "service_tier", "token_type",
                                              "cost_type", "currency", *PERIODS} - {"hour"})),
}
# Coding tools (connectors/claude_code.py, cursor.py). Claude Code's tokens restate usage that the
# Anthropic API report or a subscription seat already covers, and its cost is the vendor's estimate,
# not a bill: both are left out of totals unless `--source claude_code` asks for them. Neither tool
# reports per-token cost lines, so token-rate analyses (rates, savings, reconcile) leave both out.
ESTIMATE_SOURCES = ("claude_code",)
CODING_SOURCES = ("claude_code", "cursor")
# Names of provider objects shown beside their ids.
NAMED_GROUPS = {"project": ("project", "workspace"), "api_key": ("api_key",), "user": ("user",)}


class ReportError(ValueError):
    pass


@dataclass(frozen=True)
class ReportQuery:
    org_id: int
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC
    group_by: Sequence[str] = ()
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)


def _period(conn: Connection, period: str, column: Any) -> ColumnElement[Any]:
    """The period's label, the same text on both databases: 2026-10-05T13:00, 2026-10-05, the Monday
    of the ISO week (2026-10-05), 2026-10, 2026-Q4, 2026. Labels sort in time order as text."""
    if conn.dialect.name == "postgresql":
        formats = {"hour": 'YYYY-MM-DD"T"HH24:00', "day": "YYYY-MM-DD", "month": "YYYY-MM",
                   "quarter": 'YYYY-"Q"Q', "year": "YYYY"}
        if period == "week":
            return func.to_char(func.date_trunc("week", column), "YYYY-MM-DD")
        return func.to_char(column, formats[period])
    if period == "week":  # the Monday that starts the ISO week
        shift = f"'-' || ((CAST(strftime('%w', {column.name}) AS INTEGER) + 6) % 7) || ' days'"
        return func.date(column, literal_column(shift))
    if period == "quarter":  # SQLite's strftime has no quarter: (month + 2) / 3 in integer arithmetic
        quarter = (cast(func.strftime("%m", column), Integer) + 2) // 3
        return func.strftime("%Y", column).concat("-Q").concat(cast(quarter, String))
    formats = {"hour": "%Y-%m-%dT%H:00", "day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}
    return func.strftime(formats[period], column)


def reading_table(conn: Connection, records: Table, query: ReportQuery,
                  extra: Sequence[str] = ()) -> tuple[Table, Any]:
    """The table to answer `query` from and its day column: the daily rollup of `records` when it has
    every group, filter and `extra` column and the organisation's rollup is maintained, else `records`."""
    rollup, columns = ROLLUP_GROUPS[records.name]
    wanted = {*query.group_by, *(k for k, v in query.filters.items() if v), *extra}
    if wanted <= columns and has_rollup(conn, rollup, query.org_id):
        return rollup, rollup.c.day
    return records, records.c.bucket_start


def _grouped(conn: Connection, records: Table, query: ReportQuery, allowed: Sequence[str],
             extra: Sequence[str]) -> tuple[Table, list[tuple[str, Any]], list[ColumnElement[bool]]]:
    unknown = [g for g in query.group_by if g not in allowed]
    if unknown:
        raise ReportError(f"Cannot group by {', '.join(unknown)}; choose from {', '.join(allowed)}.")
    periods = [g for g in query.group_by if g in PERIODS]
    if len(periods) > 1:
        raise ReportError(f"Group by one period at a time, not {', '.join(periods)}.")
    width = "1h" if "hour" in query.group_by else "1d"
    for name, values in query.filters.items():
        if values and name not in records.c:
            raise ReportError(f"Cannot filter by {name}.")
    table, day = reading_table(conn, records, query, extra)
    c = table.c
    keys: list[tuple[str, Any]] = []
    for name in [*query.group_by, *[e for e in extra if e not in query.group_by]]:
        expr = _period(conn, name, day) if name in PERIODS else c[name]
        keys.append((name, expr.label(name)))
    where = [c.org_id == query.org_id, day >= query.start, day < query.end]
    if table is records:
        where.append(c.bucket_width == width)
    for name, values in query.filters.items():
        if values:
            where.append(c[name].in_(list(values)))
    return table, keys, where


def _names(conn: Connection, org_id: int) -> dict[str, dict[str, str]]:
    o = t.provider_objects.c
    found: dict[str, dict[str, str]] = {}
    for kind, object_id, name, email in conn.execute(
        select(o.kind, o.object_id, o.name, o.email).where(o.org_id == org_id)
    ):
        found.setdefault(kind, {})[object_id] = name or email or object_id
    return found


def _add_names(conn: Connection, query: ReportQuery, rows: list[dict[str, Any]]) -> None:
    wanted = [g for g in NAMED_GROUPS if g in query.group_by]
    if not wanted:
        return
    names = _names(conn, query.org_id)
    for row in rows:
        for group in wanted:
            value = row.get(group)
            kinds = NAMED_GROUPS[group]
            row[f"{group}_name"] = next(
                (names[k][value] for k in kinds if value is not None and value in names.get(k, {})), None)


def usage_report(conn: Connection, query: ReportQuery) -> list[dict[str, Any]]:
    """One dict per group: the group keys, then every token measure, `cache_write_tokens`,
    and `quantities` ({unit: total}) for non-token units (images, seconds, sessions, ...)."""
    table, keys, where = _grouped(conn, t.usage_records, query, USAGE_GROUPS, extra=("unit",))
    c = table.c
    if not query.filters.get("source"):
        where.append(_not_counted_twice(table, query))
    measures = [func.sum(c[m]).label(m) for m in TOKEN_COLUMNS] + [func.sum(c.quantity).label("quantity")]
    stmt = select(*[k[1] for k in keys], *measures).where(*where).group_by(*[k[1] for k in keys])
    grouped: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in conn.execute(stmt).mappings():
        ident = tuple(row[g] for g in query.group_by)
        out = grouped.get(ident)
        if out is None:
            out = {g: _plain(row[g]) for g in query.group_by}
            out.update({m: 0 for m in TOKEN_COLUMNS})
            out["quantities"] = {}
            grouped[ident] = out
        for m in TOKEN_COLUMNS:
            out[m] += int(row[m] or 0)
        if row["unit"]:
            out["quantities"][row["unit"]] = out["quantities"].get(row["unit"], 0) + int(row["quantity"] or 0)
    rows = list(grouped.values())
    for out in rows:
        out["cache_write_tokens"] = out["cache_write_5m_tokens"] + out["cache_write_1h_tokens"]
        out["total_tokens"] = (out["input_tokens"] + out["cache_read_tokens"] + out["cache_write_tokens"]
                               + out["output_tokens"])
    rows.sort(key=lambda r: tuple("" if r[g] is None else str(r[g]) for g in query.group_by))
    _add_names(conn, query, rows)
    return rows


def _not_counted_twice(table: Any, query: ReportQuery) -> Any:
    """Gateway-metered usage of a provider whose own usage report is in the window is left out.

    The gateway meters many of the very requests the provider reports, so adding both would count
    them twice; a provider only the gateway sees (a local model, an unconnected account) still
    shows its metered usage. Claude Code's tokens are left out too (`ESTIMATE_SOURCES`); its
    activity units (sessions, lines, ...) stay. `--source` chooses explicitly.
    """
    other = table.alias("vendor_reported").c
    moment = other.day if "day" in other else other.bucket_start
    narrow = [other.bucket_width == ("1h" if "hour" in query.group_by else "1d")] if "bucket_width" in other else []
    reported = select(other.provider).distinct().where(
        other.org_id == query.org_id, moment >= query.start, moment < query.end, other.source != "gateway", *narrow)
    c = table.c
    return ~((c.source == "gateway") & c.provider.in_(reported)) & ~(
        c.source.in_(ESTIMATE_SOURCES) & c.unit.is_(None))


def cost_report(conn: Connection, query: ReportQuery) -> list[dict[str, Any]]:
    """One dict per group and currency: the group keys, `amount` (Decimal) and `currency`.

    Vendor estimates (`ESTIMATE_SOURCES`) are left out unless the query's source filter names them;
    a report of estimates only says `origin: estimated`."""
    table, keys, where = _grouped(conn, t.cost_records, query, COST_GROUPS, extra=("currency",))
    sources = list(query.filters.get("source") or ())
    if not sources:
        where.append(table.c.source.not_in(ESTIMATE_SOURCES))
    origin = "estimated" if sources and set(sources) <= set(ESTIMATE_SOURCES) else "reported"
    stmt = (select(*[k[1] for k in keys], func.sum(table.c.amount_nanos).label("nanos"))
            .where(*where).group_by(*[k[1] for k in keys]))
    rows = []
    for row in conn.execute(stmt).mappings():
        out = {g: _plain(row[g]) for g in query.group_by}
        out["amount"] = from_nanos(int(row["nanos"] or 0))
        out["currency"] = row["currency"]
        out["origin"] = origin
        rows.append(out)
    rows.sort(key=lambda r: tuple("" if r[g] is None else str(r[g]) for g in [*query.group_by, "currency"]))
    _add_names(conn, query, rows)
    return rows


def total_amount(rows: list[dict[str, Any]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for row in rows:
        totals[row["currency"]] = totals.get(row["currency"], Decimal(0)) + row["amount"]
    return totals


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
