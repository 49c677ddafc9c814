"""The Anthropic Admin API connector: usage report, cost report and the org lists.

Streams (shared/reference/provider-apis.md 3.2-3.3):

    messages   GET /v1/organizations/usage_report/messages   1d tasks of <= 31 days, 1h tasks of <= 168 h
    costs      GET /v1/organizations/cost_report             1d tasks of <= 31 days

Every result is grouped by every dimension the report has, so no two rows merge.
A result we cannot read faithfully (a measure missing, an amount that is not a
decimal, an unknown non-null field) fails the whole task with a ResponseError:
the sync engine then stores nothing for that window rather than a wrong total.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from tallybook.connectors.base import WIDTH_SECONDS, Chunk, KeyCheck, Task, ceil_to, floor_to, split_range
from tallybook.connectors.http import ProviderClient, RetryPolicy
from tallybook.errors import ResponseError
from tallybook.ledger.records import CostRecord, ProviderObject, UsageRecord

USAGE_PATH = "/v1/organizations/usage_report/messages"
COST_PATH = "/v1/organizations/cost_report"
USAGE_GROUPS = (
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "account_id",
)
COST_GROUPS = ("workspace_id", "description")
MAX_LIMIT = {"1d": 31, "1h": 168, "1m": 1440}  # buckets per page, and so per task
FIX = (
    "Create an admin key (sk-ant-admin...) in the Claude Console under Settings > Admin keys "
    "and run `tallybook connect anthropic`."
)

Count = Annotated[StrictInt, Field(ge=0)]


class _Lenient(BaseModel):
    """Unknown fields are kept (in `model_extra`) so strict mode can inspect them."""

    model_config = ConfigDict(extra="allow")


class CacheCreation(_Lenient):
    ephemeral_1h_input_tokens: Count
    ephemeral_5m_input_tokens: Count


class ServerToolUse(_Lenient):
    web_search_requests: Count = 0


class UsageResult(_Lenient):
    uncached_input_tokens: Count
    cache_creation: CacheCreation
    cache_read_input_tokens: Count
    output_tokens: Count
    server_tool_use: ServerToolUse | None = None
    api_key_id: StrictStr | None = None
    workspace_id: StrictStr | None = None
    model: StrictStr | None = None
    service_tier: StrictStr | None = None
    context_window: StrictStr | None = None
    inference_geo: StrictStr | None = None
    account_id: StrictStr | None = None
    service_account_id: StrictStr | None = None


class CostResult(_Lenient):
    amount: StrictStr
    currency: StrictStr
    cost_type: StrictStr | None = None
    description: StrictStr | None = None
    model: StrictStr | None = None
    service_tier: StrictStr | None = None
    token_type: StrictStr | None = None
    context_window: StrictStr | None = None
    inference_geo: StrictStr | None = None
    workspace_id: StrictStr | None = None


class Bucket(BaseModel):
    starting_at: StrictStr
    ending_at: StrictStr
    results: list[dict[str, Any]]

    @property
    def start(self) -> datetime:
        return _parse_time(self.starting_at)


class Listing(BaseModel):
    data: list[dict[str, Any]]
    has_more: bool = False
    last_id: str | None = None


class OrgObject(BaseModel):
    id: StrictStr
    name: str | None = None
    email: str | None = None
    status: str | None = None
    workspace_id: str | None = None
    archived_at: str | None = None
    role: str | None = None
    partial_key_hint: str | None = None


class AnthropicConnector:
    """Pulls an Anthropic organisation's usage and costs with an admin key (`sk-ant-admin...`)."""

    provider = "anthropic"
    source = "anthropic_admin"

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
        strict: bool = True,
    ) -> None:
        self.strict = strict
        self.client = ProviderClient(
            provider=self.provider,
            label="Anthropic",
            base_url=base_url,
            headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
            key_hint=key_hint or "(admin key)",
            fix=FIX,
            timeout=timeout,
            retry=retry,
            transport=transport,
            sleep=sleep,
        )

    def close(self) -> None:
        self.client.close()

    # -- the protocol -----------------------------------------------------------------------------

    def check_key(self) -> KeyCheck:
        yesterday = floor_to(_utcnow(), "1d") - timedelta(days=1)
        self.client.get_json(
            USAGE_PATH, [("starting_at", _rfc3339(yesterday)), ("bucket_width", "1d"), ("limit", 1)]
        )
        return KeyCheck(ok=True, permissions=("usage_report.read",))

    def plan(self, start: datetime, end: datetime, *, hourly_from: datetime | None = None) -> list[Task]:
        tasks = _tasks("messages", "1d", start, end)
        if hourly_from is not None:
            tasks += _tasks("messages", "1h", max(hourly_from, start), end)
        return tasks + _tasks("costs", "1d", start, end)

    def fetch(self, task: Task) -> Chunk:
        chunk = Chunk(task=task)
        groups: tuple[str, ...]
        if task.stream == "messages":
            path, groups = USAGE_PATH, USAGE_GROUPS
        elif task.stream == "costs":
            path, groups = COST_PATH, COST_GROUPS
        else:
            raise ValueError(f"Anthropic has no stream {task.stream!r}; expected messages or costs")
        params: list[tuple[str, Any]] = [
            ("starting_at", _rfc3339(task.start)),
            ("ending_at", _rfc3339(task.end)),
            ("bucket_width", task.bucket_width),
            ("limit", MAX_LIMIT[task.bucket_width]),
        ] + [("group_by[]", g) for g in groups]
        for body in self.client.paginate(path, params):
            chunk.pages += 1
            data = body.get("data")
            if not isinstance(data, list):
                raise self._error(task, path, None, "data", "is missing or not a list")
            for raw in data:
                bucket = self._bucket(task, path, raw)
                if task.stream == "messages":
                    chunk.usage.extend(self._usage(task, path, bucket))
                else:
                    chunk.costs.extend(self._costs(task, path, bucket))
        return chunk

    def names(self) -> Iterator[ProviderObject]:
        for obj in self._list("/v1/organizations/workspaces", [("include_archived", "true")]):
            status = "archived" if obj.archived_at else "active"
            yield ProviderObject(self.provider, "workspace", obj.id, name=obj.name, status=status)
        for obj in self._list("/v1/organizations/api_keys", []):
            yield ProviderObject(
                self.provider, "api_key", obj.id, name=obj.name, parent_id=obj.workspace_id,
                status=obj.status,
                extra={"partial_key_hint": obj.partial_key_hint} if obj.partial_key_hint else {},
            )  # fmt: skip
        for obj in self._list("/v1/organizations/users", []):
            yield ProviderObject(
                self.provider, "user", obj.id, name=obj.name, email=obj.email,
                extra={"role": obj.role} if obj.role else {},
            )  # fmt: skip

    # -- parsing ----------------------------------------------------------------------------------

    def _bucket(self, task: Task, path: str, raw: Any) -> Bucket:
        if not isinstance(raw, dict):
            raise self._error(task, path, None, "data[]", "is not an object")
        try:
            bucket = Bucket.model_validate(raw)
        except ValidationError as exc:
            field, problem = _first_problem(exc)
            raise self._error(task, path, raw.get("starting_at"), field, problem) from None
        for name in ("starting_at", "ending_at"):
            try:
                _parse_time(getattr(bucket, name))
            except ValueError:
                problem = f"is {getattr(bucket, name)[:40]!r}, not an RFC 3339 time"
                raise self._error(task, path, None, name, problem) from None
        start = bucket.start
        if not task.start <= start < task.end:
            raise self._error(task, path, start, "starting_at", "lies outside the requested window")
        return bucket

    def _usage(self, task: Task, path: str, bucket: Bucket) -> Iterator[UsageRecord]:
        start = bucket.start
        seen: set[tuple[str | None, ...]] = set()
        for raw in bucket.results:
            result = self._result(task, path, start, UsageResult, raw)
            assert isinstance(result, UsageResult)
            dims = tuple(getattr(result, g) for g in USAGE_GROUPS)
            if dims in seen:
                raise self._error(task, path, start, "results", "holds two rows with the same dimensions")
            seen.add(dims)
            cache = result.cache_creation
            tokens = (
                result.uncached_input_tokens + result.cache_read_input_tokens + result.output_tokens
                + cache.ephemeral_5m_input_tokens + cache.ephemeral_1h_input_tokens
            )  # fmt: skip
            searches = result.server_tool_use.web_search_requests if result.server_tool_use else 0
            if result.model is None and (tokens or searches):
                problem = "is null on a result with usage although grouped by model"
                raise self._error(task, path, start, "model", problem)
            base: dict[str, Any] = {
                "source": self.source,
                "stream": task.stream,
                "bucket_start": start,
                "bucket_width": task.bucket_width,
                "provider": self.provider,
                "model": result.model,
                "project": result.workspace_id,
                "api_key": result.api_key_id,
                "user": result.account_id or result.service_account_id,
                "service_tier": result.service_tier,
                "context_window": result.context_window,
                "inference_geo": result.inference_geo,
            }
            yield UsageRecord(
                **base,
                input_tokens=result.uncached_input_tokens,
                cache_read_tokens=result.cache_read_input_tokens,
                cache_write_5m_tokens=cache.ephemeral_5m_input_tokens,
                cache_write_1h_tokens=cache.ephemeral_1h_input_tokens,
                output_tokens=result.output_tokens,
            )
            if searches:
                yield UsageRecord(**base, unit="web_search_requests", quantity=searches)

    def _costs(self, task: Task, path: str, bucket: Bucket) -> Iterator[CostRecord]:
        start = bucket.start
        seen: set[tuple[str | None, ...]] = set()
        for raw in bucket.results:
            result = self._result(task, path, start, CostResult, raw)
            assert isinstance(result, CostResult)
            try:
                cents = Decimal(result.amount)
            except InvalidOperation:
                cents = Decimal("NaN")
            if not cents.is_finite():
                problem = f"is {result.amount[:40]!r}, not a decimal string"
                raise self._error(task, path, start, "amount", problem)
            dims = (result.workspace_id, result.description)
            if dims in seen:
                problem = "holds two items with the same workspace and description"
                raise self._error(task, path, start, "results", problem)
            seen.add(dims)
            yield CostRecord(
                source=self.source,
                stream=task.stream,
                bucket_start=start,
                bucket_width=task.bucket_width,
                provider=self.provider,
                amount=cents / 100,
                currency=result.currency.upper(),
                model=result.model,
                project=result.workspace_id,
                line_item=result.description,
                token_type=result.token_type,
                cost_type=result.cost_type,
                service_tier=result.service_tier,
                context_window=result.context_window,
                inference_geo=result.inference_geo,
            )

    def _result(
        self, task: Task, path: str, start: datetime, model: type[_Lenient], raw: Any
    ) -> _Lenient:
        if not isinstance(raw, dict):
            raise self._error(task, path, start, "results[]", "is not an object")
        try:
            result = model.model_validate(raw)
        except ValidationError as exc:
            field, problem = _first_problem(exc)
            raise self._error(task, path, start, field, problem) from None
        if self.strict:
            for name, value in _unknown_fields(result):
                raise self._error(
                    task, path, start, name,
                    f"is an unknown field with value {str(value)[:40]!r} (it may be a dimension that would "
                    "merge distinct rows; upgrade tallybook, or set TALLYBOOK_STRICT_SCHEMA=false to ignore unknown fields)",
                )  # fmt: skip
        return result

    def _error(self, task: Task, path: str, bucket: Any, field: str, problem: str) -> ResponseError:
        shape = "%Y-%m-%d" if task.bucket_width == "1d" else "%Y-%m-%d %H:%M"
        day = bucket.strftime(shape) if isinstance(bucket, datetime) else bucket
        where = f" bucket {day}" if day else ""
        return ResponseError(
            self.provider,
            f"Anthropic {path}{where}: field `{field}` {problem}; nothing was stored for "
            f"{task.start:%Y-%m-%d %H:%M}..{task.end:%Y-%m-%d %H:%M} ({task.stream}/{task.bucket_width}). "
            "Run the sync again; if it persists, upgrade tallybook or report it with this message.",
        )

    def _list(self, path: str, params: list[tuple[str, Any]]) -> Iterator[OrgObject]:
        after: str | None = None
        seen: set[str] = set()
        while True:
            cursor = [("after_id", after)] if after else []
            body = self.client.get_json(path, [*params, ("limit", 1000), *cursor])
            try:
                listing = Listing.model_validate(body)
                objects = [OrgObject.model_validate(item) for item in listing.data]
            except ValidationError as exc:
                field, problem = _first_problem(exc)
                raise ResponseError(
                    self.provider,
                    f"Anthropic {path}: field `{field}` {problem}; no names were updated. "
                    "Run the sync again; if it persists, report it with this message.",
                ) from None
            yield from objects
            if not listing.has_more:
                return
            after = listing.last_id or (objects[-1].id if objects else None)
            if not after or after in seen:
                raise ResponseError(
                    self.provider,
                    f"Anthropic {path} said has_more but gave no new `last_id`; stopped to avoid a loop. "
                    "Run the sync again; report it if it persists.",
                )
            seen.add(after)


def _tasks(stream: str, width: str, start: datetime, end: datetime) -> list[Task]:
    """Aligned tasks of at most one page of buckets; a non-aligned end is rounded up."""
    first, stop = floor_to(start, width), ceil_to(end, width)
    step = timedelta(seconds=WIDTH_SECONDS[width] * MAX_LIMIT[width])
    return [Task(stream, width, a, b) for a, b in split_range(first, stop, step)]


def _unknown_fields(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Non-null unknown fields, nested ones included. A new nested counter only matters when non-zero."""
    for name, value in (model.model_extra or {}).items():
        if value is None or (prefix and value == 0):
            continue
        yield prefix + name, value
    for name in type(model).model_fields:
        child = getattr(model, name)
        if isinstance(child, BaseModel):
            yield from _unknown_fields(child, f"{prefix}{name}.")


def _first_problem(exc: ValidationError) -> tuple[str, str]:
    error = exc.errors()[0]
    field = ".".join(str(p) for p in error["loc"]) or "(body)"
    if error["type"] == "missing":
        return field, "is missing"
    if error.get("input") is None and error["type"] not in ("greater_than_equal",):
        return field, "is null"
    return field, f"is invalid ({error['msg']}, got {str(error.get('input'))[:40]!r})"


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.astimezone(UTC).replace(tzinfo=None)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
