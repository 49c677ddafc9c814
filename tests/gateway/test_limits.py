"""Budgets and rate limits: leases from the database, admission in memory, a stated overshoot bound."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from tallybook.gateway.keys import KeyInfo, create_key
from tallybook.gateway.limits import Budget, BudgetExceeded, Limits, period_start, retry_after_header
from tallybook.ledger import schema as t
from tallybook.ledger.budgets import NANOS
from tallybook.ledger.db import connect

NOW = datetime(2026, 11, 25, 13, 30, tzinfo=UTC).timestamp()
WORKER = Path(__file__).with_name("budget_worker.py")


def budget_key(engine: sa.Engine, budget: str = "1.00", period: str = "day", **kw: object) -> KeyInfo:
    with engine.begin() as conn:
        key, _ = create_key(conn, org_id=1, name="budgeted", budget=Decimal(budget), budget_period=period,
                            **kw)  # type: ignore[arg-type]
    return key


def counters(engine: sa.Engine) -> dict[str, tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.budget_spend)).all()
    return {r.scope: (r.spent_nanos, r.reserved_nanos) for r in rows}


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingEngine:
    """Counts the statements an engine runs, to show the hot path makes no database round trip."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statements = 0
        sa.event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *args: object) -> None:
        self.statements += 1


def test_a_key_budget_admits_until_spent_then_says_when_it_resets(engine: sa.Engine) -> None:
    key = budget_key(engine, "1.00")

    async def scenario() -> BudgetExceeded:
        limits = Limits(engine, clock=Clock())
        try:
            while True:
                reservation = await limits.reserve(key, None, Decimal("0.07"))
                await limits.settle(reservation, Decimal("0.07"))
        except BudgetExceeded as exc:
            await limits.close()
            return exc

    exc = asyncio.run(scenario())
    assert (exc.scope, exc.limit, exc.currency) == (f"key:{key.id}", Decimal("1.00"), "USD")
    assert exc.resets_at == datetime(2026, 11, 26)
    assert str(exc) == f"Budget key:{key.id} of 1.00 USD per day is spent; it resets at 2026-11-26T00:00:00Z"
    spent, reserved = counters(engine)[f"key:{key.id}"]
    # 14 requests fit; the 15th is admitted at the edge, so the overshoot is under one request.
    assert spent == 15 * 7 * NANOS // 100 and reserved == 0
    assert exc.spent == Decimal(spent) / NANOS


def test_reservations_in_memory_make_no_database_round_trip_per_request(engine: sa.Engine) -> None:
    key = budget_key(engine, "100")
    counting = CountingEngine(engine)

    async def scenario() -> None:
        limits = Limits(engine, clock=Clock(), lease_fraction=0.1, flush_seconds=3600)
        for _ in range(500):
            reservation = await limits.reserve(key, None, Decimal("0.01"))
            await limits.settle(reservation, Decimal("0.005"))
        assert counting.statements <= 4 * 3  # a few leases of 3 statements each, not 500 round trips
        await limits.close()

    asyncio.run(scenario())
    assert counters(engine)[f"key:{key.id}"] == (500 * 5 * NANOS // 1000, 0)


def test_cheap_settlements_do_not_open_a_chain_of_edge_requests(engine: sa.Engine) -> None:
    """Regression: slack from requests that cost less than they held let one process admit edge
    request after edge request once the database had nothing left, each overrunning the cap."""
    key = budget_key(engine, "1.00")

    async def scenario() -> None:
        limits = Limits(engine, clock=Clock(), lease_fraction=1.0)
        small = [await limits.reserve(key, None, Decimal("0.10")) for _ in range(9)]
        edge = await limits.reserve(key, None, Decimal("0.50"))  # holds the last 0.10
        await limits.settle(edge, Decimal("0.50"))
        refused = 0
        for reservation in small:
            await limits.settle(reservation, Decimal(0))  # 0.10 of slack each time
            try:
                again = await limits.reserve(key, None, Decimal("0.50"))
            except BudgetExceeded:
                refused += 1
                continue
            await limits.settle(again, Decimal("0.50"))
        await limits.close()
        assert refused >= 1

    asyncio.run(scenario())
    spent, reserved = counters(engine)[f"key:{key.id}"]
    assert reserved == 0 and spent <= NANOS + NANOS // 2


def test_a_budget_left_at_zero_refuses_even_unpriced_requests(engine: sa.Engine) -> None:
    key = budget_key(engine, "0.50")

    async def scenario() -> None:
        limits = Limits(engine, clock=Clock())
        reservation = await limits.reserve(key, None, Decimal("0.50"))
        await limits.settle(reservation, Decimal("0.50"))
        with pytest.raises(BudgetExceeded):
            await limits.reserve(key, None, Decimal(0))  # an unpriced model's upper bound
        await limits.close()

    asyncio.run(scenario())


def test_an_exhausted_budget_is_not_asked_for_again_on_every_request(engine: sa.Engine) -> None:
    key = budget_key(engine, "0.10")

    async def scenario() -> None:
        limits = Limits(engine, clock=Clock(), flush_seconds=3600)
        reservation = await limits.reserve(key, None, Decimal("0.10"))
        await limits.settle(reservation, Decimal("0.10"))
        with pytest.raises(BudgetExceeded):
            await limits.reserve(key, None, Decimal("0.01"))
        counting = CountingEngine(engine)
        for _ in range(100):
            with pytest.raises(BudgetExceeded):
                await limits.reserve(key, None, Decimal("0.01"))
        assert counting.statements == 0
        await limits.close()

    asyncio.run(scenario())


def test_a_key_without_budget_is_admitted_without_any_io() -> None:
    nowhere = connect("postgresql+psycopg://nobody@127.0.0.1:1/nothing")  # would fail if touched
    key = KeyInfo("vk_free", 1, "free")

    async def scenario() -> None:
        limits = Limits(nowhere)
        reservation = await limits.reserve(key, "acme", Decimal(5))
        assert reservation.scopes == ()
        await limits.settle(reservation, Decimal(4))
        await limits.close()

    asyncio.run(scenario())
    nowhere.dispose()


def test_unpriced_requests_settle_at_their_upper_bound(engine: sa.Engine) -> None:
    key = budget_key(engine, "10")

    async def scenario() -> None:
        limits = Limits(engine, clock=Clock())
        reservation = await limits.reserve(key, None, Decimal("0.25"))
        await limits.settle(reservation, None)
        await limits.settle(reservation, Decimal(99))  # a second settle changes nothing
        await limits.close()

    asyncio.run(scenario())
    assert counters(engine)[f"key:{key.id}"] == (NANOS // 4, 0)


def test_a_customer_budget_spans_keys_and_a_refusal_frees_the_key_hold(engine: sa.Engine) -> None:
    one, two = budget_key(engine, "50", customer="acme"), budget_key(engine, "50")
    limits_budgets = {"acme": Budget(Decimal(1), "USD", "month")}

    async def scenario() -> BudgetExceeded:
        limits = Limits(engine, clock=Clock(), customer_budgets=limits_budgets)
        for key, customer in ((one, None), (two, "acme")):  # `two` is attributed by the header
            reservation = await limits.reserve(key, customer, Decimal("0.40"))
            assert reservation.scopes == (f"key:{key.id}", "customer:acme")
            await limits.settle(reservation, Decimal("0.40"))
        reservation = await limits.reserve(two, "acme", Decimal("0.40"))  # at the edge: 0.20 left
        await limits.settle(reservation, Decimal("0.30"))
        try:
            await limits.reserve(two, "acme", Decimal("0.01"))
        except BudgetExceeded as exc:
            await limits.close()
            return exc
        raise AssertionError("the customer budget did not stop the request")

    exc = asyncio.run(scenario())
    assert exc.scope == "customer:acme" and exc.resets_at == datetime(2026, 12, 1)
    assert "per month" in str(exc)
    found = counters(engine)
    assert found["customer:acme"] == (110 * NANOS // 100, 0)  # 0.10 over: under one request
    assert found[f"key:{two.id}"] == (70 * NANOS // 100, 0)  # the refused request held nothing


def test_a_new_period_starts_from_zero(engine: sa.Engine) -> None:
    key = budget_key(engine, "0.10")
    clock = Clock()

    async def scenario() -> None:
        limits = Limits(engine, clock=clock)
        reservation = await limits.reserve(key, None, Decimal("0.10"))
        await limits.settle(reservation, Decimal("0.10"))
        with pytest.raises(BudgetExceeded):
            await limits.reserve(key, None, Decimal("0.01"))
        clock.now += 86400
        reservation = await limits.reserve(key, None, Decimal("0.05"))
        await limits.settle(reservation, Decimal("0.05"))
        await limits.close()

    asyncio.run(scenario())
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.budget_spend.c.period_start, t.budget_spend.c.spent_nanos)
                            .order_by(t.budget_spend.c.period_start)).all()
    assert [(r.period_start, r.spent_nanos) for r in rows] == [
        (datetime(2026, 11, 25), NANOS // 10), (datetime(2026, 11, 26), NANOS // 20)]


def test_two_limits_share_a_budget_through_the_database(engine: sa.Engine) -> None:
    """Two Limits (as two processes would) with leases outstanding never exceed the cap between them."""
    key = budget_key(engine, "1.00")

    async def scenario() -> list[int]:
        a, b = Limits(engine, clock=Clock(), lease_fraction=0.5), Limits(engine, clock=Clock(), lease_fraction=0.5)
        admitted = [0, 0]
        for turn in range(100):
            limits = (a, b)[turn % 2]
            try:
                reservation = await limits.reserve(key, None, Decimal("0.03"))
            except BudgetExceeded:
                continue
            admitted[turn % 2] += 1
            await limits.settle(reservation, Decimal("0.03"))
            spent, reserved = counters(engine)[f"key:{key.id}"]
            assert spent + reserved <= NANOS
        await a.close()
        await b.close()
        return admitted

    admitted = asyncio.run(scenario())
    assert min(admitted) > 0
    spent, reserved = counters(engine)[f"key:{key.id}"]
    assert reserved == 0 and NANOS <= spent <= NANOS + 2 * 3 * NANOS // 100


def test_near_the_cap_an_unused_lease_goes_back_within_a_flush(engine: sa.Engine) -> None:
    """Regression: a process holding an unused lease made another's requests fail until it went idle."""
    key = budget_key(engine, "1.00")

    async def scenario() -> None:
        hoarder = Limits(engine, clock=Clock(), lease_fraction=1.0, flush_seconds=3600)
        other = Limits(engine, clock=Clock(), flush_seconds=3600)
        reservation = await hoarder.reserve(key, None, Decimal("0.10"))  # leases the whole 1.00
        await hoarder.settle(reservation, Decimal("0.10"))
        with pytest.raises(BudgetExceeded):
            await other.reserve(key, None, Decimal("0.10"))
        await hoarder.flush(release=False)  # what the background flush does every flush_seconds
        other._scopes.clear()  # forget the refusal rather than wait out flush_seconds
        reservation = await other.reserve(key, None, Decimal("0.10"))
        await other.settle(reservation, Decimal("0.10"))
        await hoarder.close()
        await other.close()

    asyncio.run(scenario())
    assert counters(engine)[f"key:{key.id}"] == (NANOS // 5, 0)


def test_a_reservation_settled_after_close_is_still_written(engine: sa.Engine) -> None:
    key = budget_key(engine, "1.00")

    async def scenario() -> None:
        limits = Limits(engine, clock=Clock())
        reservation = await limits.reserve(key, None, Decimal("0.30"))
        await limits.close()  # shutting down with a request in flight
        await limits.settle(reservation, Decimal("0.20"))

    asyncio.run(scenario())
    assert counters(engine)[f"key:{key.id}"] == (NANOS // 5, 0)


def test_two_processes_never_overshoot_by_more_than_one_request_each(database_url: str, engine: sa.Engine) -> None:
    budget = Decimal(30)
    key = budget_key(engine, str(budget))
    workers = [subprocess.Popen([sys.executable, str(WORKER), database_url, key.id, "1", str(budget), str(NOW),
                                 str(seed)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for seed in (1, 2)]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    results = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        results.append(json.loads(out))
    print(results)
    assert all(r["admitted"] >= 1 for r in results) and sum(r["admitted"] for r in results) >= 150, results
    spent, reserved = counters(engine)[f"key:{key.id}"]
    assert reserved == 0
    assert spent == sum(r["settled_nanos"] for r in results)  # nothing lost, nothing counted twice
    limit = int(budget) * NANOS
    assert limit <= spent <= limit + sum(r["max_upper_nanos"] for r in results)

    async def every_further_reserve_is_refused() -> None:
        limits = Limits(engine, clock=Clock(NOW))
        for upper in ("0.000000001", "0.01", "5"):
            with pytest.raises(BudgetExceeded) as refused:
                await limits.reserve(key, None, Decimal(upper))
            exc = refused.value
            assert (exc.scope, exc.limit, exc.currency) == (f"key:{key.id}", budget, "USD")
            assert exc.resets_at == datetime(2026, 11, 26) and exc.spent == Decimal(spent) / NANOS
        await limits.close()

    asyncio.run(every_further_reserve_is_refused())


def test_rpm_is_a_sliding_minute_with_retry_after() -> None:
    clock = Clock(1000.0)
    limits = Limits(sa.create_engine("sqlite://"), clock=clock)
    key = KeyInfo("vk_rpm", 1, "rpm", rpm=3)
    for step in range(3):
        assert limits.check_rate(key, 10) is None
        clock.now += 10
    wait = limits.check_rate(key, 10)
    assert wait == pytest.approx(30.0)  # the first request leaves the window at 1060
    assert retry_after_header(wait) == "30"
    clock.now += 29.5
    assert limits.check_rate(key, 10) == pytest.approx(0.5)
    clock.now += 0.5
    assert limits.check_rate(key, 10) is None
    assert limits.check_rate(key, 10) == pytest.approx(10.0)  # next to leave: the one at 1010


def test_tpm_counts_estimates_then_actual_tokens() -> None:
    clock = Clock(1000.0)
    limits = Limits(sa.create_engine("sqlite://"), clock=clock)
    key = KeyInfo("vk_tpm", 1, "tpm", tpm=1000)
    assert limits.check_rate(key, 600) is None
    clock.now += 5
    assert limits.check_rate(key, 500) == pytest.approx(55.0)
    limits.record_tokens(key, 300, estimated=600)  # the first response used half its estimate
    assert limits.check_rate(key, 500) is None
    clock.now += 1
    assert limits.check_rate(key, 300) == pytest.approx(54.0)  # 800 in the window, until 1060
    clock.now = 1064.0
    assert limits.check_rate(key, 5000) == pytest.approx(1.0)  # too big: waits for an empty window
    clock.now = 1065.0
    assert limits.check_rate(key, 5000) is None
    assert limits.check_rate(KeyInfo("vk_free", 1, "free"), 10**9) is None


def test_period_start_is_utc_day_or_month() -> None:
    at = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert period_start("day", at) == datetime(2026, 12, 31)
    assert period_start("month", at) == datetime(2026, 12, 1)


def test_customer_budgets_come_from_one_setting() -> None:
    from tallybook.config import Settings
    from tallybook.errors import ConfigError
    from tallybook.gateway.limits import parse_customer_budgets

    assert parse_customer_budgets(" acme=500/month, globex=100 eur/day ,") == {
        "acme": Budget(Decimal(500), "USD", "month"), "globex": Budget(Decimal(100), "EUR", "day")}
    assert parse_customer_budgets("") == {}
    for bad in ("acme=500", "acme=-1/day", "=5/day", "acme=5/week", "acme=lots/day", "acme=5 U S D/day"):
        with pytest.raises(ConfigError, match="CUSTOMER=AMOUNT"):
            parse_customer_budgets(bad)
    settings = Settings(gateway_customer_budgets="acme=1/day")
    limits = Limits.from_settings(sa.create_engine("sqlite://"), settings)
    assert limits.budgets_for(KeyInfo("vk_a", 1, "a", customer="acme"), None) == [
        ("customer:acme", Budget(Decimal(1), "USD", "day"))]
