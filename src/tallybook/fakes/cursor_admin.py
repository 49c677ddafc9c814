"""A faithful fake of the Cursor Admin API for one seeded team.

Follows shared/reference/provider-apis.md section 6 (paths served with and without `/v1`):

    GET  /teams/members                  {"teamMembers": [{id, name, email, role, isRemoved}]}
    POST /teams/daily-usage-data         {startDate, endDate} epoch ms, at most 30 days; one row per member-day
    POST /teams/spend                    the current cycle's spend per member, paged (page, pageSize, totalPages)
    POST /teams/filtered-usage-events    events of [startDate, endDate], paged (page, pageSize, pagination{...})

Auth is HTTP Basic with the API key as user name and an empty password. Every endpoint shares a
limit of `rate_limit` requests per `rate_window` seconds per key (20 a minute, as documented); past
it the answer is 429 with `Retry-After` (seconds until a slot frees). The error body is
`{"error": message}` (the reference leaves Cursor's error shape open).

The team: five members active most working days; `dana.scully@example.com`, removed on the 15th of
the month (her activity stops that day and the members list says `isRemoved`); and
`fox.mulder@example.com`, a paid seat with no activity at all. Each day's rows and events come from
(seed, day) alone; `expected(start, end)` sums them directly, as ground truth for tests.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tallybook.fakes.faults import FaultInjector

DEMO_KEY = "key_" + "0" * 60 + "demo"
MAX_DAYS_MS = 30 * 86_400_000
MAX_PAGE_SIZE = 1000
MODELS = ("claude-4-sonnet", "claude-4-opus", "gpt-5", "claude-4-sonnet-thinking", "cursor-small")
# model -> (input, output, cache write, cache read) cents per 1,000 tokens: what a token-based call costs
CENTS_PER_KTOK = {
    "claude-4-sonnet": (Decimal("0.3"), Decimal("1.5"), Decimal("0.375"), Decimal("0.03")),
    "claude-4-opus": (Decimal("1.5"), Decimal("7.5"), Decimal("1.875"), Decimal("0.15")),
    "gpt-5": (Decimal("0.125"), Decimal(1), Decimal(0), Decimal("0.0125")),
    "claude-4-sonnet-thinking": (Decimal("0.3"), Decimal("1.5"), Decimal("0.375"), Decimal("0.03")),
    "cursor-small": (Decimal(0), Decimal(0), Decimal(0), Decimal(0)),
}
FEE_SHARE = Decimal("0.05")  # Cursor's token fee on usage-based calls
TEAM = (  # (id, name, email, role)
    (12345, "Ada Lovelace", "ada.lovelace@example.com", "owner"),
    (12346, "Grace Hopper", "grace.hopper@example.com", "member"),
    (12347, "Alan Turing", "alan.turing@example.com", "member"),
    (12348, "Katherine Johnson", "katherine.johnson@example.com", "member"),
    (12349, "Edsger Dijkstra", "edsger.dijkstra@example.com", "member"),
    (12350, "Dana Scully", "dana.scully@example.com", "member"),
    (12351, "Fox Mulder", "fox.mulder@example.com", "member"),
)
REMOVED = "dana.scully@example.com"
IDLE = "fox.mulder@example.com"
CYCLE_DAY = 3  # the team's billing cycle starts on the 3rd of each month


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": message}


class BadRequest(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        super().__init__(message)


def ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC).replace(tzinfo=None)


class CursorAdminFake:
    """A seeded Cursor team served over the Admin API. `app` is the Starlette app."""

    def __init__(self, *, seed: int = 7, days: int = 120, now: datetime | None = None,
                 api_keys: Iterable[str] = (DEMO_KEY,), rate_limit: int = 20, rate_window: float = 60.0,
                 spend_shape: str = "new") -> None:
        self.seed = seed
        self.now = now or datetime.now(UTC).replace(tzinfo=None)
        today = self.now.replace(hour=0, minute=0, second=0, microsecond=0)
        self.data_start = today - timedelta(days=days)
        self.api_keys = frozenset(api_keys)
        self.rate_limit, self.rate_window = rate_limit, rate_window
        self.spend_shape = spend_shape  # "new": overallSpendCents/includedSpendCents too; "old": not
        self.faults = FaultInjector(error_body=error_body)
        month = today.replace(day=1)
        self.removed_on = month.replace(day=15) if today.day > 15 else (month - timedelta(days=1)).replace(day=15)
        cycle = today.replace(day=CYCLE_DAY)
        self.cycle_start = cycle if today.day >= CYCLE_DAY else (month - timedelta(days=1)).replace(day=CYCLE_DAY)
        self._days: dict[date, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
        self._calls: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._app: Starlette | None = None

    # -- the data ---------------------------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        return [{"id": i, "name": name, "email": email, "role": role, "isRemoved": email == REMOVED}
                for i, name, email, role in TEAM]

    def day(self, day: date) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The daily-usage rows and the usage events of `day`, inside [data_start, now)."""
        if day not in self._days:
            midnight = datetime(day.year, day.month, day.day)
            if midnight < self.data_start or midnight >= self.now:
                return [], []
            rows, events = self._generate(day, midnight)
            self._days[day] = (rows, [e for e in events if from_ms(int(e["timestamp"])) < self.now])
        return self._days[day]

    def _generate(self, day: date, midnight: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rng = random.Random(f"{self.seed}-cursor-{day.isoformat()}")
        rows, events = [], []
        for _, _, email, _ in TEAM:
            if email == IDLE or (email == REMOVED and midnight >= self.removed_on):
                continue
            active = rng.random() < (0.8 if day.weekday() < 5 else 0.15)
            if not active:
                if rng.random() < 0.3:  # a member with the app open but nothing done: a row, all zero
                    rows.append(self._row(midnight, email, None))
                continue
            rows.append(self._row(midnight, email, rng))
            for _ in range(rng.randint(0, 5)):
                events.append(self._event(rng, midnight, email))
        events.sort(key=lambda e: int(e["timestamp"]), reverse=True)  # newest first, as the dashboard
        return rows, events

    @staticmethod
    def _row(midnight: datetime, email: str, rng: random.Random | None) -> dict[str, Any]:
        n = (lambda low, high: rng.randint(low, high)) if rng else (lambda low, high: 0)
        added, deleted = n(0, 1800), n(0, 900)
        applies = n(0, 90)
        accepts = n(0, applies) if rng else 0
        tabs = n(0, 400)
        composer, chat, agent = n(0, 50), n(0, 120), n(0, 30)
        usage_based = n(0, 8)
        return {
            "date": ms(midnight), "isActive": rng is not None, "email": email,
            "totalLinesAdded": added, "totalLinesDeleted": deleted,
            "acceptedLinesAdded": n(0, added) if rng else 0, "acceptedLinesDeleted": n(0, deleted) if rng else 0,
            "totalApplies": applies, "totalAccepts": accepts, "totalRejects": applies - accepts,
            "totalTabsShown": tabs, "totalTabsAccepted": n(0, tabs) if rng else 0,
            "composerRequests": composer, "chatRequests": chat, "agentRequests": agent,
            "cmdkUsages": n(0, 60), "subscriptionIncludedReqs": composer + chat + agent - usage_based
            if rng and composer + chat + agent >= usage_based else 0,
            "apiKeyReqs": 0, "usageBasedReqs": usage_based if rng and composer + chat + agent >= usage_based else 0,
            "bugbotUsages": n(0, 3),
            "mostUsedModel": "claude-4-sonnet" if rng else None,
            "applyMostUsedExtension": ".py" if rng else None, "tabMostUsedExtension": ".ts" if rng else None,
            "clientVersion": "1.4.2" if rng else None,
        }

    @staticmethod
    def _event(rng: random.Random, midnight: datetime, email: str) -> dict[str, Any]:
        at = midnight + timedelta(milliseconds=rng.randrange(86_400_000))
        model = rng.choice(MODELS)
        token_based = model != "cursor-small" and rng.random() < 0.85
        usage_based = rng.random() < 0.4
        event: dict[str, Any] = {
            "timestamp": str(ms(at)), "model": model,
            "kind": "Usage-based" if usage_based else "Included in Business",
            "maxMode": rng.random() < 0.3, "requestsCosts": float(Decimal(rng.randint(2, 50)) / 10),
            "isTokenBasedCall": token_based, "isFreeBugbot": False, "userEmail": email,
            "isChargeable": usage_based, "isHeadless": False,
        }
        charged = Decimal(0)
        if token_based:
            tokens = {"inputTokens": rng.randint(100, 60_000), "outputTokens": rng.randint(50, 12_000),
                      "cacheWriteTokens": rng.choice([0, rng.randint(500, 20_000)]),
                      "cacheReadTokens": rng.choice([0, rng.randint(1_000, 200_000)])}
            prices = CENTS_PER_KTOK[model]
            cents = sum((Decimal(tokens[k]) * p / 1000 for k, p in zip(
                ("inputTokens", "outputTokens", "cacheWriteTokens", "cacheReadTokens"), prices, strict=True)),
                Decimal(0)).quantize(Decimal("0.00001"))
            fee = (cents * FEE_SHARE).quantize(Decimal("0.01")) if usage_based else Decimal(0)
            usage: dict[str, Any] = dict(tokens)
            if rng.random() < 0.1:  # reported in the wild: counts as strings
                usage = {k: str(v) for k, v in tokens.items()}
            usage["totalCents"] = float(cents)
            event["tokenUsage"] = usage
            event["cursorTokenFee"] = float(fee)
            charged = cents + fee if usage_based else Decimal(0)
        else:
            event["cursorTokenFee"] = 0
        event["chargedCents"] = float(charged)
        return event

    def _events(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Events with start <= time <= end (the API's dates are inclusive), newest first."""
        found: list[dict[str, Any]] = []
        day = start.date()
        while datetime(day.year, day.month, day.day) <= end:
            found.extend(e for e in self.day(day)[1] if start <= from_ms(int(e["timestamp"])) <= end)
            day += timedelta(days=1)
        found.sort(key=lambda e: int(e["timestamp"]), reverse=True)
        return found

    # -- ground truth for tests -------------------------------------------------------------------

    def expected(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Per member over the days starting in [start, end): daily-usage sums, events, tokens, cents."""
        per: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
        day = start.date()
        while datetime(day.year, day.month, day.day) < end:
            rows, events = self.day(day)
            for row in rows:
                m = per[row["email"]]
                m["active_days"] += int(row["isActive"])
                for name in ("totalLinesAdded", "totalLinesDeleted", "acceptedLinesAdded", "totalAccepts",
                             "totalRejects", "composerRequests", "chatRequests", "agentRequests", "cmdkUsages",
                             "bugbotUsages", "totalTabsShown", "totalTabsAccepted", "totalApplies"):
                    m[name] += row[name]
            for e in events:
                m = per[e["userEmail"]]
                m["events"] += 1
                m["charged_cents"] += Decimal(str(e["chargedCents"]))
                usage = e.get("tokenUsage") or {}
                for name in ("inputTokens", "outputTokens", "cacheWriteTokens", "cacheReadTokens"):
                    m[name] += int(usage.get(name, 0))
            day += timedelta(days=1)
        return {email: dict(v) for email, v in per.items()}

    def cycle_spend_cents(self) -> dict[str, int]:
        """`spendCents` per member: the usage-based charges since the cycle began, in whole cents."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for e in self._events(self.cycle_start, self.now):
            totals[e["userEmail"]] += Decimal(str(e["chargedCents"]))
        return {email: int(totals[email].quantize(Decimal(1))) for _, _, email, _ in TEAM}

    # -- HTTP -------------------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        if self._app is None:
            routes = []
            for prefix in ("", "/v1"):
                routes += [
                    Route(f"{prefix}/teams/members", self._handler(self._members), methods=["GET"]),
                    Route(f"{prefix}/teams/daily-usage-data", self._handler(self._daily), methods=["POST"]),
                    Route(f"{prefix}/teams/spend", self._handler(self._spend), methods=["POST"]),
                    Route(f"{prefix}/teams/filtered-usage-events", self._handler(self._filtered),
                          methods=["POST"]),
                ]
            self._app = Starlette(routes=[*routes, *self.faults.routes()])
        return self._app

    def _handler(self, build: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            injected = self.faults.before(request)
            if injected is not None:
                self.faults.log(request, injected.status_code)
                return injected
            try:
                key = self._authenticate(request)
                self._admit(key)
                body = build(await self._body(request))
            except BadRequest as exc:
                self.faults.log(request, exc.status)
                return JSONResponse(error_body(exc.status, str(exc)), status_code=exc.status, headers=exc.headers)
            self.faults.log(request, 200)
            return JSONResponse(body)

        return endpoint

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            raise BadRequest(401, "Unauthorized: use HTTP Basic auth with your API key as the username",
                             {"www-authenticate": 'Basic realm="Cursor Admin API"'})
        try:
            key, _, _ = base64.b64decode(token, validate=True).decode().partition(":")
        except ValueError:
            raise BadRequest(401, "Unauthorized: malformed Basic credentials") from None
        if key not in self.api_keys:
            raise BadRequest(401, "Unauthorized: invalid API key")
        return key

    def _admit(self, key: str) -> None:
        """A sliding window of `rate_limit` requests per `rate_window` seconds, per key."""
        with self._lock:
            now = time.monotonic()
            calls = self._calls[key]
            while calls and calls[0] <= now - self.rate_window:
                calls.popleft()
            if len(calls) >= self.rate_limit:
                wait = max(1, int(calls[0] + self.rate_window - now + 0.999))
                raise BadRequest(429, f"Rate limit exceeded: {self.rate_limit} requests per minute. "
                                      f"Retry in {wait} seconds.", {"retry-after": str(wait)})
            calls.append(now)

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        if request.method == "GET":
            return {}
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise BadRequest(400, "Invalid JSON body") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "The body must be a JSON object")
        return body

    def _members(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"teamMembers": self.members()}

    def _daily(self, body: dict[str, Any]) -> dict[str, Any]:
        start, end = _ms_param(body, "startDate", required=True), _ms_param(body, "endDate", required=True)
        assert start is not None and end is not None
        if end < start:
            raise BadRequest(400, "endDate must not be before startDate")
        if end - start > MAX_DAYS_MS:
            raise BadRequest(400, "Date range cannot exceed 30 days")
        first, last = from_ms(start), from_ms(end)
        rows: list[dict[str, Any]] = []
        day = first.date()
        while datetime(day.year, day.month, day.day) <= last:
            rows.extend(r for r in self.day(day)[0] if start <= r["date"] <= end)
            day += timedelta(days=1)
        return {"data": rows, "period": {"startDate": start, "endDate": end}}

    def _spend(self, body: dict[str, Any]) -> dict[str, Any]:
        page, size = _paging(body, default_size=50)
        cents = self.cycle_spend_cents()
        included: defaultdict[str, Decimal] = defaultdict(Decimal)
        fast: defaultdict[str, int] = defaultdict(int)
        for e in self._events(self.cycle_start, self.now):
            fast[e["userEmail"]] += 1
            if e["kind"] != "Usage-based":
                included[e["userEmail"]] += Decimal(str((e.get("tokenUsage") or {}).get("totalCents", 0)))
        term = str(body.get("searchTerm") or "").lower()
        people = [m for m in self.members() if term in m["name"].lower() or term in m["email"]]
        spend = []
        for m in people:
            item: dict[str, Any] = {"spendCents": cents[m["email"]], "fastPremiumRequests": fast[m["email"]],
                                    "name": m["name"], "email": m["email"], "role": m["role"],
                                    "hardLimitOverrideDollars": 0}
            if self.spend_shape == "new":
                inc = int(included[m["email"]].quantize(Decimal(1)))
                item.update(userId=m["id"], includedSpendCents=inc, overallSpendCents=inc + cents[m["email"]],
                            monthlyLimitDollars=None, effectivePerUserLimitDollars=None)
            spend.append(item)
        key = {"amount": lambda s: s["spendCents"], "user": lambda s: s["email"],
               "date": lambda s: s["email"]}.get(str(body.get("sortBy", "date")), lambda s: s["email"])
        spend.sort(key=key, reverse=str(body.get("sortDirection", "desc")) == "desc")
        pages = max(1, -(-len(spend) // size))
        return {"teamMemberSpend": spend[(page - 1) * size:page * size], "subscriptionCycleStart": ms(self.cycle_start),
                "totalMembers": len(spend), "totalPages": pages}

    def _filtered(self, body: dict[str, Any]) -> dict[str, Any]:
        page, size = _paging(body, default_size=10)
        start = _ms_param(body, "startDate", required=False)
        end = _ms_param(body, "endDate", required=False)
        first = from_ms(start) if start is not None else self.data_start
        last = from_ms(end) if end is not None else self.now
        events = self._events(first, last)
        if body.get("email"):
            events = [e for e in events if e["userEmail"] == str(body["email"]).lower()]
        if body.get("userId") is not None:
            wanted = {m["email"] for m in self.members() if m["id"] == body["userId"]}
            events = [e for e in events if e["userEmail"] in wanted]
        pages = -(-len(events) // size)
        return {
            "totalUsageEventsCount": len(events),
            "pagination": {"numPages": pages, "currentPage": page, "pageSize": size,
                           "hasNextPage": page < pages, "hasPreviousPage": page > 1},
            "usageEvents": events[(page - 1) * size:page * size],
            "period": {"startDate": ms(first), "endDate": ms(last)},
        }


def _ms_param(body: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(400, f"{name} is required (epoch milliseconds)")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(400, f"{name} must be a number of epoch milliseconds, got {value!r}")
    return int(value)


def _paging(body: dict[str, Any], *, default_size: int) -> tuple[int, int]:
    page, size = body.get("page", 1), body.get("pageSize", default_size)
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        raise BadRequest(400, f"page must be a positive integer, got {page!r}")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_PAGE_SIZE:
        raise BadRequest(400, f"pageSize must be between 1 and {MAX_PAGE_SIZE}, got {size!r}")
    return page, size
