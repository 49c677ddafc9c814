"""A faithful fake of OpenAI's organization Usage, Costs and name-lookup APIs (provider-apis.md §1).

The data is a seeded organisation (4 projects, 6 users, 8 API keys) whose atomic
usage rows carry a minute timestamp, so 1m/1h/1d buckets all aggregate the same
rows. Each day's rows come from `random.Random(f"{seed}-{date}")` alone: two fakes
built at different times agree on every day they share. Rows at or after `now`
are never served. Costs are derived from the rows with a fixed price table and
booked at the day's UTC midnight, one canonical row per day/project/API key/line
item, rounded to 6 decimal places before any sum, so a client's sum of served
amounts equals `expected_costs` exactly.

Decisions where the reference is silent:
- A bucket's `end_time` is the next width boundary even past `end_time`; only rows
  before `end_time` (and before `now`) are counted. Without `end_time` the range ends at `now`.
- `shape="minimal"` serves the pre-2026-07 completions fields and the pre-2025 cost
  fields; cache writes then hide inside `input_tokens`, and `expected_usage` counts them as input.
- `expected_usage` is keyed by model, `None` for vector stores and code interpreter;
  `storage_bytes` is a plain sum over rows (one row per project per day).
"""

from __future__ import annotations

import base64
import bisect
import random
import string
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tallybook.fakes.faults import FaultInjector

DAY = 86400
WIDTHS = {"1m": 60, "1h": 3600, "1d": DAY}
LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}  # (default, max) buckets per page
COST_LIMITS = (7, 180)
SIX_PLACES = Decimal("0.000001")
MILLION = Decimal(1_000_000)

MINIMAL_COMPLETIONS = (
    "input_tokens",
    "output_tokens",
    "input_cached_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "num_model_requests",
)
EXTENDED_COMPLETIONS = MINIMAL_COMPLETIONS + (
    "input_cache_write_tokens",
    "input_uncached_tokens",
    "input_text_tokens",
    "output_text_tokens",
    "input_cached_text_tokens",
    "input_cached_audio_tokens",
    "input_image_tokens",
    "input_cached_image_tokens",
    "output_image_tokens",
)
PEOPLE_DIMS = ("project_id", "user_id", "api_key_id", "model")
FILTERS = {
    "project_ids": "project_id",
    "user_ids": "user_id",
    "api_key_ids": "api_key_id",
    "models": "model",
    "sources": "source",
    "sizes": "size",
}
IMAGE_SOURCES = ("image.generation", "image.edit", "image.variation")
IMAGE_SIZES = ("256x256", "512x512", "1024x1024", "1792x1792", "1024x1792")


@dataclass(frozen=True)
class Endpoint:
    name: str
    dims: tuple[str, ...]  # the group_by values, and the dimension fields every result carries
    filters: tuple[str, ...]
    measures: tuple[str, ...]

    @property
    def object(self) -> str:
        return f"organization.usage.{self.name}.result"


ENDPOINTS = {
    e.name: e
    for e in (
        Endpoint(
            "completions",
            PEOPLE_DIMS + ("batch", "service_tier"),
            ("project_ids", "user_ids", "api_key_ids", "models", "batch"),
            EXTENDED_COMPLETIONS,
        ),
        Endpoint("embeddings", PEOPLE_DIMS, tuple(FILTERS)[:4], ("input_tokens", "num_model_requests")),
        Endpoint("moderations", PEOPLE_DIMS, tuple(FILTERS)[:4], ("input_tokens", "num_model_requests")),
        Endpoint("images", PEOPLE_DIMS + ("size", "source"), tuple(FILTERS), ("images", "num_model_requests")),
        Endpoint("audio_speeches", PEOPLE_DIMS, tuple(FILTERS)[:4], ("characters", "num_model_requests")),
        Endpoint("audio_transcriptions", PEOPLE_DIMS, tuple(FILTERS)[:4], ("seconds", "num_model_requests")),
        Endpoint("vector_stores", ("project_id",), ("project_ids",), ("usage_bytes",)),
        Endpoint("code_interpreter_sessions", ("project_id",), ("project_ids",), ("num_sessions",)),
    )
}
COST_DIMS = ("project_id", "line_item", "api_key_id")

# USD per million tokens: input, cached input, output, audio input, audio output.
TOKEN_PRICES = {
    "gpt-4o-2024-08-06": (Decimal("2.50"), Decimal("1.25"), Decimal("10.00"), Decimal(40), Decimal(80)),
    "gpt-4o-mini-2024-07-18": (Decimal("0.15"), Decimal("0.075"), Decimal("0.60"), Decimal(10), Decimal(20)),
    "gpt-4.1-2025-04-14": (Decimal("2.00"), Decimal("0.50"), Decimal("8.00"), Decimal(0), Decimal(0)),
    "o3-mini-2025-01-31": (Decimal("1.10"), Decimal("0.55"), Decimal("4.40"), Decimal(0), Decimal(0)),
    "text-embedding-3-small": (Decimal("0.02"), Decimal(0), Decimal(0), Decimal(0), Decimal(0)),
}
# The demo organisation's negotiated deal: token prices 15 % below list, as an enterprise contract would be.
DEAL = Decimal("0.85")
TIER_FACTOR = {"batch": Decimal("0.5"), "flex": Decimal("0.5"), "priority": Decimal("1.75"), "default": Decimal(1)}
IMAGE_PRICES = {  # USD per image
    ("dall-e-3", "1024x1024"): Decimal("0.040"),
    ("dall-e-3", "1024x1792"): Decimal("0.080"),
    ("dall-e-2", "256x256"): Decimal("0.016"),
    ("dall-e-2", "512x512"): Decimal("0.018"),
}
TTS_PER_MILLION_CHARS = Decimal(15)
WHISPER_PER_SECOND = Decimal("0.0001")
VECTOR_STORE_PER_GIB_DAY = Decimal("0.10")
CODE_INTERPRETER_PER_SESSION = Decimal("0.03")
GIB = Decimal(2**30)

CHAT_MODELS = ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-4.1-2025-04-14", "o3-mini-2025-01-31")
PROJECT_NAMES = ("Default project", "Support assistant", "Search indexing", "Prototype 2024")
USER_NAMES = ("Ada Park", "Ben Osei", "Chloe Martin", "Dev Raman", "Eva Lindqvist", "Femi Adeyemi")


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope."""
    kind = {429: "requests", 500: "server_error", 502: "server_error", 503: "server_error"}.get(
        status, "invalid_request_error"
    )
    if code is None:
        code = {401: "invalid_api_key", 403: "insufficient_permissions", 429: "rate_limit_exceeded"}.get(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class Org:
    projects: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)  # each with "project_id" and "user_id" (None: service account)
    storage_base: dict[str, int] = field(default_factory=dict)


def _ident(rng: random.Random, prefix: str, n: int) -> str:
    return prefix + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _make_org(seed: int) -> Org:
    rng = random.Random(f"{seed}-org")
    org = Org()
    created = 1_704_067_200  # 2024-01-01
    for i, name in enumerate(PROJECT_NAMES):
        archived = i == 3
        org.projects.append(
            {
                "id": _ident(rng, "proj_", 24),
                "object": "organization.project",
                "name": name,
                "created_at": created + i * 86_400 * 7,
                "archived_at": created + 200 * 86_400 if archived else None,
                "status": "archived" if archived else "active",
                "external_key_id": None,
            }
        )
        org.storage_base[org.projects[-1]["id"]] = rng.randint(200, 4000) * 2**20
    for i, name in enumerate(USER_NAMES):
        first = name.split()[0].lower()
        org.users.append(
            {
                "object": "organization.user",
                "id": _ident(rng, "user-", 24),
                "name": name,
                "email": f"{first}@example.com",
                "role": "owner" if i == 0 else "reader",
                "added_at": created + i * 3600,
            }
        )
    for i in range(8):
        project = org.projects[i % 4]
        user = org.users[i] if i < 6 else None
        org.keys.append(
            {
                "id": _ident(rng, "key_", 16),
                "name": f"{project['name'].split()[0].lower()}-{'svc' if user is None else 'dev'}-{i}",
                "project_id": project["id"],
                "user_id": user["id"] if user else None,
                "created_at": created + i * 86_400,
            }
        )
    return org


def _ts(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp())


def _day_of(ts: int) -> date:
    return datetime.fromtimestamp(ts - ts % DAY, UTC).date()


def _money(value: Decimal) -> Decimal:
    return value.quantize(SIX_PLACES, rounding=ROUND_HALF_EVEN)


def _number(value: Decimal | int) -> float | int:
    return value if isinstance(value, int) else float(value)


class OpenAIAdminFake:
    def __init__(
        self,
        *,
        seed: int = 7,
        days: int = 120,
        now: datetime | None = None,
        admin_keys: Iterable[str] = ("sk-admin-demo-openai-0000000000000000",),
        forbidden_keys: Iterable[str] = (),
        shape: str = "extended",
    ) -> None:
        if shape not in ("extended", "minimal"):
            raise ValueError("shape must be 'extended' or 'minimal'")
        self.seed = seed
        self.days = days
        self.fixed_now = now
        self.admin_keys = frozenset(admin_keys)
        self.forbidden_keys = frozenset(forbidden_keys)
        self.shape = shape
        self.org = _make_org(seed)
        self.faults = FaultInjector(error_body=lambda status, message: error_body(status, message))
        self._rows: dict[date, dict[str, tuple[list[int], list[dict[str, Any]]]]] = {}
        self._costs: dict[int, list[dict[str, Any]]] = {}
        self._app: Starlette | None = None

    # -- the data -------------------------------------------------------------------------------

    def now_ts(self) -> int:
        now = self.fixed_now or datetime.now(UTC).replace(tzinfo=None)
        return _ts(now)

    def first_ts(self) -> int:
        now = self.now_ts()
        return now - now % DAY - self.days * DAY

    def day_rows(self, day: date) -> dict[str, tuple[list[int], list[dict[str, Any]]]]:
        """Every atomic row of one UTC day, per endpoint, sorted by timestamp (with the timestamps apart)."""
        cached = self._rows.get(day)
        if cached is None:
            rows = self._generate(day)
            cached = {}
            for name, items in rows.items():
                items.sort(key=lambda r: r["ts"])
                cached[name] = ([r["ts"] for r in items], items)
            self._rows[day] = cached
        return cached

    def _generate(self, day: date) -> dict[str, list[dict[str, Any]]]:
        rng = random.Random(f"{self.seed}-{day.isoformat()}")
        base = _ts(datetime(day.year, day.month, day.day))
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in ENDPOINTS}

        def stamp() -> int:
            return base + rng.randrange(1440) * 60

        def who() -> dict[str, Any]:
            key = rng.choice(self.org.keys)
            return {"project_id": key["project_id"], "user_id": key["user_id"], "api_key_id": key["id"]}

        for _ in range(rng.randint(30, 60)):
            rows["completions"].append({"ts": stamp(), **who(), **self._completion(rng)})
        for _ in range(rng.randint(4, 10)):
            n = rng.randint(1, 300)
            rows["embeddings"].append(
                {"ts": stamp(), **who(), "model": "text-embedding-3-small",
                 "input_tokens": n * rng.randint(100, 2000), "num_model_requests": n}
            )
        for _ in range(rng.randint(2, 6)):
            n = rng.randint(1, 200)
            rows["moderations"].append(
                {"ts": stamp(), **who(), "model": "omni-moderation-latest",
                 "input_tokens": n * rng.randint(20, 400), "num_model_requests": n}
            )
        for _ in range(rng.randint(1, 5)):
            model, size = rng.choice(list(IMAGE_PRICES))
            source = "image.generation" if model == "dall-e-3" else rng.choice(IMAGE_SOURCES)
            n = rng.randint(1, 12)
            rows["images"].append(
                {"ts": stamp(), **who(), "model": model, "size": size, "source": source,
                 "images": n * rng.randint(1, 2) if model == "dall-e-2" else n, "num_model_requests": n}
            )
        for _ in range(rng.randint(0, 4)):
            n = rng.randint(1, 20)
            rows["audio_speeches"].append(
                {"ts": stamp(), **who(), "model": "tts-1",
                 "characters": n * rng.randint(40, 900), "num_model_requests": n}
            )
        for _ in range(rng.randint(0, 4)):
            n = rng.randint(1, 15)
            rows["audio_transcriptions"].append(
                {"ts": stamp(), **who(), "model": "whisper-1",
                 "seconds": n * rng.randint(5, 600), "num_model_requests": n}
            )
        for project in self.org.projects[:3]:
            rows["vector_stores"].append(
                {"ts": base, "project_id": project["id"],
                 "usage_bytes": self.org.storage_base[project["id"]] + rng.randint(0, 64 * 2**20)}
            )
        for _ in range(rng.randint(0, 3)):
            rows["code_interpreter_sessions"].append(
                {"ts": stamp(), "project_id": rng.choice(self.org.projects)["id"],
                 "num_sessions": rng.randint(1, 25)}
            )
        return rows

    @staticmethod
    def _completion(rng: random.Random) -> dict[str, Any]:
        model = rng.choices(CHAT_MODELS, weights=(4, 6, 3, 2))[0]
        batch = rng.random() < 0.15
        tier = "default" if batch else rng.choices(("default", "flex", "priority"), weights=(80, 10, 10))[0]
        requests = rng.randint(1, 400 if batch else 120)
        text = requests * rng.randint(200, 3000)
        cached_text = rng.randint(0, text) if rng.random() < 0.5 else 0
        cache_write = rng.randint(0, text // 4) if rng.random() < 0.3 else 0
        audio = model == "gpt-4o-2024-08-06" and rng.random() < 0.2
        audio_in = rng.randint(100, 20_000) if audio else 0
        cached_audio = rng.randint(0, audio_in // 4) if audio else 0
        audio_out = rng.randint(100, 15_000) if audio else 0
        image_in = rng.randint(500, 50_000) if model.startswith("gpt-4.1") and rng.random() < 0.2 else 0
        cached_image = rng.randint(0, image_in // 5) if image_in else 0
        out_text = requests * rng.randint(20, 800)
        cached = cached_text + cached_audio + cached_image
        uncached = text + audio_in + image_in
        return {
            "model": model,
            "batch": batch,
            "service_tier": tier,
            "input_tokens": uncached + cached + cache_write,
            "output_tokens": out_text + audio_out,
            "input_cached_tokens": cached,
            "input_audio_tokens": audio_in,
            "output_audio_tokens": audio_out,
            "num_model_requests": requests,
            "input_cache_write_tokens": cache_write,
            "input_uncached_tokens": uncached,
            "input_text_tokens": text,
            "output_text_tokens": out_text,
            "input_cached_text_tokens": cached_text,
            "input_cached_audio_tokens": cached_audio,
            "input_image_tokens": image_in,
            "input_cached_image_tokens": cached_image,
            "output_image_tokens": 0,
        }

    def rows(self, endpoint: str, start: int, end: int) -> Iterable[dict[str, Any]]:
        """Atomic rows of one endpoint with start <= ts < end, never at or after `now`."""
        end = min(end, self.now_ts())
        start = max(start, self.first_ts())
        if start >= end:
            return
        day = start - start % DAY
        while day < end:
            stamps, items = self.day_rows(_day_of(day))[endpoint]
            yield from items[bisect.bisect_left(stamps, start) : bisect.bisect_left(stamps, end)]
            day += DAY

    def cost_rows(self, day_start: int) -> list[dict[str, Any]]:
        """The canonical cost rows of one day (amounts already rounded), from the rows served so far."""
        cached = self._costs.get(day_start)
        if cached is None:
            cached = self._cost_rows(day_start)
            if day_start + DAY <= self.now_ts():  # a day still under way changes as `now` moves
                self._costs[day_start] = cached
        return cached

    def _cost_rows(self, day_start: int) -> list[dict[str, Any]]:
        groups: dict[tuple[str | None, str | None, str], list[Any]] = {}

        def add(row: dict[str, Any], line_item: str, quantity: Decimal | int, price: Decimal, unit: str) -> None:
            if not quantity:
                return
            slot = groups.setdefault((row["project_id"], row.get("api_key_id"), line_item), [Decimal(0), 0, unit])
            slot[0] += price * quantity
            slot[1] += quantity

        next_day = day_start + DAY
        for row in self.rows("completions", day_start, next_day):
            model = row["model"]
            p_in, p_cached, p_out, p_ain, p_aout = (p * DEAL / MILLION for p in TOKEN_PRICES[model])
            factor = TIER_FACTOR["batch" if row["batch"] else row["service_tier"]]
            plain_in = row["input_text_tokens"] + row["input_image_tokens"] + row["input_cache_write_tokens"]
            add(row, f"{model}, input", plain_in, p_in * factor, "tokens")
            add(row, f"{model}, cached input", row["input_cached_tokens"], p_cached * factor, "tokens")
            add(row, f"{model}, output", row["output_text_tokens"], p_out * factor, "tokens")
            add(row, f"{model}, audio input", row["input_audio_tokens"], p_ain * factor, "tokens")
            add(row, f"{model}, audio output", row["output_audio_tokens"], p_aout * factor, "tokens")
        for row in self.rows("embeddings", day_start, next_day):
            add(row, f"{row['model']}, input", row["input_tokens"], TOKEN_PRICES[row["model"]][0] * DEAL / MILLION,
                "tokens")
        for row in self.rows("images", day_start, next_day):
            add(row, f"{row['model']}, images", row["images"], IMAGE_PRICES[row["model"], row["size"]], "images")
        for row in self.rows("audio_speeches", day_start, next_day):
            add(row, f"{row['model']}, characters", row["characters"], TTS_PER_MILLION_CHARS / MILLION, "characters")
        for row in self.rows("audio_transcriptions", day_start, next_day):
            add(row, f"{row['model']}, seconds", row["seconds"], WHISPER_PER_SECOND, "duration_seconds")
        for row in self.rows("vector_stores", day_start, next_day):
            gib_hours = _money(Decimal(row["usage_bytes"]) / GIB * 24)
            add(row, "vector store storage", gib_hours, VECTOR_STORE_PER_GIB_DAY / 24, "gibibyte_hours")
        for row in self.rows("code_interpreter_sessions", day_start, next_day):
            add(row, "code interpreter sessions", row["num_sessions"], CODE_INTERPRETER_PER_SESSION, "sessions")
        return [
            {"ts": day_start, "project_id": project, "api_key_id": key, "line_item": item,
             "amount": _money(amount), "quantity": quantity, "quantity_unit": unit}
            for (project, key, item), (amount, quantity, unit) in sorted(groups.items(), key=lambda kv: str(kv[0]))
        ]

    # -- ground truth for tests -----------------------------------------------------------------

    def expected_usage(self, start: datetime, end: datetime) -> dict[str | None, dict[str, Any]]:
        """What a sync of [start, end) must store, per model, in tallybook's measure names."""
        out: dict[str | None, dict[str, Any]] = {}
        units = {"images": "images", "audio_speeches": "characters", "audio_transcriptions": "seconds",
                 "vector_stores": "storage_bytes", "code_interpreter_sessions": "sessions"}
        fields = {"images": "images", "audio_speeches": "characters", "audio_transcriptions": "seconds",
                  "vector_stores": "usage_bytes", "code_interpreter_sessions": "num_sessions"}
        for name in ENDPOINTS:
            for row in self.rows(name, _ts(start), _ts(end)):
                slot = out.setdefault(row.get("model"), empty_usage())
                slot["requests"] += row.get("num_model_requests", 0)
                if name == "completions":
                    writes = row["input_cache_write_tokens"]
                    extended = self.shape == "extended"
                    slot["input_tokens"] += row["input_uncached_tokens"] + (0 if extended else writes)
                    slot["cache_read_tokens"] += row["input_cached_tokens"]
                    slot["cache_write_5m_tokens"] += writes if extended else 0
                    slot["output_tokens"] += row["output_tokens"]
                    slot["audio_input_tokens"] += row["input_audio_tokens"]
                    slot["audio_output_tokens"] += row["output_audio_tokens"]
                elif name in ("embeddings", "moderations"):
                    slot["input_tokens"] += row["input_tokens"]
                else:
                    quantities = slot["quantities"]
                    quantities[units[name]] = quantities.get(units[name], 0) + row[fields[name]]
        return out

    def expected_costs(self, start: datetime, end: datetime) -> dict[str, Decimal]:
        """Total USD per line item over the days whose midnight lies in [start, end)."""
        totals: dict[str, Decimal] = {}
        day = max(_ts(start), self.first_ts())
        day += -day % DAY
        while day < _ts(end) and day < self.now_ts():
            for row in self.cost_rows(day):
                totals[row["line_item"]] = totals.get(row["line_item"], Decimal(0)) + row["amount"]
            day += DAY
        return totals

    # -- the HTTP API ---------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        if self._app is None:
            routes = [
                Route(f"/v1/organization/usage/{name}", self._handler(self._usage_page(name)))
                for name in ENDPOINTS
            ]
            routes += [
                Route("/v1/organization/costs", self._handler(self._costs_page)),
                Route("/v1/organization/projects", self._handler(self._projects)),
                Route("/v1/organization/users", self._handler(self._users)),
                Route("/v1/organization/projects/{project_id}/api_keys", self._handler(self._api_keys)),
            ]
            self._app = Starlette(routes=routes + self.faults.routes())
        return self._app

    def _handler(self, build: Callable[[Request], dict[str, Any]]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            early = self.faults.before(request)
            if early is not None:
                self.faults.log(request, early.status_code)
                return early
            try:
                self._authorize(request)
                body = build(request)
            except ApiError as exc:
                self.faults.log(request, exc.status)
                return JSONResponse(error_body(exc.status, exc.message, exc.param, exc.code), exc.status)
            body = self.faults.after(request, body)
            self.faults.log(request, 200)
            return JSONResponse(body)

        return handle

    def _authorize(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not key:
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if key in self.forbidden_keys:
            raise ApiError(403, "You have insufficient permissions for this operation. "
                           "Missing scopes: api.usage.read. Use an organization admin key.")
        if key not in self.admin_keys:
            raise ApiError(401, "Incorrect API key provided. You can find your admin keys at "
                           "https://platform.openai.com/settings/organization/admin-keys.")

    def _usage_page(self, name: str) -> Callable[[Request], dict[str, Any]]:
        endpoint = ENDPOINTS[name]

        def build(request: Request) -> dict[str, Any]:
            q = request.query_params
            width = q.get("bucket_width", "1d")
            if width not in WIDTHS:
                raise ApiError(400, f"Invalid value for 'bucket_width': {width!r}. Expected one of '1m', '1h', '1d'.",
                               param="bucket_width")
            limit = _limit(q.get("limit"), *LIMITS[width])
            group_by = _group_by(request, endpoint.dims)
            filters = _filters(request, endpoint.filters)
            measures = endpoint.measures
            if name == "completions" and self.shape == "minimal":
                measures = MINIMAL_COMPLETIONS
            return self._page(request, WIDTHS[width], limit, lambda s, e: self._usage_results(
                endpoint, measures, group_by, filters, s, e))

        return build

    def _usage_results(
        self, endpoint: Endpoint, measures: tuple[str, ...], group_by: list[str],
        filters: Callable[[dict[str, Any]], bool], start: int, end: int,
    ) -> list[dict[str, Any]]:
        groups: dict[tuple[Any, ...], dict[str, int]] = {}
        for row in self.rows(endpoint.name, start, end):
            if not filters(row):
                continue
            sums = groups.setdefault(tuple(row[d] for d in group_by), dict.fromkeys(measures, 0))
            for m in measures:
                sums[m] += row[m]
        results = []
        for key, sums in sorted(groups.items(), key=lambda kv: str(kv[0])):
            result: dict[str, Any] = {"object": endpoint.object, **sums}
            result.update({d: None for d in endpoint.dims})
            result.update(zip(group_by, key))
            results.append(result)
        return results

    def _costs_page(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        if q.get("bucket_width", "1d") != "1d":
            raise ApiError(400, f"Invalid value for 'bucket_width': {q.get('bucket_width')!r}. "
                           "The costs endpoint only supports '1d'.", param="bucket_width")
        limit = _limit(q.get("limit"), *COST_LIMITS)
        group_by = _group_by(request, COST_DIMS)
        filters = _filters(request, ("project_ids", "api_key_ids"))
        minimal = self.shape == "minimal"

        def results(start: int, end: int) -> list[dict[str, Any]]:
            groups: dict[tuple[Any, ...], list[Any]] = {}
            day = max(start, self.first_ts())
            day += -day % DAY
            while day < min(end, self.now_ts()):
                for row in self.cost_rows(day):
                    if filters(row):
                        slot = groups.setdefault(tuple(row[d] for d in group_by), [Decimal(0), 0, row["quantity_unit"]])
                        slot[0] += row["amount"]
                        slot[1] += row["quantity"]
                day += DAY
            out = []
            for key, (amount, quantity, unit) in sorted(groups.items(), key=lambda kv: str(kv[0])):
                by_item = "line_item" in group_by
                result = {"object": "organization.costs.result",
                          "amount": {"value": float(amount), "currency": "usd"},
                          "line_item": None, "project_id": None, "api_key_id": None,
                          "quantity": _number(quantity) if by_item else None,
                          "quantity_unit": unit if by_item else None}
                result.update(zip(group_by, key))
                if minimal:
                    for extra in ("api_key_id", "quantity", "quantity_unit"):
                        result.pop(extra)
                out.append(result)
            return out

        return self._page(request, DAY, limit, results)

    def _page(
        self, request: Request, width: int, limit: int, results: Callable[[int, int], list[dict[str, Any]]]
    ) -> dict[str, Any]:
        q = request.query_params
        start = _int_param(q, "start_time", required=True)
        assert start is not None
        end = _int_param(q, "end_time", required=False)
        if end is None:
            end = max(self.now_ts(), start)
        elif end <= start:
            raise ApiError(400, "'end_time' must be greater than 'start_time'.", param="end_time")
        cursor = start
        if q.get("page"):
            cursor = _decode_page(q["page"], start, end)
        buckets: list[dict[str, Any]] = []
        while cursor < end and len(buckets) < limit:
            stop = (cursor // width + 1) * width
            buckets.append({"object": "bucket", "start_time": cursor, "end_time": stop,
                            "results": results(cursor, min(stop, end))})
            cursor = stop
        has_more = cursor < end
        return {"object": "page", "data": buckets, "has_more": has_more,
                "next_page": _encode_page(cursor, end) if has_more else None}

    # -- name lookups ---------------------------------------------------------------------------

    def _projects(self, request: Request) -> dict[str, Any]:
        archived = request.query_params.get("include_archived", "false").lower() == "true"
        items = [p for p in self.org.projects if archived or p["status"] == "active"]
        return _list_page(request, items)

    def _users(self, request: Request) -> dict[str, Any]:
        emails = set(_array(request, "emails"))
        return _list_page(request, [u for u in self.org.users if not emails or u["email"] in emails])

    def _api_keys(self, request: Request) -> dict[str, Any]:
        project_id = request.path_params["project_id"]
        if not any(p["id"] == project_id for p in self.org.projects):
            raise ApiError(404, f"No such project: {project_id}.", param="project_id", code="not_found")
        users = {u["id"]: u for u in self.org.users}
        items = []
        for key in self.org.keys:
            if key["project_id"] != project_id:
                continue
            user = users.get(key["user_id"])
            owner: dict[str, Any] = (
                {"type": "user", "user": {"id": user["id"], "name": user["name"], "email": user["email"],
                                          "role": "owner", "created_at": user["added_at"]}}
                if user
                else {"type": "service_account", "service_account": {
                    "id": "svc_acct_" + key["id"][4:], "name": key["name"], "created_at": key["created_at"],
                    "role": "member"}}
            )
            items.append({"object": "organization.project.api_key", "redacted_value": "sk-proj-****" + key["id"][-4:],
                          "name": key["name"], "created_at": key["created_at"], "last_used_at": None,
                          "id": key["id"], "owner_project_access": "active", "owner": owner})
        return _list_page(request, items)


def empty_usage() -> dict[str, Any]:
    measures: dict[str, Any] = dict.fromkeys(
        ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "output_tokens",
         "audio_input_tokens", "audio_output_tokens", "requests"), 0)
    measures["quantities"] = {}
    return measures


def _array(request: Request, name: str) -> list[str]:
    q = request.query_params
    return q.getlist(name) + q.getlist(f"{name}[]")


def _int_param(q: Any, name: str, *, required: bool) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        if required:
            raise ApiError(400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid value for '{name}': expected an integer, got {raw!r}.", param=name) from None


def _limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise ApiError(400, f"Invalid value for 'limit': {raw!r}. It must be between 1 and {maximum}.", param="limit")
    return value


def _group_by(request: Request, allowed: tuple[str, ...]) -> list[str]:
    chosen: list[str] = []
    for value in _array(request, "group_by"):
        if value not in allowed:
            raise ApiError(400, f"Invalid value for 'group_by': {value!r}. Expected any of "
                           + ", ".join(repr(a) for a in allowed) + ".", param="group_by")
        if value not in chosen:
            chosen.append(value)
    return chosen


def _filters(request: Request, names: tuple[str, ...]) -> Callable[[dict[str, Any]], bool]:
    wanted: dict[str, set[Any]] = {}
    for name in names:
        if name == "batch":
            raw = request.query_params.get("batch")
            if raw is not None:
                if raw.lower() not in ("true", "false"):
                    raise ApiError(400, f"Invalid value for 'batch': {raw!r}. Expected true or false.", param="batch")
                wanted["batch"] = {raw.lower() == "true"}
            continue
        values = _array(request, name)
        allowed = {"sources": IMAGE_SOURCES, "sizes": IMAGE_SIZES}.get(name)
        for v in values:
            if allowed and v not in allowed:
                raise ApiError(400, f"Invalid value for '{name}': {v!r}.", param=name)
        if values:
            wanted[FILTERS[name]] = set(values)
    return lambda row: all(row.get(f) in vs for f, vs in wanted.items())


def _encode_page(cursor: int, end: int) -> str:
    return "page_" + base64.b64encode(struct.pack(">QQ", cursor, end)).decode()


def _decode_page(token: str, start: int, end: int) -> int:
    try:
        cursor, _ = struct.unpack(">QQ", base64.b64decode(token.removeprefix("page_"), validate=True))
    except (ValueError, struct.error):
        cursor = -1
    if not start < cursor < end:
        raise ApiError(400, f"Invalid value for 'page': {token!r}. Pass the `next_page` of the previous response "
                       "with the same start_time and end_time.", param="page")
    return int(cursor)


def _list_page(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    limit = _limit(request.query_params.get("limit"), 20, 100)
    after = request.query_params.get("after")
    if after:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise ApiError(400, f"Invalid value for 'after': no object with id {after!r}.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}


def serve(port: int = 8787, **options: Any) -> None:
    """Run the fake in the foreground: `python -m tallybook.fakes.openai_admin`."""
    import uvicorn

    uvicorn.run(OpenAIAdminFake(**options).app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    serve()
