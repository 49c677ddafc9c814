"""The Cursor Admin API connector: team members, daily usage, usage events and the cycle's spend.

Endpoints (shared/reference/provider-apis.md 6), HTTP Basic auth with the admin key as user name:

    daily    POST /teams/daily-usage-data          1d tasks of <= 30 days (the API's longest range)
    events   POST /teams/filtered-usage-events     1d tasks of <= 30 days, every page (page, pageSize)
    members  GET  /teams/members                   after the tasks: coding_members and names
    spend    POST /teams/spend                     after the tasks: coding_cycle_spend, every page

Cursor allows 20 requests a minute per team: every request (retries too) goes through a `Pacer`
that keeps to that, and a 429 that still comes is retried after its `retry-after`. A sync never
fails for the rate limit alone; a long backfill just takes longer.

What it writes (source `cursor`, provider `cursor`, 1d buckets; `user` is the member's email,
lower case):

  stream `daily`, one member-day of daily-usage-data, as (unit, quantity), zeros left out:
    active_days (1 when `isActive`), lines_added, lines_removed, accepted_lines_added,
    accepted_lines_removed, applies, tool_accepted, tool_rejected (`totalAccepts`/`totalRejects`:
    applied suggestions kept or turned down), tabs_shown, tabs_accepted,
    requests with detail composer | chat | agent | cmdk | bugbot,
    included_requests, usage_based_requests, api_key_requests (the same requests by how they are paid)
  stream `events`, filtered-usage-events summed per day, member, model and `kind` (in `detail`):
    UsageRecord tokens (input, output, cache_read, cache_write_5m = `cacheWriteTokens`), requests = events
    CostRecord  amount = charged cents / 100 USD (`chargedCents`, else `tokenUsage.totalCents` +
                `cursorTokenFee`), origin "reported", line_item = kind, cost_type "usage", user = email;
                events charged nothing write no cost row
  directory() -> ToolDirectory (ledger.coding.save_directory):
    members: email, Cursor id, name, role, removed (`isRemoved`); `coding_members.removed_at` is when
             a sync first saw the removal
    spend:   per member for the current cycle: `spendCents` (and `overallSpendCents`,
             `includedSpendCents` when sent), a reference figure, never added to the cost records

A body we cannot read fails its task (or the member/spend listing) with one ResponseError naming
the endpoint and field; nothing of that window is stored.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from tallybook.connectors.base import Chunk, KeyCheck, Task, ceil_to, floor_to, split_range
from tallybook.connectors.http import ProviderClient, RetryPolicy
from tallybook.connectors.pacing import PacedTransport, Pacer
from tallybook.errors import ResponseError
from tallybook.ledger.records import (
    CostRecord,
    CycleSpend,
    ProviderObject,
    ToolDirectory,
    ToolMember,
    UsageRecord,
)

MEMBERS, DAILY, SPEND, EVENTS = ("/teams/members", "/teams/daily-usage-data", "/teams/spend",
                                 "/teams/filtered-usage-events")
MAX_RANGE = timedelta(days=30)
RATE = (20, 60.0)  # requests per seconds, per team
EVENTS_PAGE = 500
SPEND_PAGE = 100
FIX = ("Create an admin API key in the Cursor dashboard (Settings > Advanced > Admin API keys) and run "
       "`CURSOR_ADMIN_KEY=key_... tallybook connect cursor`.")
# daily-usage-data field -> (unit, detail)
DAILY_UNITS = {
    "totalLinesAdded": ("lines_added", None), "totalLinesDeleted": ("lines_removed", None),
    "acceptedLinesAdded": ("accepted_lines_added", None), "acceptedLinesDeleted": ("accepted_lines_removed", None),
    "totalApplies": ("applies", None), "totalAccepts": ("tool_accepted", None),
    "totalRejects": ("tool_rejected", None), "totalTabsShown": ("tabs_shown", None),
    "totalTabsAccepted": ("tabs_accepted", None), "composerRequests": ("requests", "composer"),
    "chatRequests": ("requests", "chat"), "agentRequests": ("requests", "agent"), "cmdkUsages": ("requests", "cmdk"),
    "bugbotUsages": ("requests", "bugbot"), "subscriptionIncludedReqs": ("included_requests", None),
    "usageBasedReqs": ("usage_based_requests", None), "apiKeyReqs": ("api_key_requests", None),
}

Count = Annotated[int, Field(ge=0)]  # lax: token counts sometimes arrive as strings of digits
Cents = Annotated[Decimal, Field(allow_inf_nan=False)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DailyRow(_Open):
    date: int
    isActive: StrictBool = False
    email: StrictStr
    totalLinesAdded: Count = 0
    totalLinesDeleted: Count = 0
    acceptedLinesAdded: Count = 0
    acceptedLinesDeleted: Count = 0
    totalApplies: Count = 0
    totalAccepts: Count = 0
    totalRejects: Count = 0
    totalTabsShown: Count = 0
    totalTabsAccepted: Count = 0
    composerRequests: Count = 0
    chatRequests: Count = 0
    agentRequests: Count = 0
    cmdkUsages: Count = 0
    subscriptionIncludedReqs: Count = 0
    apiKeyReqs: Count = 0
    usageBasedReqs: Count = 0
    bugbotUsages: Count = 0


class TokenUsage(_Open):
    inputTokens: Count = 0
    outputTokens: Count = 0
    cacheWriteTokens: Count = 0
    cacheReadTokens: Count = 0
    totalCents: Cents = Decimal(0)


class Event(_Open):
    timestamp: int  # a string of epoch ms in the API; read leniently
    model: StrictStr | None = None
    kind: StrictStr | None = None
    userEmail: StrictStr
    tokenUsage: TokenUsage | None = None
    cursorTokenFee: Cents = Decimal(0)
    chargedCents: Cents | None = None

    @property
    def cents(self) -> Decimal:
        if self.chargedCents is not None:
            return self.chargedCents
        return (self.tokenUsage.totalCents if self.tokenUsage else Decimal(0)) + self.cursorTokenFee


class Pagination(_Open):
    numPages: int
    currentPage: int
    hasNextPage: StrictBool


class EventPage(_Open):
    totalUsageEventsCount: int
    pagination: Pagination | None = None
    usageEvents: list[Event]


class Member(_Open):
    id: int | None = None
    name: StrictStr | None = None
    email: StrictStr
    role: StrictStr | None = None
    isRemoved: StrictBool = False


class MemberSpend(_Open):
    email: StrictStr
    name: StrictStr | None = None
    role: StrictStr | None = None
    spendCents: Cents
    fastPremiumRequests: int | None = None
    overallSpendCents: Cents | None = None
    includedSpendCents: Cents | None = None


class SpendPage(_Open):
    teamMemberSpend: list[MemberSpend]
    subscriptionCycleStart: int
    totalPages: int = 1


class CursorConnector:
    """Pulls a Cursor team's members, usage and spend with an admin API key."""

    provider = "cursor"
    source = "cursor"
    events_page = EVENTS_PAGE

    def __init__(
        self, api_key: str, *, base_url: str = "https://api.cursor.com", key_hint: str = "",
        timeout: float = 30.0, retry: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep, strict: bool = True,
        rate: tuple[int, float] | None = RATE, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        basic = base64.b64encode(f"{api_key}:".encode()).decode()
        inner = transport or httpx.HTTPTransport()
        self.pacer = Pacer(*rate, clock=clock, sleep=sleep) if rate else None
        self.client = ProviderClient(
            provider=self.provider, label="Cursor", base_url=base_url, headers={"authorization": f"Basic {basic}"},
            key_hint=key_hint or "(admin key)", fix=FIX, timeout=timeout, retry=retry,
            transport=PacedTransport(inner, self.pacer) if self.pacer else inner, sleep=sleep,
        )  # fmt: skip
        self._members: list[Member] | None = None

    def close(self) -> None:
        self.client.close()

    # -- the protocol -----------------------------------------------------------------------------

    def check_key(self) -> KeyCheck:
        members = self._member_list()
        return KeyCheck(ok=True, organization=f"{len(members)} team members", permissions=("admin.read",))

    def plan(self, start: datetime, end: datetime, *, hourly_from: datetime | None = None) -> list[Task]:
        first, stop = floor_to(start, "1d"), ceil_to(end, "1d")
        ranges = list(split_range(first, stop, MAX_RANGE))
        return [Task(stream, "1d", a, b) for stream in ("daily", "events") for a, b in ranges]

    def fetch(self, task: Task) -> Chunk:
        if task.stream == "daily":
            return self._daily(task)
        if task.stream == "events":
            return self._events(task)
        raise ValueError(f"Cursor has no stream {task.stream!r}; expected daily or events")

    def names(self) -> Iterator[ProviderObject]:
        for m in self._member_list():
            yield ProviderObject(self.provider, "user", m.email.lower(), name=m.name, email=m.email.lower(),
                                 status="removed" if m.isRemoved else "active",
                                 extra={"role": m.role, "member_id": m.id})

    def directory(self) -> ToolDirectory:
        members = [ToolMember("cursor", m.email.lower(), None if m.id is None else str(m.id), m.name, m.role,
                              m.isRemoved) for m in self._member_list()]
        return ToolDirectory("cursor", members=members, spend=self._spend(), listed_members=True)

    # -- streams ----------------------------------------------------------------------------------

    def _daily(self, task: Task) -> Chunk:
        chunk = Chunk(task=task, pages=1)
        body = self.client.request_json("POST", DAILY, json_body=_range(task))
        data = body.get("data")
        if not isinstance(data, list):
            raise self._error(DAILY, task, "data", "is missing or not a list")
        for raw in data:
            row = self._parse(DailyRow, raw, DAILY, task, "data[]")
            assert isinstance(row, DailyRow)
            day = _day(row.date)
            if not (task.start <= day < task.end) or _ms(day) != row.date:
                raise self._error(DAILY, task, "date", f"is {row.date}, not a midnight inside the range asked for")
            base: dict[str, Any] = {"source": self.source, "stream": "daily", "bucket_start": day,
                                    "bucket_width": "1d", "provider": self.provider, "user": row.email.lower()}
            if row.isActive:
                chunk.usage.append(UsageRecord(**base, unit="active_days", quantity=1))
            for name, (unit, detail) in DAILY_UNITS.items():
                quantity = getattr(row, name)
                if quantity:
                    chunk.usage.append(UsageRecord(**base, unit=unit, detail=detail, quantity=quantity))
        return chunk

    def _events(self, task: Task) -> Chunk:
        chunk = Chunk(task=task)
        page, seen, total = 1, 0, None
        while True:
            body = self.client.request_json("POST", EVENTS, json_body={**_range(task), "page": page,
                                                                        "pageSize": self.events_page})
            chunk.pages += 1
            parsed = self._parse(EventPage, body, EVENTS, task, "(body)")
            assert isinstance(parsed, EventPage)
            if total is None:
                total = parsed.totalUsageEventsCount
            elif total != parsed.totalUsageEventsCount:
                raise self._error(EVENTS, task, "totalUsageEventsCount", "changed between pages")
            for event in parsed.usageEvents:
                self._event(task, event, chunk)
            seen += len(parsed.usageEvents)
            more = parsed.pagination.hasNextPage if parsed.pagination else seen < total
            if not more or not parsed.usageEvents:
                break
            page += 1
        if seen != total:
            raise self._error(EVENTS, task, "usageEvents", f"held {seen} events over {page} pages, not the "
                              f"{total} of totalUsageEventsCount")
        return chunk

    def _event(self, task: Task, event: Event, chunk: Chunk) -> None:
        at = datetime.fromtimestamp(event.timestamp / 1000, UTC).replace(tzinfo=None)
        day = floor_to(at, "1d")
        if not task.start <= day < task.end:
            raise self._error(EVENTS, task, "timestamp", f"is {event.timestamp}, outside the range asked for")
        email = event.userEmail.lower()
        tokens = event.tokenUsage or TokenUsage()
        base: dict[str, Any] = {"source": self.source, "stream": "events", "bucket_start": day, "bucket_width": "1d",
                                "provider": self.provider, "model": event.model, "user": email}
        chunk.usage.append(UsageRecord(
            **base, detail=event.kind, requests=1, input_tokens=tokens.inputTokens, output_tokens=tokens.outputTokens,
            cache_read_tokens=tokens.cacheReadTokens, cache_write_5m_tokens=tokens.cacheWriteTokens))
        cents = event.cents
        if cents:
            chunk.costs.append(CostRecord(**base, amount=cents / 100, currency="USD", line_item=event.kind,
                                          cost_type="usage", origin="reported"))

    # -- listings ---------------------------------------------------------------------------------

    def _member_list(self) -> list[Member]:
        if self._members is None:
            body = self.client.get_json(MEMBERS)
            raw = body.get("teamMembers")
            if not isinstance(raw, list):
                raise self._error(MEMBERS, None, "teamMembers", "is missing or not a list")
            self._members = [self._parse(Member, m, MEMBERS, None, "teamMembers[]") for m in raw]  # type: ignore[misc]
        return self._members

    def _spend(self) -> list[CycleSpend]:
        out: list[CycleSpend] = []
        page, pages = 1, 1
        while page <= pages:
            body = self.client.request_json("POST", SPEND, json_body={"page": page, "pageSize": SPEND_PAGE})
            parsed = self._parse(SpendPage, body, SPEND, None, "(body)")
            assert isinstance(parsed, SpendPage)
            cycle = _day(parsed.subscriptionCycleStart)
            pages = parsed.totalPages
            for m in parsed.teamMemberSpend:
                out.append(CycleSpend(
                    "cursor", cycle, m.email.lower(), m.spendCents / 100, name=m.name, role=m.role,
                    overall_spend=None if m.overallSpendCents is None else m.overallSpendCents / 100,
                    included_spend=None if m.includedSpendCents is None else m.includedSpendCents / 100,
                    fast_premium_requests=m.fastPremiumRequests))
            page += 1
        return out

    # -- errors -----------------------------------------------------------------------------------

    def _parse(self, model: type[BaseModel], raw: Any, path: str, task: Task | None, where: str) -> BaseModel:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or where
            problem = "is missing" if error["type"] == "missing" else f"is invalid ({error['msg']})"
            raise self._error(path, task, field, problem) from None

    def _error(self, path: str, task: Task | None, field: str, problem: str) -> ResponseError:
        window = (f"nothing was stored for {task.start:%Y-%m-%d}..{task.end:%Y-%m-%d} ({task.stream})"
                  if task else "the members and spend were left as they were")
        return ResponseError(
            self.provider,
            f"Cursor {path}: field `{field}` {problem}; {window}. Run the sync again; if it persists, "
            "upgrade tallybook or report it with this message.",
        )


def _ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


def _day(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC).replace(tzinfo=None)


def _range(task: Task) -> dict[str, int]:
    """The task's days as the API's inclusive epoch-ms range (its last millisecond is the end)."""
    return {"startDate": _ms(task.start), "endDate": _ms(task.end) - 1}
