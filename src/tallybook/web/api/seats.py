"""`GET /api/v1/seats` and `GET /api/v1/seats/idle`: seats held today with their price and last activity,
and the idle ones with what releasing them saves (`tallybook seats list|idle`). Seat holders are
people, so these are for analysts and admins."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from tallybook.analytics.seats import IDLE_DAYS, idle_seats, seat_list
from tallybook.ledger.store import utcnow
from tallybook.web.api.errors import ApiRoute
from tallybook.web.api.params import Analyst, Reading
from tallybook.web.api.schemas import Amount, Moment, Strict, number

router = APIRouter(route_class=ApiRoute, tags=["optimisation"])


class Seat(Strict):
    platform: str
    plan: str
    email: str
    person: str | None
    team: str | None
    since: Moment
    assigned_by: str = Field(description="Where the seat came from: the vendor's member list, a file, by hand.")
    monthly_cost: Amount | None = Field(description="The plan's monthly price (a yearly price / 12).")
    currency: str | None
    cost_origin: Literal["estimated"]
    last_active: Moment | None = Field(description="The last day with usage by the holder on the platform.")


class Seats(Strict):
    at: Moment
    seats: list[Seat]


class IdleSeat(Strict):
    platform: str
    plan: str
    email: str
    person: str | None
    team: str | None
    last_active: Moment | None = Field(description="None: never, as far as the ledger knows.")
    monthly_saving: Amount | None
    currency: str | None
    origin: Literal["estimated"]


class IdleSeats(Strict):
    at: Moment
    days: int
    total_monthly_saving: dict[str, Amount] = Field(description="Per currency.")
    seats: list[IdleSeat]


def seat_out(row: dict[str, Any]) -> Seat:
    return Seat(platform=row["platform"], plan=row["plan"], email=row["email"], person=row["person"],
                team=row["team"], since=row["since"], assigned_by=row["origin"], monthly_cost=number(row["monthly_cost"]),
                currency=row["currency"], cost_origin="estimated", last_active=row["last_active"])


@router.get("/seats", response_model=Seats, summary="Seats held today (analyst)")
def seats(principal: Analyst, conn: Reading) -> Seats:
    at: datetime = utcnow()
    return Seats(at=at, seats=[seat_out(r) for r in seat_list(conn, principal.org_id, at)])


@router.get("/seats/idle", response_model=IdleSeats, summary="Idle seats and the saving (analyst)")
def idle(principal: Analyst, conn: Reading,
         days: int = Query(IDLE_DAYS, ge=1, le=3650, description="No activity in this many days makes a seat idle.")
         ) -> IdleSeats:
    """Held for `days` with no activity in them, costliest first. Same as `tallybook seats idle`."""
    at = utcnow()
    found = idle_seats(conn, principal.org_id, at, days)
    totals: dict[str, Any] = {}
    for seat in found:
        if seat.monthly_cost is not None and seat.currency:
            totals[seat.currency] = totals.get(seat.currency, 0) + seat.monthly_cost
    return IdleSeats(at=at, days=days, total_monthly_saving={c: number(v) for c, v in sorted(totals.items())},
                     seats=[IdleSeat(**{**s.as_dict(), "monthly_saving": number(s.monthly_cost)}) for s in found])
