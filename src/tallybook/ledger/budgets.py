"""Budget counters: one row per (organisation, scope, period) in `budget_spend`, in nanos of the budget's currency.

`spent_nanos` is settled spend; `reserved_nanos` is allowance that gateway processes have leased and
not yet settled or given back. Leasing is the only way allowance leaves the pool, and it never lets
`spent + reserved` pass the limit; settling moves leased allowance into `spent` (and may add spend
beyond it, which the caller bounds). Both run in one short transaction that holds the row locked
(SELECT ... FOR UPDATE on PostgreSQL; SQLite's write lock, taken by the first statement).

Leases EXPIRE, so a process that dies cannot hold allowance until the period ends. A lease lives in
an epoch of `lease_seconds` (UTC, aligned): the leases of one scope and period taken or renewed in an
epoch are summed in a row of their own, `budget_spend(scope=lease_scope(scope, period),
period_start=<the epoch's start>)`, whose `reserved_nanos` is that sum (no names: the scope is
hashed). Only the current and the previous epoch's rows count; older ones are deleted by the next
caller, which gives their allowance back to the pool. A live holder renews its lease into the current
epoch at least once an epoch (`Limits` does so every flush), so a lease left by a dead process is
back in the pool between one and two epochs after its last renewal. The main row's `reserved_nanos`
is kept equal to the live sum after each call, for readers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tallybook.ledger import schema as t

NANOS = 1_000_000_000
LEASE_SECONDS = 30  # a lease not renewed for one to two of these is taken back


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


@dataclass(frozen=True, slots=True)
class Leased:
    """What `renew_and_lease` did: `leased` nanos newly leased; `granted` the caller's whole lease now
    (in the row of `epoch`); `counter` the scope's row after; `lost` nanos of the caller's lease that had
    expired before it came back (already returned to the pool)."""

    leased: int
    granted: int
    epoch: datetime
    counter: Counter
    lost: int = 0


def lease_scope(scope: str, period_start: datetime) -> str:
    """The `scope` of the rows that hold `scope`'s leases in the period starting at `period_start`."""
    digest = hashlib.sha256(scope.encode()).hexdigest()[:24]
    return f"lease:{digest}:{period_start:%Y%m%d}"


def lease_epoch(now: datetime, lease_seconds: int = LEASE_SECONDS) -> datetime:
    """The start of the epoch holding `now` (naive UTC)."""
    seconds = (now - datetime(2000, 1, 1)).total_seconds()
    return datetime(2000, 1, 1) + timedelta(seconds=seconds // lease_seconds * lease_seconds)


def renew_and_lease(
    conn: Connection, *, org_id: int, scope: str, period_start: datetime, limit_nanos: int, now: datetime,
    spend: int = 0, granted: int = 0, epoch: datetime | None = None, unreserve: int = 0, need: int = 0,
    fraction: float = 0.0, lease_seconds: int = LEASE_SECONDS,
) -> Leased:
    """Settle, renew and lease for one holder, atomically.

    The caller holds `granted` nanos leased in the row of `epoch` (0 and None: nothing). `spend` nanos
    are added to `spent`; the caller's lease less `unreserve` moves into the current epoch's row (if it
    expired meanwhile, it is gone: the caller keeps nothing of it); then, if `need` > 0, max(need,
    `fraction` of what the limit leaves free) nanos more are leased, never more than is free, so
    `spent + live leases` stays <= `limit_nanos`; when less than `need` is free, all of it is leased.
    """
    row = _row_locked(conn, org_id, scope, period_start)
    leases = lease_scope(scope, period_start)
    current = lease_epoch(now, lease_seconds)
    previous = current - timedelta(seconds=lease_seconds)
    c = t.budget_spend.c
    mine = (c.org_id == org_id, c.scope == leases)
    conn.execute(delete(t.budget_spend).where(*mine, c.period_start < previous))  # expired: back in the pool
    live = {r.period_start: int(r.reserved_nanos) for r in conn.execute(
        select(c.period_start, c.reserved_nanos).where(*mine))}
    kept, lost = max(0, granted - unreserve), 0
    if granted and (epoch is None or epoch not in live or live[epoch] < granted):
        kept, lost = 0, granted  # expired before this renewal: taken back already
    elif granted:
        live[epoch] -= granted
    spent = row.spent_nanos + spend
    leased = 0
    if need > 0:
        free = max(0, limit_nanos - spent - sum(live.values()) - kept)
        leased = min(free, max(need, math.ceil(free * fraction)))
    live[current] = live.get(current, 0) + kept + leased
    for start, nanos in live.items():
        _put_lease(conn, org_id, leases, start, nanos)
    after = Counter(spent, sum(live.values()))
    if after != row:
        _write(conn, org_id, scope, period_start, after)
    return Leased(leased, kept + leased, current, after, lost)


def _put_lease(conn: Connection, org_id: int, scope: str, start: datetime, nanos: int) -> None:
    c = t.budget_spend.c
    where = (c.org_id == org_id, c.scope == scope, c.period_start == start)
    if nanos <= 0:
        conn.execute(delete(t.budget_spend).where(*where))
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(t.budget_spend).values(org_id=org_id, scope=scope, period_start=start, spent_nanos=0,
                                               reserved_nanos=nanos)
                 .on_conflict_do_update(index_elements=["org_id", "scope", "period_start"],
                                        set_={"reserved_nanos": nanos}))


def settle_and_lease(
    conn: Connection, *, org_id: int, scope: str, period_start: datetime, limit_nanos: int,
    spend: int = 0, need: int = 0, fraction: float = 0.0, now: datetime | None = None,
) -> tuple[int, Counter]:
    """Settle `spend` and lease for a caller that holds no lease yet. Returns (nanos leased, the counter after)."""
    done = renew_and_lease(conn, org_id=org_id, scope=scope, period_start=period_start, limit_nanos=limit_nanos,
                           now=now or period_start, spend=spend, need=need, fraction=fraction)
    return done.leased, done.counter


def spent_in(conn: Connection, org_id: int, periods: Mapping[str, datetime]) -> dict[str, int]:
    """Settled nanos per scope in the period starting at `periods[scope]` (0 for a scope never charged)."""
    if not periods:
        return {}
    c = t.budget_spend.c
    rows = conn.execute(select(c.scope, c.period_start, c.spent_nanos).where(
        c.org_id == org_id, c.scope.in_(list(periods)), c.period_start.in_(set(periods.values()))))
    found = {r.scope: int(r.spent_nanos) for r in rows if r.period_start == periods[r.scope]}
    return {s: found.get(s, 0) for s in periods}
