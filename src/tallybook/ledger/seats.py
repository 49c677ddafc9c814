"""Seats: what a seat costs per platform and plan (versioned prices), and who holds one, from when.

    set_plan(conn, org_id, plan)                         upsert the price in force from `plan.effective_from`
    load_plans(conn, org_id) -> list[SeatPlan]
    assign(conn, org_id, platform, plan, email, *, since, origin) -> bool   idempotent: False if already held
    release(conn, org_id, platform, email, *, at) -> bool
    put_assignment(conn, org_id, seat) -> bool                              upsert as a seat file states it
    load_assignments(conn, org_id) -> list[SeatAssignment]      stated seats, and coding-tool members' seats
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, func, insert, select, update

from tallybook.ledger.identities import SINCE_ALWAYS
from tallybook.ledger.schema import usage_records
from tallybook.ledger.schema_coding import coding_members
from tallybook.ledger.schema_identity import seat_assignments, seat_plans
from tallybook.ledger.store import utcnow
from tallybook.money import from_nanos, to_nanos

PERIODS = {"month": 1, "year": 12}


@dataclass(frozen=True, slots=True)
class SeatPlan:
    platform: str
    plan: str
    price: Decimal  # per seat per period
    currency: str
    period: str  # month | year
    effective_from: datetime = SINCE_ALWAYS

    @property
    def monthly_price(self) -> Decimal:
        return self.price / PERIODS[self.period]


@dataclass(frozen=True, slots=True)
class SeatAssignment:
    platform: str
    plan: str
    email: str
    assigned_from: datetime
    assigned_to: datetime | None
    origin: str

    def held_during(self, start: datetime, end: datetime) -> bool:
        return self.assigned_from < end and (self.assigned_to is None or self.assigned_to > start)


def set_plan(conn: Connection, org_id: int, plan: SeatPlan) -> None:
    if plan.period not in PERIODS:
        raise ValueError(f"period {plan.period!r} must be one of {', '.join(PERIODS)}")
    c = seat_plans.c
    values = {"price_nanos": to_nanos(plan.price), "currency": plan.currency.upper(), "period": plan.period,
              "updated_at": utcnow()}
    found = conn.execute(select(c.id).where(c.org_id == org_id, c.platform == plan.platform, c.plan == plan.plan,
                                            c.effective_from == plan.effective_from)).scalar()
    if found is None:
        conn.execute(insert(seat_plans).values(org_id=org_id, platform=plan.platform, plan=plan.plan,
                                               effective_from=plan.effective_from, **values))
    else:
        conn.execute(update(seat_plans).where(c.id == found).values(**values))


def load_plans(conn: Connection, org_id: int) -> list[SeatPlan]:
    c = seat_plans.c
    return [SeatPlan(r.platform, r.plan, from_nanos(r.price_nanos), r.currency, r.period, r.effective_from)
            for r in conn.execute(select(seat_plans).where(c.org_id == org_id)
                                  .order_by(c.platform, c.plan, c.effective_from))]


def plan_at(plans: Iterable[SeatPlan], platform: str, plan: str, at: datetime) -> SeatPlan | None:
    """The plan's price version in force at `at`."""
    best = None
    for p in plans:
        if (p.platform == platform and p.plan == plan and p.effective_from <= at
                and (best is None or p.effective_from > best.effective_from)):
            best = p
    return best


def assign(conn: Connection, org_id: int, platform: str, plan: str, email: str, *, since: datetime,
           origin: str) -> bool:
    """Give `email` a seat from `since` unless they already hold one on the platform."""
    c = seat_assignments.c
    email = email.strip().lower()
    held = conn.execute(select(c.id, c.plan).where(c.org_id == org_id, c.platform == platform, c.email == email,
                                                   c.assigned_to.is_(None))).first()
    if held is not None:
        if held.plan != plan:
            conn.execute(update(seat_assignments).where(c.id == held.id).values(plan=plan, updated_at=utcnow()))
        return False
    conn.execute(insert(seat_assignments).values(org_id=org_id, platform=platform, plan=plan, email=email,
                                                 assigned_from=since, origin=origin, updated_at=utcnow()))
    return True


def release(conn: Connection, org_id: int, platform: str, email: str, *, at: datetime) -> bool:
    c = seat_assignments.c
    result = conn.execute(update(seat_assignments).where(
        c.org_id == org_id, c.platform == platform, c.email == email.strip().lower(), c.assigned_to.is_(None))
        .values(assigned_to=at, updated_at=utcnow()))
    return bool(result.rowcount)


def load_assignments(conn: Connection, org_id: int, *, members: bool = True) -> list[SeatAssignment]:
    """Every seat assignment; with `members`, also a seat for each coding-tool member (Cursor's member
    list, `ledger.coding`) of a platform that has a seat plan and no assignment stated for that e-mail."""
    c = seat_assignments.c
    stated = [SeatAssignment(r.platform, r.plan, r.email, r.assigned_from, r.assigned_to, r.origin)
              for r in conn.execute(select(seat_assignments).where(c.org_id == org_id)
                                    .order_by(c.platform, c.email, c.assigned_from))]
    return stated + (member_seats(conn, org_id, {(s.platform, s.email) for s in stated}) if members else [])


def member_seats(conn: Connection, org_id: int, stated: set[tuple[str, str]]) -> list[SeatAssignment]:
    """Seats of the members a coding tool lists (table `coding_members`, written by its connector).

    A member holds a seat of the platform's plan (the first by name when it has several: state others
    with `tallybook seats assign`) until the day the sync first saw them removed, and from the earliest
    of: the day the sync first listed them, their first activity, the first day of the tool's history
    in the ledger. The vendor's list gives no join date, and a member listed by the first sync of a
    backfill was, as far as the ledger can tell, a member through the history that sync fetched
    (state a later start with `tallybook seats assign --from`).
    """
    plans: dict[str, str] = {}
    for p in load_plans(conn, org_id):
        plans.setdefault(p.platform, p.plan)
    if not plans:
        return []
    m, u = coding_members.c, usage_records.c
    first_active = dict(conn.execute(
        select(func.lower(u.user), func.min(u.bucket_start)).where(
            u.org_id == org_id, u.provider.in_(list(plans)), u.user.is_not(None)).group_by(func.lower(u.user))).all())
    history_from: dict[str, datetime] = dict(conn.execute(select(u.provider, func.min(u.bucket_start)).where(
        u.org_id == org_id, u.provider.in_(list(plans))).group_by(u.provider)).all())
    seats = []
    for r in conn.execute(select(m.tool, m.email, m.first_seen_at, m.removed_at).where(
            m.org_id == org_id, m.tool.in_(list(plans))).order_by(m.tool, m.email)):
        email = r.email.lower()
        if (r.tool, email) in stated:
            continue
        since = min(r.first_seen_at, first_active.get(email) or r.first_seen_at,
                    history_from.get(r.tool) or r.first_seen_at)
        day = since.replace(hour=0, minute=0, second=0, microsecond=0)
        until = None if r.removed_at is None else r.removed_at.replace(hour=0, minute=0, second=0, microsecond=0)
        if until is not None and until <= day:
            until = day + timedelta(days=1)
        seats.append(SeatAssignment(r.tool, plans[r.tool], email, day, until, "members"))
    return seats


def put_assignment(conn: Connection, org_id: int, seat: SeatAssignment) -> bool:
    """Upsert one assignment on (platform, e-mail, assigned_from), as a seat file states it. True if new."""
    c = seat_assignments.c
    found = conn.execute(select(c.id).where(c.org_id == org_id, c.platform == seat.platform,
                                            c.email == seat.email, c.assigned_from == seat.assigned_from)).scalar()
    values = {"plan": seat.plan, "assigned_to": seat.assigned_to, "origin": seat.origin, "updated_at": utcnow()}
    if found is None:
        conn.execute(insert(seat_assignments).values(org_id=org_id, platform=seat.platform, email=seat.email,
                                                     assigned_from=seat.assigned_from, **values))
        return True
    conn.execute(update(seat_assignments).where(c.id == found).values(**values))
    return False
