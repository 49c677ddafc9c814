"""Spend per day, week, month, quarter or year, each period set against the one before it.

Totals are vendor-reported cost (`origin = "reported"`), summed in SQL by `cost_report` and kept
apart per currency: a series is one group (say one provider) in one currency, and a change is
only ever computed between two periods of the same series. Every period of the window appears,
a period without records as zero, so "the previous period" is always the calendar one before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import Connection

from tallybook.analytics.rollups import (
    PERIODS,
    USAGE_GROUPS,
    ReportError,
    ReportQuery,
    cost_report,
    usage_report,
)

TREND_PERIODS = ("day", "week", "month", "quarter", "year")
PCT = Decimal("0.01")


@dataclass(frozen=True)
class TrendRow:
    """One period of one series. `change` is exact; `change_pct` is rounded half-even to 0.01 %.

    Both are None for the first period of the window; `change_pct` is also None when the
    previous period was zero. `complete` is False when the window cuts the period short (the
    current month, or a --from in mid-quarter), so a low figure there is not a fall in spend.
    `tokens` is the same group's reported usage in the period (None when the grouping or the
    filters have no meaning for usage records, e.g. line_item).
    """

    period: str
    start: date
    end: date  # exclusive
    currency: str
    amount: Decimal
    change: Decimal | None
    change_pct: Decimal | None
    complete: bool
    group: Mapping[str, Any] = field(default_factory=dict)
    tokens: int | None = None
    origin: str = "reported"

    def as_dict(self) -> dict[str, Any]:
        """Flat, for the CLI and the API: the period, the group keys, then the figures."""
        row = {"period": self.period, "start": self.start, "end": self.end, **self.group}
        row.update({k: getattr(self, k) for k in (
            "amount", "currency", "origin", "change", "change_pct", "tokens", "complete")})
        return row


def period_start(day: date, period: str) -> date:
    """The first day of the period holding `day` (weeks start on Monday, as in the rollups)."""
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    if period == "quarter":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if period == "year":
        return date(day.year, 1, 1)
    raise ReportError(f"Unknown period {period!r}; choose from {', '.join(TREND_PERIODS)}.")


def next_period(start: date, period: str) -> date:
    """The first day of the period after the one starting at `start`."""
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}.get(period)
    if months is None:
        raise ReportError(f"Unknown period {period!r}; choose from {', '.join(TREND_PERIODS)}.")
    index = start.year * 12 + start.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_label(start: date, period: str) -> str:
    """The label the rollups give the period in SQL: 2026-10-05, 2026-10, 2026-Q4, 2026."""
    if period in ("day", "week"):
        return start.isoformat()
    if period == "month":
        return f"{start:%Y-%m}"
    if period == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    if period == "year":
        return str(start.year)
    raise ReportError(f"Unknown period {period!r}; choose from {', '.join(TREND_PERIODS)}.")


def period_starts(first_day: date, end_day: date, period: str) -> list[date]:
    """Starts of every period overlapping the days [first_day, end_day)."""
    starts, current = [], period_start(first_day, period)
    while current < end_day:
        starts.append(current)
        current = next_period(current, period)
    return starts


def pct_change(current: Decimal, previous: Decimal) -> Decimal | None:
    """(current - previous) / previous in percent, to 0.01 %; None when there is nothing to compare to."""
    if previous == 0:
        return None
    return ((current - previous) * 100 / previous).quantize(PCT, rounding=ROUND_HALF_EVEN)


def trend(conn: Connection, query: ReportQuery, period: str) -> list[TrendRow]:
    """Reported spend per `period` and per group of `query.group_by` (not a period), per currency.

    Rows are ordered by group, currency, then period. A group that had usage but no cost
    record in the window has no row (cost is what a trend is of; it has no currency).
    """
    if period not in TREND_PERIODS:
        raise ReportError(f"Cannot trend by {period!r}; choose from {', '.join(TREND_PERIODS)}.")
    groups = list(query.group_by)
    if any(g in PERIODS for g in groups):
        raise ReportError("Group a trend by dimensions (provider, model, project, ...); "
                          "the period is its own option.")
    rows = cost_report(conn, dataclasses.replace(query, group_by=[period, *groups]))
    tokens = _tokens(conn, query, period, groups)
    first_day, end_day = _days(query.start, query.end)
    starts = period_starts(first_day, end_day, period)

    series: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (*(row[g] for g in groups), row["currency"])
        entry = series.setdefault(key, {"group": _group(row, groups), "amounts": {}})
        entry["amounts"][row[period]] = row["amount"]

    out: list[TrendRow] = []
    for key in sorted(series, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        entry, previous = series[key], None
        for start in starts:
            label = period_label(start, period)
            amount = entry["amounts"].get(label, Decimal(0))
            end = next_period(start, period)
            out.append(TrendRow(
                period=label, start=start, end=end, currency=key[-1], amount=amount,
                change=None if previous is None else amount - previous,
                change_pct=None if previous is None else pct_change(amount, previous),
                complete=first_day <= start and end <= end_day, group=entry["group"],
                tokens=None if tokens is None else tokens.get((label, *key[:-1]), 0)))
            previous = amount
    return out


@dataclass
class DailySeries:
    """One group's reported spend per UTC day in one currency; days without records are absent."""

    currency: str
    group: dict[str, Any]
    values: dict[date, Decimal]


def daily_series(conn: Connection, query: ReportQuery) -> list[DailySeries]:
    """Reported spend per day in [query.start, query.end), per group of `query.group_by` and currency."""
    groups = list(query.group_by)
    if any(g in PERIODS for g in groups):
        raise ReportError("Daily series are per day already; group by dimensions (provider, model, project).")
    found: dict[tuple[Any, ...], DailySeries] = {}
    for row in cost_report(conn, dataclasses.replace(query, group_by=["day", *groups])):
        key = (*(row[g] for g in groups), row["currency"])
        if key not in found:
            found[key] = DailySeries(currency=row["currency"], group=_group(row, groups), values={})
        found[key].values[date.fromisoformat(row["day"])] = row["amount"]
    return [found[k] for k in sorted(found, key=lambda k: tuple("" if v is None else str(v) for v in k))]


def _days(start: datetime, end: datetime) -> tuple[date, date]:
    """[start, end) datetimes -> [first, end) days; a partial last day counts as a day."""
    last = (end - timedelta(microseconds=1)).date()
    return start.date(), last + timedelta(days=1)


def _group(row: Mapping[str, Any], groups: list[str]) -> dict[str, Any]:
    found = {g: row[g] for g in groups}
    found.update({f"{g}_name": row[f"{g}_name"] for g in groups if f"{g}_name" in row})
    return found


def _tokens(conn: Connection, query: ReportQuery, period: str,
            groups: list[str]) -> dict[tuple[Any, ...], int] | None:
    """Total reported tokens per (period label, *group values), when usage records have those columns."""
    if any(g not in USAGE_GROUPS for g in [*groups, *query.filters]):
        return None
    rows = usage_report(conn, dataclasses.replace(query, group_by=[period, *groups]))
    found: dict[tuple[Any, ...], int] = {}
    for row in rows:
        key = (row[period], *(row[g] for g in groups))
        found[key] = found.get(key, 0) + row["total_tokens"]
    return found
