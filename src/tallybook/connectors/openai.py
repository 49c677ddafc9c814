"""OpenAI's organization Usage and Costs APIs as a Connector (provider-apis.md §1).

Streams: one per usage endpoint ("completions", "embeddings", "moderations",
"images", "audio_speeches", "audio_transcriptions", "vector_stores",
"code_interpreter_sessions") in 1d and, from `hourly_from`, 1h buckets; and
"costs" in 1d buckets only. Every request groups by every dimension the endpoint
offers, so no two rows the provider keeps apart are ever merged.

Plan: a task's range is [start, end rounded UP to the next bucket boundary), sent
as `end_time` (exclusive); the ledger replaces exactly that range, and the still
open bucket is re-fetched whole on the next sync.

Measures: `input_tokens` is uncached input (text, audio and image), without cache
reads or cache writes; `output_tokens` is OpenAI's `output_tokens` (audio
included). `audio_input_tokens` / `audio_output_tokens` are the audio parts of
those two, kept for information: never add them to the totals.

Strictness: anything we cannot read faithfully raises a one-line ResponseError and
nothing of the task is stored. With `strict=True` (the default) a result field we
do not know with a non-null value is refused too: it could be a new dimension,
and ignoring it would merge rows the provider keeps apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError

from tallybook.connectors.base import Chunk, KeyCheck, Task, ceil_to, split_range
from tallybook.connectors.http import ProviderClient, RetryPolicy
from tallybook.errors import ResponseError
from tallybook.ledger.records import CostRecord, ProviderObject, UsageRecord

FIX = "Create an admin key at platform.openai.com/settings/organization/admin-keys and run `tallybook connect openai`."
MAX_LIMIT = {"1d": 31, "1h": 168, "1m": 1440}
COSTS_LIMIT = 180
TASK_SPAN = {"1d": timedelta(days=31), "1h": timedelta(hours=168)}


def _number(value: Any) -> Any:
    """A JSON number as Decimal (the client parses floats as Decimal already); anything else is refused."""
    if isinstance(value, bool):
        raise ValueError("not a number")  # noqa: TRY004 - the caller reports a ValueError as a schema error
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Decimal):
        return value
    raise ValueError("not a number")


Number = Annotated[Decimal, BeforeValidator(_number)]


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow")
    object: StrictStr
    project_id: StrictStr | None = None


class _ModelResult(_Result):
    user_id: StrictStr | None = None
    api_key_id: StrictStr | None = None
    model: StrictStr | None = None
    num_model_requests: StrictInt


class CompletionsResult(_ModelResult):
    input_tokens: StrictInt
    output_tokens: StrictInt
    input_cached_tokens: StrictInt | None = None
    input_cache_write_tokens: StrictInt | None = None
    input_uncached_tokens: StrictInt | None = None
    input_text_tokens: StrictInt | None = None
    output_text_tokens: StrictInt | None = None
    input_cached_text_tokens: StrictInt | None = None
    input_audio_tokens: StrictInt | None = None
    input_cached_audio_tokens: StrictInt | None = None
    output_audio_tokens: StrictInt | None = None
    input_image_tokens: StrictInt | None = None
    input_cached_image_tokens: StrictInt | None = None
    output_image_tokens: StrictInt | None = None
    batch: StrictBool | None = None
    service_tier: StrictStr | None = None


class EmbeddingsResult(_ModelResult):
    input_tokens: StrictInt


class ImagesResult(_ModelResult):
    images: StrictInt
    source: StrictStr | None = None
    size: StrictStr | None = None


class AudioSpeechesResult(_ModelResult):
    characters: StrictInt


class AudioTranscriptionsResult(_ModelResult):
    seconds: StrictInt


class VectorStoresResult(_Result):
    usage_bytes: StrictInt


class CodeInterpreterSessionsResult(_Result):
    num_sessions: StrictInt


class Amount(BaseModel):
    value: Number
    currency: StrictStr


class CostsResult(_Result):
    amount: Amount
    line_item: StrictStr | None = None
    api_key_id: StrictStr | None = None
    quantity: Number | None = None
    quantity_unit: StrictStr | None = None


class Bucket(BaseModel):
    object: StrictStr
    start_time: StrictInt
    end_time: StrictInt
    results: list[dict[str, Any]]


class Page(BaseModel):
    data: list[dict[str, Any]]
    has_more: StrictBool


@dataclass(frozen=True)
class Stream:
    path: str
    result: type[_Result]
    group_by: tuple[str, ...]
    object: str
    unit: str | None = None  # non-token unit, with the result field holding its quantity
    quantity_field: str | None = None


_PEOPLE = ("project_id", "user_id", "api_key_id", "model")


def _usage(name: str, result: type[_Result], group_by: tuple[str, ...], unit: str | None = None,
           field: str | None = None) -> Stream:
    return Stream(f"/organization/usage/{name}", result, group_by, f"organization.usage.{name}.result", unit, field)


STREAMS: dict[str, Stream] = {
    "completions": _usage("completions", CompletionsResult, _PEOPLE + ("batch", "service_tier")),
    "embeddings": _usage("embeddings", EmbeddingsResult, _PEOPLE),
    "moderations": _usage("moderations", EmbeddingsResult, _PEOPLE),
    "images": _usage("images", ImagesResult, _PEOPLE + ("size", "source"), "images", "images"),
    "audio_speeches": _usage("audio_speeches", AudioSpeechesResult, _PEOPLE, "characters", "characters"),
    "audio_transcriptions": _usage("audio_transcriptions", AudioTranscriptionsResult, _PEOPLE, "seconds", "seconds"),
    "vector_stores": _usage("vector_stores", VectorStoresResult, ("project_id",), "storage_bytes", "usage_bytes"),
    "code_interpreter_sessions": _usage(
        "code_interpreter_sessions", CodeInterpreterSessionsResult, ("project_id",), "sessions", "num_sessions"
    ),
    "costs": Stream("/organization/costs", CostsResult, ("project_id", "line_item", "api_key_id"),
                    "organization.costs.result"),
}
USAGE_STREAMS = tuple(name for name in STREAMS if name != "costs")
TOKEN_STREAMS = frozenset({"completions", "embeddings", "moderations"})


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def _unix(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp())



class OpenAIConnector:
    provider = "openai"
    source = "openai_admin"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.openai.com/v1",
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
            label="OpenAI",
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            key_hint=key_hint or "(unnamed key)",
            fix=FIX,
            timeout=timeout,
            retry=retry,
            transport=transport,
            sleep=sleep,
        )

    def close(self) -> None:
        self.client.close()

    # -- the protocol ---------------------------------------------------------------------------

    def check_key(self) -> KeyCheck:
        now = int(time.time())
        params = [("start_time", now - now % 86400 - 86400), ("bucket_width", "1d"), ("limit", 1)]
        self.client.get_json(STREAMS["completions"].path, params)
        return KeyCheck(
            ok=True,
            permissions=("usage.read",),
            message=f"OpenAI admin key {self.client.key_hint} can read usage and costs.",
        )

    def plan(self, start: datetime, end: datetime, *, hourly_from: datetime | None = None) -> list[Task]:
        tasks: list[Task] = []
        for stream in (*USAGE_STREAMS, "costs"):
            tasks += self._tasks(stream, "1d", start, end)
            if hourly_from is not None and stream != "costs":
                tasks += self._tasks(stream, "1h", max(hourly_from, start), end)
        return tasks

    def fetch(self, task: Task) -> Chunk:
        stream = STREAMS.get(task.stream)
        if stream is None:
            raise ValueError(f"OpenAI has no stream {task.stream!r}; expected one of {', '.join(STREAMS)}")
        limit = COSTS_LIMIT if task.stream == "costs" else MAX_LIMIT[task.bucket_width]
        params: list[tuple[str, Any]] = [
            ("start_time", _unix(task.start)),
            ("end_time", _unix(task.end)),
            ("bucket_width", task.bucket_width),
            ("limit", limit),
        ] + [("group_by", dim) for dim in stream.group_by]
        chunk = Chunk(task=task)
        for body in self.client.paginate(stream.path, params):
            chunk.pages += 1
            for bucket in self._buckets(stream, task, body):
                for raw in bucket.results:
                    result = self._result(stream, task, bucket, raw)
                    if isinstance(result, CostsResult):
                        chunk.costs.append(self._cost(task, _utc(bucket.start_time), result))
                    else:
                        chunk.usage.append(self._usage(task, _utc(bucket.start_time), stream, result))
        return chunk

    def names(self) -> Iterator[ProviderObject]:
        projects = list(self._list("/organization/projects", [("include_archived", "true")]))
        for p in projects:
            yield ProviderObject(
                provider=self.provider, kind="project", object_id=p["id"], name=p.get("name"),
                status=p.get("status"), extra={"archived_at": p.get("archived_at")},
            )
        for u in self._list("/organization/users", []):
            yield ProviderObject(
                provider=self.provider, kind="user", object_id=u["id"], name=u.get("name"),
                email=u.get("email"), extra={"role": u.get("role")},
            )
        for p in projects:
            for k in self._list(f"/organization/projects/{p['id']}/api_keys", []):
                owner = k.get("owner") or {}
                yield ProviderObject(
                    provider=self.provider, kind="api_key", object_id=k["id"], name=k.get("name"),
                    parent_id=p["id"], status=k.get("owner_project_access"),
                    extra={"owner_type": owner.get("type")},
                )

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _tasks(stream: str, width: str, start: datetime, end: datetime) -> list[Task]:
        stop = ceil_to(end, width)
        return [Task(stream, width, a, b) for a, b in split_range(start, stop, TASK_SPAN[width])]

    def _list(self, path: str, params: list[tuple[str, Any]]) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            body = self.client.get_json(path, [*params, ("limit", 100)] + ([("after", after)] if after else []))
            data = body.get("data")
            if not isinstance(data, list) or not all(isinstance(d, dict) and isinstance(d.get("id"), str)
                                                     for d in data):
                raise ResponseError(self.provider, f"OpenAI {path} answered a list without `data` objects "
                                    "that carry an `id`; no names were updated. Run it again later.")
            yield from data
            last = body.get("last_id") or (data[-1]["id"] if data else None)
            if not body.get("has_more") or not last or last == after:
                return
            after = last

    def _fail(self, stream: Stream, task: Task, when: datetime | None, problem: str) -> ResponseError:
        moment = when or task.start
        day = f"{moment:%Y-%m-%d}" if task.bucket_width == "1d" else f"{moment:%Y-%m-%d %H:%M}"
        return ResponseError(
            self.provider,
            f"OpenAI {stream.path} returned {problem} in the {task.bucket_width} bucket of {day}; "
            f"nothing was stored for {task.stream} {task.start:%Y-%m-%d %H:%M} to {task.end:%Y-%m-%d %H:%M}. "
            "Run the sync again; if it persists, update tallybook (the API may have changed) or report it.",
        )

    def _buckets(self, stream: Stream, task: Task, body: dict[str, Any]) -> Iterator[Bucket]:
        try:
            page = Page.model_validate(body)
        except ValidationError as exc:
            raise self._fail(stream, task, None, _describe(exc, "page")) from None
        for raw in page.data:
            when = raw.get("start_time")
            when_dt = _utc(when) if isinstance(when, int) and not isinstance(when, bool) else None
            try:
                bucket = Bucket.model_validate(raw)
            except ValidationError as exc:
                raise self._fail(stream, task, when_dt, _describe(exc, "bucket")) from None
            if bucket.object != "bucket":
                raise self._fail(stream, task, when_dt, f"a bucket whose `object` is {bucket.object!r}")
            yield bucket

    def _result(self, stream: Stream, task: Task, bucket: Bucket, raw: dict[str, Any]) -> _Result:
        when = _utc(bucket.start_time)
        kind = raw.get("object")
        if kind is None:
            raise self._fail(stream, task, when, "a result whose field `object` is missing or null")
        if kind != stream.object:
            raise self._fail(stream, task, when, f"an unexpected result object {kind!r} (expected {stream.object!r})")
        try:
            result = stream.result.model_validate(raw)
        except ValidationError as exc:
            raise self._fail(stream, task, when, _describe(exc, "result")) from None
        unknown = sorted(k for k, v in (result.model_extra or {}).items() if v is not None)
        if unknown and self.strict:
            raise self._fail(
                stream, task, when,
                f"an unknown field `{unknown[0]}` in a result (it may be a new dimension that would merge "
                "distinct rows; upgrade tallybook, or set TALLYBOOK_STRICT_SCHEMA=false to ignore unknown fields)",
            )
        if task.stream in TOKEN_STREAMS and getattr(result, "model", None) is None and _has_usage(result):
            raise self._fail(stream, task, when, "a result with usage whose field `model` is null")
        return result

    def _usage(self, task: Task, start: datetime, stream: Stream, r: _Result) -> UsageRecord:
        record = UsageRecord(
            source=self.source, stream=task.stream, bucket_start=start, bucket_width=task.bucket_width,
            provider=self.provider, project=r.project_id,
        )
        if isinstance(r, _ModelResult):
            record.model, record.api_key, record.user = r.model, r.api_key_id, r.user_id
            record.requests = r.num_model_requests
        if isinstance(r, CompletionsResult):
            cached = r.input_cached_tokens or 0
            writes = r.input_cache_write_tokens or 0
            uncached = r.input_uncached_tokens
            record.input_tokens = uncached if uncached is not None else r.input_tokens - cached - writes
            record.cache_read_tokens = cached
            record.cache_write_5m_tokens = writes
            record.output_tokens = r.output_tokens
            record.audio_input_tokens = r.input_audio_tokens or 0
            record.audio_output_tokens = r.output_audio_tokens or 0
            record.batch, record.service_tier = r.batch, r.service_tier
        elif isinstance(r, EmbeddingsResult):
            record.input_tokens = r.input_tokens
        elif stream.unit and stream.quantity_field:
            record.unit = stream.unit
            record.quantity = getattr(r, stream.quantity_field)
            if isinstance(r, ImagesResult) and (r.source or r.size):
                record.detail = f"{r.source or ''}/{r.size or ''}"
        return record

    def _cost(self, task: Task, start: datetime, r: CostsResult) -> CostRecord:
        model = token_type = None
        if r.line_item and ", " in r.line_item:
            model, token_type = r.line_item.split(", ", 1)
        return CostRecord(
            source=self.source, stream=task.stream, bucket_start=start, bucket_width=task.bucket_width,
            provider=self.provider, amount=r.amount.value, currency=r.amount.currency.upper(),
            model=model, project=r.project_id, api_key=r.api_key_id, line_item=r.line_item,
            token_type=token_type, quantity=r.quantity, quantity_unit=r.quantity_unit,
        )


def _has_usage(result: _Result) -> bool:
    return any(isinstance(v, int) and not isinstance(v, bool) and v for v in result.model_dump().values())


def _describe(exc: ValidationError, where: str) -> str:
    """The first validation problem as 'a result whose field `x` is ...'."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or where
    if error["type"] == "missing":
        state = "is missing"
    elif error.get("input") is None:
        state = "is null"
    else:
        state = f"has the wrong type ({type(error['input']).__name__})"
    return f"a {where} whose field `{field}` {state}"
