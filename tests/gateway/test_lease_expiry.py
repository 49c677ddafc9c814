"""Budget leases expire: a process that dies without giving its lease back holds that allowance for one
to two lease epochs, not until the period ends; a live process keeps its lease by renewing it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tallybook.gateway.limits import BudgetExceeded, Limits, _naive, period_start
from tallybook.ledger import budgets
from tallybook.ledger.budgets import NANOS
from tests.gateway.test_limits import NOW, Clock, budget_key, counters

EPOCH = 30  # seconds (LEASE_SECONDS)


def crashed_holder(engine: sa.Engine, key, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    """A process leases the whole budget (lease_fraction 1), admits one request, and dies: no settle
    written, no lease given back (its loop ends without `close`)."""
    async def run() -> None:
        limits = Limits(engine, clock=clock, lease_fraction=1.0, flush_seconds=3600)
        await limits.reserve(key, None, Decimal("0.01"))

    asyncio.run(run())


def test_a_dead_processes_lease_goes_back_to_the_pool_when_it_expires(engine: sa.Engine) -> None:
    key = budget_key(engine, "1.00")
    crashed_holder(engine, key, Clock(NOW))
    assert counters(engine)[f"key:{key.id}"] == (0, NANOS)  # all of it leased, to a process that is gone

    async def reserve_at(now: float) -> None:
        limits = Limits(engine, clock=Clock(now))
        try:
            await limits.settle(await limits.reserve(key, None, Decimal("0.50")), Decimal("0.40"))
        finally:
            await limits.close()

    with pytest.raises(BudgetExceeded):  # the same epoch: still held
        asyncio.run(reserve_at(NOW + 5))
    with pytest.raises(BudgetExceeded):  # the next epoch: the lease may still be renewed by its holder
        asyncio.run(reserve_at(NOW + EPOCH))
    asyncio.run(reserve_at(NOW + 2 * EPOCH + 1))  # not renewed for two epochs: back in the pool
    assert counters(engine)[f"key:{key.id}"] == (40 * NANOS // 100, 0)


def test_a_live_process_keeps_its_lease_by_renewing_it(engine: sa.Engine) -> None:
    key = budget_key(engine, "1.00")
    clock = Clock(NOW)

    def live_leases() -> int:
        """What the database counts as leased now, as the next caller would see it (expired ones dropped)."""
        with engine.begin() as conn:
            return budgets.renew_and_lease(conn, org_id=1, scope=f"key:{key.id}", period_start=period_start(
                "day", datetime.fromtimestamp(clock.now, UTC)), limit_nanos=NANOS, now=_naive(clock.now)
                ).counter.reserved_nanos

    async def scenario() -> None:
        holder = Limits(engine, clock=clock, lease_fraction=0.3, flush_seconds=3600, idle_seconds=3600)  # busy
        await holder.settle(await holder.reserve(key, None, Decimal("0.01")), Decimal("0.01"))
        await holder.flush(release=False)
        held = live_leases()
        assert held == 29 * NANOS // 100  # 0.30 leased, 0.01 of it spent
        for _ in range(4):  # four epochs go by; the holder's flush renews its lease each time
            clock.now += EPOCH
            await holder.flush(release=False)
            assert live_leases() == held
            with engine.connect() as conn:  # one row: the current epoch's
                rows = conn.execute(sa.text("SELECT count(*) FROM budget_spend WHERE scope LIKE 'lease:%'")).scalar()
            assert rows == 1
        clock.now += 2 * EPOCH  # had it stopped renewing ...
        assert live_leases() == 0  # ... it would be gone
        await holder.close()

    asyncio.run(scenario())
    assert counters(engine)[f"key:{key.id}"] == (NANOS // 100, 0)


def test_a_process_that_missed_its_renewals_admits_nothing_against_the_expired_lease(engine: sa.Engine) -> None:
    key = budget_key(engine, "1.00")
    clock = Clock(NOW)

    async def scenario() -> None:
        late = Limits(engine, clock=clock, lease_fraction=1.0, flush_seconds=3600)
        await late.settle(await late.reserve(key, None, Decimal("0.10")), Decimal("0.10"))  # 0.90 of lease left
        clock.now += 3 * EPOCH  # the database was away: no renewal
        other = Limits(engine, clock=clock, lease_fraction=1.0)
        taken = await other.reserve(key, None, Decimal("0.80"))  # the expired lease is back in the pool
        with pytest.raises(BudgetExceeded):  # the late process learns its lease is gone, and only 0.10 is left
            await late.reserve(key, None, Decimal("0.50"))
        await other.settle(taken, Decimal("0.80"))
        await late.close()
        await other.close()

    asyncio.run(scenario())
    spent, reserved = counters(engine)[f"key:{key.id}"]
    assert (spent, reserved) == (90 * NANOS // 100, 0)  # the late process's 0.10 and the other's 0.80, never over


def test_expired_lease_rows_are_cleaned_up_and_name_no_customer(engine: sa.Engine) -> None:
    async def scenario() -> None:
        limits = Limits(engine, clock=Clock(NOW), customer_budgets={"acme": __import__(
            "tallybook.gateway.limits", fromlist=["Budget"]).Budget(Decimal(5), period="day")})
        key = budget_key(engine, "1.00")
        await limits.settle(await limits.reserve(key, "acme", Decimal("0.10")), Decimal("0.10"))
        await limits.close()

    asyncio.run(scenario())
    with engine.connect() as conn:
        scopes = list(conn.execute(sa.text("SELECT scope FROM budget_spend")).scalars())
    assert not any("acme" in s for s in scopes if s.startswith("lease:"))
    assert [s for s in scopes if s.startswith("lease:")] == []  # given back on close: no lease rows left
