"""The monthly (or quarterly) finance report: what AI cost, on which platform, for whom.

    finance_report(conn, org_id, period, *, currency=None, top=10) -> FinanceReport
    parse_period("2026-10" | "2026-Q4") -> Period

Built from `allocation.charges` (seats from the plans, usage from the ledger's cost records) so the
report, the allocation and the dashboard add up the same pieces:

    platforms     per platform: seat cost, usage cost, total, the previous period's total and the change,
                  the vendor-reported total (imported invoices, stream `invoice`) and ours minus theirs
    teams, cost_centres, top_users     allocation through the identity map, `unallocated` always shown
    idle_seats    seats held with no activity in the 30 days before the period's end (or today)

Every amount is in the report currency (the organisation's unless asked), converted day by day at the
ECB rate when a figure is in another; each says its origin (seats: estimated from plan prices; usage:
reported by the vendor; invoices: reported).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from tallybook.analytics.allocation import (
    UNALLOCATED,
    Charge,
    Converter,
    allocate,
    charges,
    matcher,
    usage_rows,
)
from tallybook.analytics.seats import IdleSeat, idle_seats
from tallybook.analytics.trends import next_period, pct_change, period_start
from tallybook.ledger.store import utcnow
from tallybook.money import from_nanos
from tallybook.pricing.fx import org_currency

_PERIOD = re.compile(r"^(\d{4})-(?:(0[1-9]|1[0-2])|Q([1-4]))$")


@dataclass(frozen=True)
class Period:
    label: str  # 2026-10 | 2026-Q4
    kind: str  # month | quarter
    start: datetime
    end: datetime

    def previous(self) -> Period:
        return period_from(period_start(self.start.date() - timedelta(days=1), self.kind), self.kind)


def period_from(first: date, kind: str) -> Period:
    end = next_period(first, kind)
    label = f"{first:%Y-%m}" if kind == "month" else f"{first.year}-Q{(first.month - 1) // 3 + 1}"
    return Period(label, kind, datetime.combine(first, datetime.min.time()), datetime.combine(end, datetime.min.time()))


def parse_period(text: str) -> Period:
    found = _PERIOD.match(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a month (YYYY-MM) or a quarter (YYYY-Qn).")
    year, month, quarter = found.groups()
    if month:
        return period_from(date(int(year), int(month), 1), "month")
    return period_from(date(int(year), 3 * (int(quarter) - 1) + 1, 1), "quarter")


@dataclass
class FinanceReport:
    period: Period
    currency: str
    total: Decimal
    seat_total: Decimal
    usage_total: Decimal
    previous_total: Decimal
    platforms: list[dict[str, Any]]
    teams: list[dict[str, Any]]
    cost_centres: list[dict[str, Any]]
    top_users: list[dict[str, Any]]
    unallocated: dict[str, Any]
    idle_seats: list[IdleSeat] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.label, "start": self.period.start, "end": self.period.end,
            "currency": self.currency, "total": self.total, "seat_total": self.seat_total,
            "usage_total": self.usage_total, "previous_total": self.previous_total,
            "change_pct": pct_change(self.total, self.previous_total),
            "origins": {"seat": "estimated", "usage": "reported", "vendor_reported": "reported"},
            "platforms": self.platforms, "teams": self.teams, "cost_centres": self.cost_centres,
            "top_users": self.top_users, "unallocated": self.unallocated,
            "idle_seats": [s.as_dict() for s in self.idle_seats],
        }


def _sum(items: list[Charge], kind: str | None = None) -> Decimal:
    return sum((c.amount for c in items if kind is None or c.kind == kind), Decimal(0))


def finance_report(conn: Connection, org_id: int, period: Period, *, currency: str | None = None,
                   top: int = 10, now: datetime | None = None) -> FinanceReport:
    currency = (currency or org_currency(conn, org_id)).upper()
    current = charges(conn, org_id, period.start, period.end, currency)
    previous = charges(conn, org_id, period.previous().start, period.previous().end, currency)
    invoices = _invoices(conn, org_id, period, currency)
    platforms = []
    for name in sorted({c.platform for c in current} | {c.platform for c in previous} | set(invoices)):
        mine = [c for c in current if c.platform == name]
        seat, usage = _sum(mine, "seat"), _sum(mine, "usage")
        before = _sum([c for c in previous if c.platform == name])
        vendor = invoices.get(name)
        platforms.append({
            "platform": name, "seat_cost": seat, "usage_cost": usage, "total": seat + usage,
            "previous_total": before, "change_pct": pct_change(seat + usage, before), "vendor_reported": vendor,
            "difference": None if vendor is None else seat + usage - vendor, "currency": currency})
    total = _sum(current)
    shares: dict[str, list[dict[str, Any]]] = {by: [{"name": s.name, "amount": s.amount, "share_pct": _pct(s.share), "seat_cost": s.seat,
                    "usage_cost": s.usage, "currency": currency} for s in allocate(current, by)]
              for by in ("team", "cost_centre", "person")}
    people = [row for row in shares["person"] if row["name"] != UNALLOCATED][:top]
    latest_team: dict[str, str | None] = {}
    for c in sorted(current, key=lambda c: c.day):  # a person who moved team is shown in the newer one
        if c.identity is not None and c.identity.person:
            latest_team[c.identity.person] = c.identity.team
    for row in people:
        row["team"] = latest_team.get(row["name"])
    unallocated = next(r for r in shares["team"] if r["name"] == UNALLOCATED)
    subjects: dict[str, Decimal] = {}
    lists = matcher(conn, org_id)
    names = {**lists.key_names, **lists.project_names}
    for c in current:
        if c.identity is None or not c.identity.team:
            key = f"{c.platform}: {_named(c.subject, names) or '(no key, user or project)'}"
            subjects[key] = subjects.get(key, Decimal(0)) + c.amount
    at = min(now or utcnow(), period.end)
    return FinanceReport(
        period=period, currency=currency, total=total, seat_total=_sum(current, "seat"),
        usage_total=_sum(current, "usage"), previous_total=_sum(previous), platforms=platforms,
        teams=shares["team"], cost_centres=shares["cost_centre"], top_users=people,
        unallocated={"amount": unallocated["amount"], "share_pct": unallocated["share_pct"], "currency": currency,
                     "largest": [{"subject": k, "amount": v} for k, v in
                                 sorted(subjects.items(), key=lambda kv: -kv[1])[:top]]},
        idle_seats=idle_seats(conn, org_id, at),
    )


def _invoices(conn: Connection, org_id: int, period: Period, currency: str) -> dict[str, Decimal]:
    rows = usage_rows(conn, org_id, period.start, period.end, invoices=True)
    convert_to = Converter(conn, currency, {r.currency for r in rows}, period.start, period.end)
    found: dict[str, Decimal] = {}
    for r in rows:
        found[r.provider] = found.get(r.provider, Decimal(0)) + convert_to(from_nanos(int(r.nanos)), r.currency,
                                                                           r.bucket_start)
    return found


def _named(subject: str | None, names: dict[str, str]) -> str | None:
    """A key or project id with the name the provider lists for it: `prototype-svc-7 (key_2wQX...)`."""
    name = names.get(subject or "")
    return f"{name} ({subject})" if name else subject


def _pct(share: Decimal) -> Decimal:
    return (share * 100).quantize(Decimal("0.01"))
