"""Coding-tool KPIs (Claude Code, Cursor): adoption, activity, acceptance and cost, per tool and overall.

Read from the ledger's usage and cost records of the sources `claude_code` and `cursor` through
`usage_report` / `cost_report` (never from the vendors' raw shapes). Definitions (docs/coding-tools.md):

    active user        a person (email) with a day of activity: a Claude Code row for the day (its
                       `sessions`), a Cursor day marked `isActive` (`active_days`). API keys running
                       Claude Code headless are counted apart (`active_api_keys`), never as users.
    active_users       distinct active people in the period (the whole window without --by)
    dau                mean of the daily distinct active people over the period's days
    wau, mau           distinct active people in the last 7 / 30 days of the period
    lines_accepted     lines of code kept: Claude Code's `lines_added` (edits it made were accepted),
                       Cursor's `accepted_lines_added`
    acceptance_rate    tool actions accepted / (accepted + rejected): Claude Code edit/write tools,
                       Cursor applies (`totalAccepts` / `totalRejects`)
    requests           Cursor's composer, chat, agent, Cmd-K and Bugbot requests; Claude Code has none
    cost               Cursor: charged cents (reported); Claude Code: the vendor's estimate (estimated)
    cost_per_active_user, cost_per_accepted_line   cost / active_users, cost / lines_accepted

The overall row counts a person once across tools (the same email in both).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from tallybook.analytics.rollups import ReportError, ReportQuery, cost_report, usage_report

TOOLS = ("claude_code", "cursor")
ORIGINS = {"claude_code": "estimated", "cursor": "reported"}
PERIODS = ("day", "week", "month")
ALL = "all"
# activity units summed per tool, and the unit that marks a person active that day
SUMMED = ("sessions", "lines_added", "lines_removed", "accepted_lines_added", "commits", "pull_requests",
          "tool_accepted", "tool_rejected", "requests")
ACTIVE_UNIT = {"claude_code": "sessions", "cursor": "active_days"}
# which summed figures a tool reports at all (None where it does not: not a zero)
REPORTS = {
    "claude_code": {"sessions", "lines_added", "lines_removed", "commits", "pull_requests", "tool_accepted",
                    "tool_rejected"},
    "cursor": {"lines_added", "lines_removed", "accepted_lines_added", "tool_accepted", "tool_rejected",
               "requests"},
}
PLACES = Decimal("0.0001")


@dataclass
class DevToolsRow:
    tool: str  # claude_code | cursor | all
    period: str | None  # the period's label with --by, else None (the whole window)
    start: date
    end: date  # inclusive last day
    active_users: int = 0
    dau: Decimal = Decimal(0)
    wau: int = 0
    mau: int = 0
    active_api_keys: int = 0
    figures: dict[str, int | None] = field(default_factory=dict)
    tokens: int = 0
    cost: Decimal = Decimal(0)
    currency: str = "USD"
    cost_origin: str = "reported"

    @property
    def lines_accepted(self) -> int | None:
        if self.tool == "claude_code":
            return self.figures.get("lines_added")
        if self.tool == "cursor":
            return self.figures.get("accepted_lines_added")
        return self.figures.get("lines_accepted")

    @property
    def acceptance_rate(self) -> Decimal | None:
        accepted, rejected = self.figures.get("tool_accepted"), self.figures.get("tool_rejected")
        if accepted is None or rejected is None or not accepted + rejected:
            return None
        return (Decimal(accepted) / (accepted + rejected)).quantize(PLACES)

    def as_dict(self) -> dict[str, Any]:
        accepted = self.lines_accepted
        return {
            "tool": self.tool, "period": self.period, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "active_users": self.active_users, "dau": self.dau, "wau": self.wau, "mau": self.mau,
            "active_api_keys": self.active_api_keys,
            **{name: self.figures.get(name) for name in SUMMED if name != "accepted_lines_added"},
            "lines_accepted": accepted, "acceptance_rate": self.acceptance_rate, "tokens": self.tokens,
            "cost": self.cost, "currency": self.currency, "cost_origin": self.cost_origin,
            "cost_per_active_user": (self.cost / self.active_users).quantize(PLACES) if self.active_users else None,
            "cost_per_accepted_line": (self.cost / accepted).quantize(PLACES) if accepted else None,
        }


def period_label(day: date, period: str | None) -> str | None:
    """The same labels as `analytics.rollups`: 2026-10-05, the Monday of the ISO week, 2026-10."""
    if period is None:
        return None
    if period == "day":
        return day.isoformat()
    if period == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    return f"{day:%Y-%m}"


def devtools(conn: Connection, org_id: int, start: datetime, end: datetime, *, tools: Sequence[str] = TOOLS,
             period: str | None = None) -> list[DevToolsRow]:
    """KPI rows per tool (and `all` when more than one tool) for [start, end), per period with `period`."""
    unknown = [t for t in tools if t not in TOOLS]
    if unknown or not tools:
        raise ReportError(f"Unknown coding tool {', '.join(unknown) or '(none)'}; choose from {', '.join(TOOLS)}.")
    if period is not None and period not in PERIODS:
        raise ReportError(f"Cannot report coding tools by {period!r}; choose from {', '.join(PERIODS)}.")
    query = ReportQuery(org_id=org_id, start=start, end=end, group_by=["source", "day", "user", "api_key"],
                        filters={"source": list(tools)})
    # (tool, label) -> day -> active emails; and the summed figures
    active: dict[tuple[str, str | None], dict[date, set[str]]] = defaultdict(lambda: defaultdict(set))
    keys: dict[tuple[str, str | None], set[str]] = defaultdict(set)
    sums: dict[tuple[str, str | None], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    tokens: dict[tuple[str, str | None], int] = defaultdict(int)
    for row in usage_report(conn, query):
        tool, day = row["source"], date.fromisoformat(row["day"][:10])
        label = period_label(day, period)
        slot = (tool, label)
        quantities = row["quantities"]
        if quantities.get(ACTIVE_UNIT[tool]):
            if row["user"]:
                active[slot][day].add(row["user"].lower())
            elif row["api_key"]:
                keys[slot].add(row["api_key"])
        for unit in SUMMED:
            sums[slot][unit] += int(quantities.get(unit, 0))
        tokens[slot] += int(row["total_tokens"])
    money: dict[tuple[str, str | None], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in cost_report(conn, ReportQuery(org_id=org_id, start=start, end=end, group_by=["source", "day"],
                                             filters={"source": list(tools)})):
        label = period_label(date.fromisoformat(row["day"][:10]), period)
        money[(row["source"], label)][row["currency"]] += row["amount"]

    labels = sorted({label for _, label in [*active, *sums, *money]}, key=lambda x: x or "") or [None]
    if period is None:
        labels = [None]
    rows: list[DevToolsRow] = []
    for label in labels:
        first, last = _bounds(label, period, start, end)
        per_tool = []
        for tool in tools:
            slot = (tool, label)
            figures = {u: (sums[slot][u] if u in REPORTS[tool] else None) for u in SUMMED}
            tool_row = _row(tool, label, first, last, active[slot], figures, tokens[slot], money[slot],
                            ORIGINS[tool])
            tool_row.active_api_keys = len(keys[slot])
            per_tool.append(tool_row)
        rows.extend(per_tool)
        if len(tools) > 1:
            rows.append(_overall(label, first, last, per_tool, [active[(t, label)] for t in tools],
                                 [money[(t, label)] for t in tools]))
    return rows


def _bounds(label: str | None, period: str | None, start: datetime, end: datetime) -> tuple[date, date]:
    """The period's first and last day, clipped to the window."""
    lo, hi = start.date(), (end - timedelta(days=1)).date()
    if label is None or period is None:
        return lo, hi
    if period == "day":
        first = last = date.fromisoformat(label)
    elif period == "week":
        first = date.fromisoformat(label)
        last = first + timedelta(days=6)
    else:
        first = date.fromisoformat(label + "-01")
        last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    return max(first, lo), min(last, hi)


def _row(tool: str, label: str | None, first: date, last: date, active: dict[date, set[str]],
         figures: dict[str, int | None], tokens: int, money: dict[str, Decimal], origin: str) -> DevToolsRow:
    row = DevToolsRow(tool, label, first, last, figures=figures, tokens=tokens, cost_origin=origin)
    _activity(row, active)
    if len(money) > 1:
        raise ReportError(f"{tool} costs are in several currencies ({', '.join(sorted(money))}); "
                          "report one tool at a time.")
    for currency, amount in money.items():
        row.currency, row.cost = currency, amount
    return row


def _activity(row: DevToolsRow, active: dict[date, set[str]]) -> None:
    days = (row.end - row.start).days + 1
    everyone = set().union(*active.values()) if active else set()
    row.active_users = len(everyone)
    row.dau = (Decimal(sum(len(people) for people in active.values())) / days).quantize(PLACES) if days > 0 else Decimal(0)
    for name, span in (("wau", 7), ("mau", 30)):
        since = row.end - timedelta(days=span - 1)
        setattr(row, name, len(set().union(*(p for d, p in active.items() if d >= since)) if active else set()))


def _overall(label: str | None, first: date, last: date, rows: list[DevToolsRow],
             actives: list[dict[date, set[str]]], monies: list[dict[str, Decimal]]) -> DevToolsRow:
    merged: dict[date, set[str]] = defaultdict(set)
    for active in actives:
        for day, people in active.items():
            merged[day] |= people
    figures: dict[str, int | None] = {}
    for unit in SUMMED:
        values = [r.figures.get(unit) for r in rows if r.figures.get(unit) is not None]
        figures[unit] = sum(v for v in values if v is not None) if values else None
    accepted = [r.lines_accepted for r in rows if r.lines_accepted is not None]
    figures["lines_accepted"] = sum(a for a in accepted if a is not None) if accepted else None
    origins = sorted({r.cost_origin for r in rows if r.cost})
    row = DevToolsRow(ALL, label, first, last, figures=figures, tokens=sum(r.tokens for r in rows),
                      cost_origin="+".join(origins) or "reported")
    row.active_api_keys = sum(r.active_api_keys for r in rows)
    _activity(row, merged)
    currencies = {c for m in monies for c in m}
    if len(currencies) > 1:
        raise ReportError(f"Coding-tool costs are in several currencies ({', '.join(sorted(currencies))}); "
                          "report one tool at a time with --tool.")
    for money in monies:
        for currency, amount in money.items():
            row.currency = currency
            row.cost += amount
    return row
