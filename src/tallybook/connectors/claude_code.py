"""The Claude Code Analytics connector: per day and actor, what Claude Code did and what it cost.

Endpoint (shared/reference/provider-apis.md 3.4), with the Anthropic admin key:

    claude_code   GET /v1/organizations/usage_report/claude_code?starting_at=YYYY-MM-DD&limit=1000&page=..
                  one 1d task per UTC day (the API answers one day per request), every page

Its own provider kind (`tallybook connect claude_code`, reading ANTHROPIC_ADMIN_KEY), not a stream
of the `anthropic` connection: the sync engine replaces a window per (connection, source, stream)
and a connector has one source, so a separate connection keeps the `claude_code` source apart from
`anthropic_admin`, syncs and fails on its own, and leaves Anthropic API syncs unchanged.

What it writes (source `claude_code`, provider `claude_code`, stream `claude_code`, 1d buckets).
The actor is `user` (the email, lower case) for a `user_actor`, `api_key` (the key's *name*) for an
`api_actor`; several records of one actor and day (terminals, remote or local) are summed.

    UsageRecord unit=sessions | lines_added | lines_removed | commits | pull_requests, quantity=n
    UsageRecord unit=tool_accepted | tool_rejected, detail=<tool> (edit_tool, write_tool, ...)
    UsageRecord model=<model>: input_tokens, output_tokens, cache_read_tokens,
                cache_write_5m_tokens (the report's `cache_creation`)
    CostRecord  model=<model>, amount = estimated_cost.amount / 100 (cents to dollars), currency,
                origin="estimated" (the vendor's estimate, not a bill), line_item="Claude Code
                estimated cost", cost_type=<customer_type> (`api`: billed through the API usage the
                Anthropic cost report already holds; `subscription`: covered by the seat)

`sessions` is written for every actor-day the report has, so an actor with a row that day was
active. A record we cannot read (a missing measure, a date outside the day asked for) fails its
day with one ResponseError and nothing of that day is stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from tallybook.connectors.base import Chunk, KeyCheck, Task, ceil_to, floor_to
from tallybook.connectors.http import ProviderClient, RetryPolicy
from tallybook.errors import ResponseError
from tallybook.ledger.records import CostRecord, ProviderObject, UsageRecord

PATH = "/v1/organizations/usage_report/claude_code"
PAGE_SIZE = 1000  # records a page: the API's maximum
LINE_ITEM = "Claude Code estimated cost"
FIX = (
    "Claude Code analytics use the Anthropic admin key (sk-ant-admin...): create one in the Claude "
    "Console under Settings > Admin keys and run `tallybook connect claude_code`."
)

Count = Annotated[StrictInt, Field(ge=0)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore")  # new fields (e.g. is_remote) only split rows we sum


class Lines(_Open):
    added: Count
    removed: Count


class CoreMetrics(_Open):
    num_sessions: Count
    lines_of_code: Lines
    commits_by_claude_code: Count
    pull_requests_by_claude_code: Count


class ToolAction(_Open):
    accepted: Count
    rejected: Count


class Tokens(_Open):
    input: Count
    output: Count
    cache_read: Count
    cache_creation: Count


class EstimatedCost(_Open):
    currency: StrictStr
    amount: Decimal = Field(ge=0)  # a JSON number of cents, read as a Decimal (never a float)


class ModelUsage(_Open):
    model: StrictStr
    tokens: Tokens
    estimated_cost: EstimatedCost | None = None


class Actor(_Open):
    type: Literal["user_actor", "api_actor"]
    email_address: StrictStr | None = None
    api_key_name: StrictStr | None = None


class Record(_Open):
    date: StrictStr
    actor: Actor
    customer_type: StrictStr | None = None
    core_metrics: CoreMetrics
    tool_actions: dict[str, ToolAction] = Field(default_factory=dict)
    model_breakdown: list[ModelUsage] = Field(default_factory=list)


class ClaudeCodeConnector:
    """Pulls Claude Code analytics with an Anthropic admin key (`sk-ant-admin...`)."""

    provider = "claude_code"
    source = "claude_code"
    page_size = PAGE_SIZE

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.anthropic.com",
        key_hint: str = "",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        strict: bool = True,  # accepted for the registry; new fields are summed over, never fatal
    ) -> None:
        self.client = ProviderClient(
            provider=self.provider, label="Anthropic (Claude Code analytics)", base_url=base_url,
            headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
            key_hint=key_hint or "(admin key)", fix=FIX, timeout=timeout, retry=retry,
            transport=transport, sleep=sleep,
        )  # fmt: skip
        self._actors: dict[tuple[str, str], None] = {}  # (kind, id) seen, for names()

    def close(self) -> None:
        self.client.close()

    # -- the protocol -----------------------------------------------------------------------------

    def check_key(self) -> KeyCheck:
        yesterday = floor_to(datetime.now(UTC).replace(tzinfo=None), "1d") - timedelta(days=1)
        self.client.get_json(PATH, [("starting_at", f"{yesterday:%Y-%m-%d}"), ("limit", 1)])
        return KeyCheck(ok=True, permissions=("claude_code_analytics.read",))

    def plan(self, start: datetime, end: datetime, *, hourly_from: datetime | None = None) -> list[Task]:
        """One task a UTC day: the API takes a single date. There are no hourly figures."""
        day, stop = floor_to(start, "1d"), ceil_to(end, "1d")
        tasks = []
        while day < stop:
            tasks.append(Task("claude_code", "1d", day, day + timedelta(days=1)))
            day += timedelta(days=1)
        return tasks

    def fetch(self, task: Task) -> Chunk:
        if task.stream != "claude_code" or task.bucket_width != "1d":
            raise ValueError(f"Claude Code has only the claude_code/1d stream, not {task.stream}/{task.bucket_width}")
        chunk = Chunk(task=task)
        params: list[tuple[str, Any]] = [("starting_at", f"{task.start:%Y-%m-%d}"), ("limit", self.page_size)]
        for body in self.client.paginate(PATH, params):
            chunk.pages += 1
            data = body.get("data")
            if not isinstance(data, list):
                raise self._error(task, "data", "is missing or not a list")
            for raw in data:
                record = self._record(task, raw)
                chunk.usage.extend(self._usage(task, record))
                chunk.costs.extend(self._costs(task, record))
        return chunk

    def names(self) -> Iterator[ProviderObject]:
        """The actors the synced days had: users by email, API keys by name."""
        for kind, ident in self._actors:
            email = ident if kind == "user" else None
            yield ProviderObject(self.provider, kind, ident, name=None if email else ident, email=email)

    # -- mapping ----------------------------------------------------------------------------------

    def _record(self, task: Task, raw: Any) -> Record:
        if not isinstance(raw, dict):
            raise self._error(task, "data[]", "is not an object")
        try:
            record = Record.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"])
            problem = "is missing" if error["type"] == "missing" else f"is invalid ({error['msg']})"
            raise self._error(task, field, problem) from None
        try:
            day = datetime.fromisoformat(record.date).astimezone(UTC).replace(tzinfo=None)
        except ValueError:
            raise self._error(task, "date", f"is {record.date[:40]!r}, not an RFC 3339 time") from None
        if day != task.start:
            raise self._error(task, "date", f"is {record.date}, not the day asked for")
        actor = record.actor
        ident = actor.email_address if actor.type == "user_actor" else actor.api_key_name
        if not ident:
            field = "actor.email_address" if actor.type == "user_actor" else "actor.api_key_name"
            raise self._error(task, field, "is missing")
        return record

    def _who(self, record: Record) -> dict[str, str | None]:
        actor = record.actor
        if actor.type == "user_actor":
            email = (actor.email_address or "").lower()
            self._actors[("user", email)] = None
            return {"user": email, "api_key": None}
        self._actors[("api_key", actor.api_key_name or "")] = None
        return {"user": None, "api_key": actor.api_key_name}

    def _usage(self, task: Task, record: Record) -> Iterator[UsageRecord]:
        base: dict[str, Any] = {"source": self.source, "stream": task.stream, "bucket_start": task.start,
                                "bucket_width": "1d", "provider": self.provider, **self._who(record)}
        core = record.core_metrics
        counts = {
            "sessions": core.num_sessions, "lines_added": core.lines_of_code.added,
            "lines_removed": core.lines_of_code.removed, "commits": core.commits_by_claude_code,
            "pull_requests": core.pull_requests_by_claude_code,
        }
        for unit, quantity in counts.items():
            if quantity or unit == "sessions":  # sessions always: the actor's row says it was active
                yield UsageRecord(**base, unit=unit, quantity=quantity)
        for tool, action in sorted(record.tool_actions.items()):
            if action.accepted:
                yield UsageRecord(**base, unit="tool_accepted", detail=tool, quantity=action.accepted)
            if action.rejected:
                yield UsageRecord(**base, unit="tool_rejected", detail=tool, quantity=action.rejected)
        for m in record.model_breakdown:
            yield UsageRecord(
                **base, model=m.model, input_tokens=m.tokens.input, output_tokens=m.tokens.output,
                cache_read_tokens=m.tokens.cache_read, cache_write_5m_tokens=m.tokens.cache_creation,
            )  # fmt: skip

    def _costs(self, task: Task, record: Record) -> Iterator[CostRecord]:
        who = self._who(record)
        for m in record.model_breakdown:
            cost = m.estimated_cost
            if cost is None or not cost.amount:
                continue
            yield CostRecord(
                source=self.source, stream=task.stream, bucket_start=task.start, bucket_width="1d",
                provider=self.provider, amount=cost.amount / 100, currency=cost.currency.upper(),
                model=m.model, api_key=who["api_key"], user=who["user"], line_item=LINE_ITEM,
                cost_type=record.customer_type, origin="estimated",
            )  # fmt: skip

    def _error(self, task: Task, field: str, problem: str) -> ResponseError:
        return ResponseError(
            self.provider,
            f"Claude Code analytics {PATH} {task.start:%Y-%m-%d}: field `{field}` {problem}; nothing was "
            "stored for that day. Run the sync again; if it persists, upgrade tallybook or report it with "
            "this message.",
        )
