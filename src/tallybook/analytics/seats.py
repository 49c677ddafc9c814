"""Seat utilisation: seats paid for and used, idle seats and what releasing them saves.

    seat_list(conn, org_id, at) -> list[dict]              every seat held at `at`, its price and last activity
    idle_seats(conn, org_id, at, days=30) -> list[IdleSeat]  held for `days` with no activity in them

Activity on a seat is usage in the ledger by the seat holder's e-mail (`user`) on the seat's
platform: Cursor's daily usage for a `cursor` seat; Claude Code and claude.ai exports for a `claude`
seat (`ACTIVITY` below); any usage a CSV import records under the platform's name. A seat held for
less than `days` is not called idle yet. The saving is the plan's monthly price (a yearly price / 12),
in the plan's currency, origin `estimated`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, or_, select

from tallybook.analytics.allocation import matcher
from tallybook.ledger import schema as t
from tallybook.ledger.seats import load_assignments, load_plans, plan_at

IDLE_DAYS = 30
# The providers whose usage counts as activity on a platform's seat, beside the platform itself.
ACTIVITY = {"claude": ("claude", "claude_code"), "cursor": ("cursor",), "chatgpt": ("chatgpt", "openai_chatgpt")}


@dataclass(frozen=True, slots=True)
class IdleSeat:
    platform: str
    plan: str
    email: str
    person: str | None
    team: str | None
    last_active: datetime | None  # None: never, as far as the ledger knows
    monthly_cost: Decimal | None  # None: the plan has no price
    currency: str | None
    origin: str = "estimated"

    def as_dict(self) -> dict[str, Any]:
        return {"platform": self.platform, "plan": self.plan, "email": self.email, "person": self.person,
                "team": self.team, "last_active": self.last_active, "monthly_saving": self.monthly_cost,
                "currency": self.currency, "origin": self.origin}


def last_activity(conn: Connection, org_id: int) -> dict[tuple[str, str], datetime]:
    """(platform, e-mail) -> the last day with any usage by that e-mail on the platform."""
    u = t.usage_records.c
    providers = {p for platform, extra in ACTIVITY.items() for p in (platform, *extra)}
    measures = [u.input_tokens, u.output_tokens, u.requests, u.quantity]
    rows = conn.execute(select(u.provider, func.lower(u.user).label("email"), func.max(u.bucket_start).label("last"))
                        .where(u.org_id == org_id, u.user.is_not(None), or_(*(m > 0 for m in measures)),
                               u.provider.in_(sorted(providers) + [p.platform for p in load_plans(conn, org_id)]))
                        .group_by(u.provider, func.lower(u.user)))
    found: dict[tuple[str, str], datetime] = {}
    for provider, email, last in rows:
        for platform in {provider} | {p for p, extra in ACTIVITY.items() if provider in extra}:
            key = (platform, email)
            found[key] = max(found.get(key, last), last)
    return found


def seat_list(conn: Connection, org_id: int, at: datetime) -> list[dict[str, Any]]:
    plans = load_plans(conn, org_id)
    active = last_activity(conn, org_id)
    match = matcher(conn, org_id)
    rows = []
    for seat in load_assignments(conn, org_id):
        if not seat.held_during(at, at + timedelta(days=1)):
            continue
        plan = plan_at(plans, seat.platform, seat.plan, at)
        who, _ = match(at, email=seat.email)
        rows.append({"platform": seat.platform, "plan": seat.plan, "email": seat.email,
                     "person": who.person if who else None, "team": who.team if who else None,
                     "since": seat.assigned_from, "origin": seat.origin,
                     "monthly_cost": plan.monthly_price if plan else None, "currency": plan.currency if plan else None,
                     "last_active": active.get((seat.platform, seat.email))})
    return rows


def idle_seats(conn: Connection, org_id: int, at: datetime, days: int = IDLE_DAYS) -> list[IdleSeat]:
    """Seats held at `at` (and for the `days` before it) with no activity in those days, costliest first."""
    since = at - timedelta(days=days)
    idle = []
    for row in seat_list(conn, org_id, at):
        if row["since"] > since:
            continue  # too new to call idle
        last = row["last_active"]
        if last is not None and last >= since:
            continue
        idle.append(IdleSeat(row["platform"], row["plan"], row["email"], row["person"], row["team"], last,
                             row["monthly_cost"], row["currency"]))
    idle.sort(key=lambda s: (-(s.monthly_cost or 0), s.platform, s.email))
    return idle
