"""Budgets and rate limits, enforced in memory on the hot path and kept honest across processes.

Rate limits (a key's `rpm` and `tpm`) are exact sliding 60-second windows held in this process:
`check_rate` admits a request or says how many seconds until it would be admitted. With several
gateway processes each enforces the limit on its own share of traffic.

Budgets (a key's `budget` per UTC day or month, and optional per-customer budgets) are shared by
every process through the `budget_spend` row of each scope and period, without a database round
trip per request. A process LEASES a slice of the scope's free allowance (`reserved_nanos` +=
lease, only while `spent + reserved` stays within the limit; see `ledger.budgets`) and admits
requests against its lease in memory. `reserve` holds a request's upper bound on the lease;
`settle` turns the hold into spend; every `flush_seconds` (and on `close`) the spend moves into
`spent_nanos` in one transaction, and idle leases go back. A lease is `lease_fraction` of what
the scope has left, at least the request that needed it, so leases shrink as the cap nears.

Overshoot bound, per scope and period, with P processes and actual costs at most their upper bounds:

    settled spend <= limit + (the largest upper bound admitted "at the edge") * P

Why: the database never leases past the limit, and a request admitted against a lease that covers
its upper bound moves leased allowance into `spent` without growing `spent + reserved`. Only when
the database had nothing left to lease (at its last look, at most `flush_seconds` ago) may a process
admit one request AT THE EDGE: it holds what is left of its lease and the rest of its upper bound is
unbacked. A process has at most one such
request in flight; if it costs more than it held, the process's free lease goes below zero, so it
admits nothing more until it settles with the database, where the overrun lands in `spent` and no
new lease is granted while `spent + reserved` is at or over the limit. So at any moment the excess
over the limit is at most one edge request's unbacked part per process. (Strictly: a process admits
one edge request per lease taken after its previous edge request settled, and that lease was only
granted because `spent + reserved`, including the earlier overrun, was back within the limit.)
An actual cost above its upper bound is still charged in full (spend is never dropped) and adds to
the bound.

Leases expire (see `ledger.budgets`): each lease sits in an epoch of `lease_seconds` (30), and the
flush renews every lease this process holds into the current epoch, so a live process keeps its
leases with one small transaction per scope and epoch. A process that dies loses its settled-but-
unflushed spend (at most `flush_seconds` of it; the spool still has the events) and its lease goes
back to the pool one to two epochs after its last renewal, taken back by whichever process next
settles or leases in that scope. Until then the cap errs low, never high. A live process that could
not renew in time (the database away for an epoch) admits nothing against a lease that may have
expired: it renews first, and keeps nothing of a lease the database has already taken back. (What it
had in flight when the lease lapsed is still charged in full, so only after such an outage may the
cap be passed by more than the bound above: by those requests.)

    BudgetExceeded (429)   a budget scope has nothing left this period; says when it resets
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy import Engine

from tallybook.config import Settings
from tallybook.errors import ConfigError, TallybookError
from tallybook.gateway.keys import KeyInfo
from tallybook.ledger import budgets
from tallybook.ledger.budgets import LEASE_SECONDS, NANOS
from tallybook.money import fmt_amount

log = logging.getLogger(__name__)

WINDOW = 60.0  # seconds: rpm and tpm are per minute


class BudgetExceeded(TallybookError):
    """A budget scope ("key:<id>" or "customer:<name>") has nothing left to admit this period."""

    status = 429

    def __init__(self, scope: str, limit: Decimal, currency: str, period: str, resets_at: datetime,
                 spent: Decimal) -> None:
        self.scope, self.limit, self.currency, self.period = scope, limit, currency, period
        self.resets_at, self.spent = resets_at, spent
        super().__init__(f"Budget {scope} of {fmt_amount(limit, 2)} {currency} per {period} is spent; "
                         f"it resets at {resets_at:%Y-%m-%dT%H:%M:%SZ}")


@dataclass(frozen=True, slots=True)
class Budget:
    """A cap on spend per UTC `period` (day | month), in `currency` (the currency costs are priced in)."""

    limit: Decimal
    currency: str = "USD"
    period: str = "month"

    def __post_init__(self) -> None:
        if self.period not in ("day", "month"):
            raise ValueError(f"A budget period is 'day' or 'month', not {self.period!r}.")


def parse_customer_budgets(text: str) -> dict[str, Budget]:
    """`acme=500/month, globex=100 EUR/day` -> {customer: Budget}; the currency defaults to USD."""
    found: dict[str, Budget] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, spec = item.partition("=")
        amount, _, period = spec.partition("/")
        words = amount.split()
        try:
            budget = Budget(Decimal(words[0]), words[1].upper() if len(words) == 2 else "USD", period.strip())
            if len(words) > 2 or not name.strip() or budget.limit <= 0:
                raise ValueError
        except (ArithmeticError, IndexError, ValueError):
            raise ConfigError(f"TALLYBOOK_GATEWAY_CUSTOMER_BUDGETS: {item!r} is not CUSTOMER=AMOUNT[ CURRENCY]/day|month, "
                              "e.g. acme=500/month,globex=100 EUR/day.") from None
        found[name.strip()] = budget
    return found


def period_start(period: str, at: datetime) -> datetime:
    """The UTC start of the day or month holding `at` (naive `at` is UTC), naive as the ledger stores it."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    start = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.replace(day=1) if period == "month" else start


def next_period_start(period: str, start: datetime) -> datetime:
    if period == "day":
        return datetime.fromordinal(start.toordinal() + 1)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def to_nanos(amount: Decimal) -> int:
    return int((amount * NANOS).to_integral_value(rounding=ROUND_CEILING))


def from_nanos(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS


class _Scope:
    """One process's side of a budget scope in one period: its lease, what is held and what is spent.

    Invariants: held <= granted; free = granted - held - used (negative after an overrun)."""

    def __init__(self, org_id: int, scope: str, budget: Budget, start: datetime) -> None:
        self.org_id, self.scope, self.start = org_id, scope, start
        self.budget = budget
        self.limit_nanos = to_nanos(budget.limit)
        self.resets_at = next_period_start(budget.period, start)  # naive UTC, like every ledger time
        self.granted = 0  # leased from the database and not yet given back or settled there
        self.held = 0  # upper bounds of requests in flight
        self.used = 0  # settled here, not yet in the database
        self.edge = False  # a request admitted at the edge is in flight
        self.edge_ok = True  # no edge admitted since a lease that came after the last edge had settled
        self.spent_db = 0  # `spent_nanos` as last seen
        self.pool_free = 1 << 62  # what the database had left to lease, as last seen
        self.dry_until = 0.0  # monotonic time until which the database is taken to have nothing to lease
        self.last_use = 0.0
        self.epoch: datetime | None = None  # the lease epoch (naive UTC) whose row holds `granted`
        self.valid_until = 0.0  # epoch seconds: after this the lease may have expired, so renew first
        self.lock = asyncio.Lock()

    @property
    def free(self) -> int:
        return self.granted - self.held - self.used

    def hold(self, nanos: int) -> _Hold | None:
        if self.free >= nanos:
            self.held += nanos
            return _Hold(self, nanos, edge=False)
        return None

    def hold_edge(self) -> _Hold | None:
        free = self.free
        if free <= 0 or self.edge or not self.edge_ok:
            return None
        self.held += free
        self.edge, self.edge_ok = True, False
        return _Hold(self, free, edge=True)

    def release(self, hold: _Hold, used: int) -> None:
        self.held -= hold.nanos
        self.used += used
        if hold.edge:
            self.edge = False

    def exceeded(self) -> BudgetExceeded:
        return BudgetExceeded(self.scope, self.budget.limit, self.budget.currency, self.budget.period,
                              self.resets_at, from_nanos(self.spent_db + self.used))


@dataclass(frozen=True, slots=True)
class _Hold:
    state: _Scope
    nanos: int
    edge: bool


@dataclass(eq=False, slots=True)
class Reservation:
    """A request's claim on its budgets; give it back to `Limits.settle` exactly once."""

    upper_bound: Decimal
    holds: tuple[_Hold, ...] = ()
    settled: bool = False

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(h.state.scope for h in self.holds)


class _Window:
    """Requests and tokens in the last 60 seconds: [ts, requests, tokens] entries, oldest first."""

    __slots__ = ("entries", "requests", "tokens")

    def __init__(self) -> None:
        self.entries: deque[list[Any]] = deque()
        self.requests = 0
        self.tokens = 0

    def expire(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][0] <= now - WINDOW:
            _, requests, tokens = entries.popleft()
            self.requests -= requests
            self.tokens -= tokens

    def add(self, now: float, requests: int, tokens: int) -> None:
        self.entries.append([now, requests, tokens])
        self.requests += requests
        self.tokens += tokens

    def wait(self, now: float, index: int, excess: int) -> float:
        """Seconds until entries worth `excess` of measure `index` (1 requests, 2 tokens) have expired."""
        dropped = 0
        for entry in self.entries:
            dropped += entry[index]
            if dropped >= excess:
                return max(float(entry[0]) + WINDOW - now, 0.001)
        return WINDOW


class Limits:
    """Rate limits and budgets for one gateway process. See the module docstring for the design.

    Amounts given to `reserve` and `settle` are in the budget's currency. `customer_budgets` maps a
    customer name (in any organisation) to its Budget; keys carry their own. `clock` gives epoch
    seconds. Call `close` on shutdown.
    """

    def __init__(self, engine: Engine, *, lease_fraction: float = 0.1, clock: Callable[[], float] = time.time,
                 customer_budgets: Mapping[str, Budget] | None = None, flush_seconds: float = 1.0,
                 idle_seconds: float = 10.0, lease_seconds: int = LEASE_SECONDS) -> None:
        if not 0 <= lease_fraction <= 1:
            raise ValueError("lease_fraction is a share of the free allowance, between 0 and 1.")
        self.engine, self.lease_fraction, self.clock = engine, lease_fraction, clock
        self.customer_budgets = dict(customer_budgets or {})
        self.flush_seconds, self.idle_seconds = flush_seconds, idle_seconds
        self.lease_seconds = lease_seconds
        self._windows: dict[str, _Window] = {}
        self._scopes: dict[tuple[int, str, datetime], _Scope] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> Limits:
        return cls(engine, customer_budgets=parse_customer_budgets(settings.gateway_customer_budgets))

    # -- rate limits ---------------------------------------------------------------------------

    def check_rate(self, key: KeyInfo, tokens_estimate: int) -> float | None:
        """Admit a request (counting it and `tokens_estimate` tokens) and return None, or return the
        seconds until it would be admitted (for `retry-after`) and count nothing."""
        if key.rpm is None and key.tpm is None:
            return None
        now = self.clock()
        window = self._windows.get(key.id)
        if window is None:
            window = self._windows[key.id] = _Window()
        window.expire(now)
        wait = 0.0
        if key.rpm is not None and window.requests + 1 > key.rpm:
            wait = window.wait(now, 1, window.requests + 1 - key.rpm)
        if key.tpm is not None:
            # A request bigger than the whole allowance is admitted into an empty window, never starved.
            excess = window.tokens + min(tokens_estimate, key.tpm) - key.tpm
            if excess > 0:
                wait = max(wait, window.wait(now, 2, excess))
        if wait > 0:
            return wait
        window.add(now, 1, tokens_estimate)
        return None

    def record_tokens(self, key: KeyInfo, tokens: int, *, estimated: int = 0) -> None:
        """Count a response's actual `tokens` against the key's tpm; `estimated` is what `check_rate`
        was told for the same request, so only the difference is added."""
        if key.tpm is None or tokens == estimated:
            return
        window = self._windows.get(key.id)
        if window is None:
            window = self._windows[key.id] = _Window()
        window.add(self.clock(), 0, tokens - estimated)

    # -- budgets -------------------------------------------------------------------------------

    def budgets_for(self, key: KeyInfo, customer: str | None) -> list[tuple[str, Budget]]:
        found = []
        if key.budget is not None and key.budget_period is not None:
            found.append((f"key:{key.id}", Budget(key.budget, key.budget_currency, key.budget_period)))
        customer = customer if customer is not None else key.customer
        if customer is not None and (budget := self.customer_budgets.get(customer)) is not None:
            found.append((f"customer:{customer}", budget))
        return found

    async def reserve(self, key: KeyInfo, customer: str | None, upper_bound: Decimal) -> Reservation:
        """Hold `upper_bound` on every budget of the key and the customer, or raise BudgetExceeded.

        In memory while the process's lease covers it; a new lease (one transaction) otherwise.
        Without budgets: a no-op reservation and no I/O."""
        found = self.budgets_for(key, customer)
        if not found:
            return Reservation(upper_bound)
        if upper_bound < 0:
            raise ValueError("A request's upper bound is not negative.")
        nanos = max(to_nanos(upper_bound), 1)  # a request priced at 0 (unpriced model) still needs a budget left
        now = self.clock()
        holds: list[_Hold] = []
        try:
            for scope, budget in found:
                state = self._state(key.org_id, scope, budget, now)
                state.last_use = now
                hold = (state.hold(nanos) if now < state.valid_until else None) or await self._hold_slow(state, nanos)
                holds.append(hold)
        except BaseException:
            for hold in holds:
                hold.state.release(hold, 0)
            raise
        self._start_ticker()
        return Reservation(upper_bound, tuple(holds))

    async def settle(self, reservation: Reservation, actual: Decimal | None) -> None:
        """Charge the request's `actual` cost (None: unpriced, so its upper bound) and free its hold.

        In memory; the spend reaches the database within `flush_seconds`. Settling twice is a no-op."""
        if reservation.settled:
            return
        reservation.settled = True
        if not reservation.holds:
            return
        used = to_nanos(reservation.upper_bound if actual is None else max(actual, Decimal(0)))
        for hold in reservation.holds:
            hold.state.release(hold, used)
        if self._closed:  # nothing flushes any more: write it now
            for hold in reservation.holds:
                async with hold.state.lock:
                    await self._sync(hold.state, release=True)

    async def flush(self, *, release: bool = True) -> None:
        """Write settled spend to the database and give back unused leases: all of them when
        `release`, else those idle for `idle_seconds` or of a period that has ended."""
        now = self.clock()
        for key, state in list(self._scopes.items()):
            current = period_start(state.budget.period, datetime.fromtimestamp(now, UTC)) == state.start
            # Holding more unused lease than the pool has left starves the other processes: give it back.
            scarce = state.free > state.pool_free
            give_back = release or scarce or not current or now - state.last_use > self.idle_seconds
            renew = state.granted > 0 and state.epoch is not None and \
                budgets.lease_epoch(_naive(now), self.lease_seconds) > state.epoch
            if state.used or renew or (give_back and state.granted > state.held):
                async with state.lock:
                    await self._sync(state, release=give_back)
            if not current and not (state.held or state.used or state.granted):
                del self._scopes[key]

    async def close(self) -> None:
        """Stop the background flush, write what is settled and give back every unused lease."""
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        await self.flush(release=True)

    def _state(self, org_id: int, scope: str, budget: Budget, now: float) -> _Scope:
        start = period_start(budget.period, datetime.fromtimestamp(now, UTC))
        state = self._scopes.get((org_id, scope, start))
        if state is None:
            state = self._scopes[(org_id, scope, start)] = _Scope(org_id, scope, budget, start)
        elif state.budget != budget:  # the key was edited: the new cap applies from the next lease
            state.budget, state.limit_nanos = budget, to_nanos(budget.limit)
        return state

    async def _hold_slow(self, state: _Scope, nanos: int) -> _Hold:
        async with state.lock:
            if self.clock() >= state.valid_until and (state.granted or state.used):
                await self._sync(state)  # renew (or learn it is gone) before admitting against it
            hold = state.hold(nanos) if self.clock() < state.valid_until else None
            if hold is None and time.monotonic() >= state.dry_until:
                await self._sync(state, need=nanos - max(state.free, 0))
                hold = state.hold(nanos)
            if hold is None:
                hold = state.hold_edge()
            if hold is None:
                raise state.exceeded()
            return hold

    async def _sync(self, state: _Scope, *, need: int = 0, release: bool = False) -> None:
        """Settle `used` in the database, give back the free lease if `release`, and lease `need` more.

        Local counters change before the call and are restored if it fails; the call is shielded, so
        a cancelled request cannot leave the process and the database disagreeing."""
        spend, granted, epoch = state.used, state.granted, state.epoch
        unreserve = max(0, state.granted - state.held if release else min(spend, state.granted - state.held))
        state.used -= spend
        state.granted -= unreserve
        edge_settled = not state.edge  # so its overrun, if any, is in `spend` and the lease below absorbs it
        now = self.clock()
        call = asyncio.ensure_future(asyncio.to_thread(
            self._sync_db, state, _naive(now), spend, granted, epoch, unreserve, need))

        def done(future: asyncio.Future[budgets.Leased]) -> None:
            if future.cancelled() or future.exception() is not None:
                state.used += spend
                state.granted += unreserve
                return
            result = future.result()
            leased, counter = result.leased, result.counter
            state.granted, state.epoch = result.granted, result.epoch
            margin = min(self.flush_seconds + 1, self.lease_seconds / 2)  # a renewal in flight, and clock skew
            state.valid_until = result.epoch.replace(tzinfo=UTC).timestamp() + 2 * self.lease_seconds - margin
            if result.lost:
                log.warning("A budget lease of %s expired before it was renewed (the database was away?)", state.scope)
            if leased and edge_settled:
                state.edge_ok = True
            if leased < need:  # an exhausted scope is asked again after `flush_seconds`, not per request
                state.dry_until = time.monotonic() + self.flush_seconds
            state.spent_db = counter.spent_nanos
            state.pool_free = state.limit_nanos - counter.spent_nanos - counter.reserved_nanos

        call.add_done_callback(done)
        await asyncio.shield(call)

    def _sync_db(self, state: _Scope, now: datetime, spend: int, granted: int, epoch: datetime | None,
                 unreserve: int, need: int) -> budgets.Leased:
        with self.engine.begin() as conn:
            return budgets.renew_and_lease(
                conn, org_id=state.org_id, scope=state.scope, period_start=state.start, limit_nanos=state.limit_nanos,
                now=now, spend=spend, granted=granted, epoch=epoch, unreserve=unreserve, need=need,
                fraction=self.lease_fraction, lease_seconds=self.lease_seconds)

    def _start_ticker(self) -> None:
        if self._ticker is None and not self._closed:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="tallybook-limits-flush")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush(release=False)
            except Exception as exc:  # noqa: BLE001 - the database is away: keep the spend in memory and try again
                log.warning("Could not write budget spend (will retry): %s", exc)


def _naive(epoch_seconds: float) -> datetime:
    """Naive UTC, as the ledger stores times."""
    return datetime.fromtimestamp(epoch_seconds, UTC).replace(tzinfo=None)


def retry_after_header(seconds: float) -> str:
    """`retry-after` wants whole seconds; round up so a client that waits exactly that is admitted."""
    return str(max(1, math.ceil(seconds)))
