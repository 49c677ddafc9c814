"""Budget counters: one row per (organisation, scope, period) in `budget_spend`, in nanos of the budget's currency.

`spent_nanos` is settled spend; `reserved_nanos` is allowance that gateway processes have leased and
not yet settled or given back. `lease` is the only way allowance leaves the pool, and it never lets
`spent + reserved` pass the limit; `settle` moves leased allowance into `spent` (and may add spend
beyond it, which the caller bounds). Both run in one short transaction that holds the row locked
(SELECT ... FOR UPDATE on PostgreSQL; SQLite's write lock, taken by the first statement).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tallybook.ledger import schema as t

NANOS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Counter:
    spent_nanos: int
    reserved_nanos: int


def _row_locked(conn: Connection, org_id: int, scope: str, period_start: datetime) -> Counter:
    """Create the period's row if it is new, then read it locked until the transaction ends."""
    values = {"org_id": org_id, "scope": scope, "period_start": period_start, "spent_nanos": 0, "reserved_nanos": 0}
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(t.budget_spend).values(**values).on_conflict_do_nothing())
    c = t.budget_spend.c
    query = select(c.spent_nanos, c.reserved_nanos).where(
        c.org_id == org_id, c.scope == scope, c.period_start == period_start)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).one()
    return Counter(row.spent_nanos, row.reserved_nanos)


def _write(conn: Connection, org_id: int, scope: str, period_start: datetime, counter: Counter) -> None:
    c = t.budget_spend.c
    conn.execute(update(t.budget_spend)
                 .where(c.org_id == org_id, c.scope == scope, c.period_start == period_start)
                 .values(spent_nanos=counter.spent_nanos, reserved_nanos=counter.reserved_nanos))


def settle_and_lease(
    conn: Connection, *, org_id: int, scope: str, period_start: datetime, limit_nanos: int,
    spend: int = 0, unreserve: int = 0, need: int = 0, fraction: float = 0.0,
) -> tuple[int, Counter]:
    """Settle then lease, atomically. Returns (nanos leased, the counter after).

    First `spend` nanos are added to `spent` and `unreserve` nanos of this caller's earlier leases
    are taken off `reserved`. Then, if `need` > 0, max(need, `fraction` of what the limit leaves
    free) nanos are leased, never more than is free (`spent + reserved` stays <= `limit_nanos`); when less than
    `need` is free, all that is free is leased and the caller decides what to do with it.
    """
    row = _row_locked(conn, org_id, scope, period_start)
    spent = row.spent_nanos + spend
    reserved = max(0, row.reserved_nanos - unreserve)
    leased = 0
    if need > 0:
        free = max(0, limit_nanos - spent - reserved)
        leased = min(free, max(need, math.ceil(free * fraction)))
        reserved += leased
    after = Counter(spent, reserved)
    if after != row:
        _write(conn, org_id, scope, period_start, after)
    return leased, after


def spent_in(conn: Connection, org_id: int, periods: Mapping[str, datetime]) -> dict[str, int]:
    """Settled nanos per scope in the period starting at `periods[scope]` (0 for a scope never charged)."""
    if not periods:
        return {}
    c = t.budget_spend.c
    rows = conn.execute(select(c.scope, c.period_start, c.spent_nanos).where(
        c.org_id == org_id, c.scope.in_(list(periods)), c.period_start.in_(set(periods.values()))))
    found = {r.scope: int(r.spent_nanos) for r in rows if r.period_start == periods[r.scope]}
    return {s: found.get(s, 0) for s in periods}
