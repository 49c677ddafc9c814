"""A faithful fake of Anthropic's Admin API: usage report, cost report and the org lists.

Follows shared/reference/provider-apis.md sections 3.1-3.3 and 3.5:

    GET /v1/organizations/usage_report/messages   buckets of token usage, RFC 3339 times, bracket arrays
    GET /v1/organizations/cost_report             daily buckets of cost items, amounts as cent strings
    GET /v1/organizations/workspaces|api_keys|users   after_id/before_id lists
    GET /v1/organizations/usage_report/claude_code    Claude Code analytics (3.4; claude_code_admin.py)

The data is a seeded organisation: every day's atomic rows come from (seed, date) alone,
so two fakes built at different times agree on any day they share. `expected_usage` and
`expected_costs` aggregate those rows directly, as ground truth for tests.
"""

from __future__ import annotations

import base64
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tallybook.fakes.claude_code_admin import ClaudeCodeReport
from tallybook.fakes.faults import FaultInjector

WIDTHS = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
LIMITS = {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}  # (default, max) buckets per page
USAGE_GROUPS = (
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "speed",
    "account_id",
    "service_account_id",
)
COST_GROUPS = ("workspace_id", "description")
ENUMS = {
    "service_tiers": {"standard", "batch", "priority", "priority_on_demand", "flex", "flex_discount"},
    "context_window": {"0-200k", "200k-1M"},
    "inference_geos": {"global", "us", "not_available"},
    "speeds": {"standard", "fast"},
}
# filter parameter -> row attribute
FILTERS = {
    "api_key_ids": "api_key_id",
    "workspace_ids": "workspace_id",
    "models": "model",
    "account_ids": "account_id",
    "service_account_ids": "service_account_id",
    "service_tiers": "service_tier",
    "context_window": "context_window",
    "inference_geos": "inference_geo",
    "speeds": "speed",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}

# Model -> (display name, base input $/MTok, output $/MTok). Cache multipliers apply to the input price.
PRICES: dict[str, tuple[str, Decimal, Decimal]] = {
    "claude-sonnet-4-20250514": ("Claude Sonnet 4", Decimal(3), Decimal(15)),
    "claude-opus-4-1-20250805": ("Claude Opus 4.1", Decimal(15), Decimal(75)),
    "claude-haiku-4-5-20251001": ("Claude Haiku 4.5", Decimal(1), Decimal(5)),
    "claude-3-5-haiku-20241022": ("Claude Haiku 3.5", Decimal("0.80"), Decimal(4)),
}
# token_type -> (row attribute, description suffix, multiplier of the input price; None = output price)
TOKEN_TYPES: dict[str, tuple[str, str, Decimal | None]] = {
    "uncached_input_tokens": ("uncached", "Input Tokens", Decimal(1)),
    "output_tokens": ("output", "Output Tokens", None),
    "cache_read_input_tokens": ("cache_read", "Cache Read Input Tokens", Decimal("0.1")),
    "cache_creation.ephemeral_5m_input_tokens": ("cache_5m", "5m Cache Write Input Tokens", Decimal("1.25")),
    "cache_creation.ephemeral_1h_input_tokens": ("cache_1h", "1h Cache Write Input Tokens", Decimal(2)),
}
WEB_SEARCH_CENTS = Decimal(1)  # $10 per 1,000 searches
CODE_EXECUTION_CENTS_PER_HOUR = Decimal(5)
CENT_PLACES = Decimal("0.00001")
# The demo organisation's negotiated deal: token prices 10 % below list.
DEAL = Decimal("0.90")


@dataclass(frozen=True, slots=True)
class Row:
    """One atomic usage row: a minute, every dimension, every measure."""

    at: datetime
    api_key_id: str | None
    workspace_id: str | None
    model: str
    service_tier: str
    context_window: str
    inference_geo: str
    account_id: str | None
    uncached: int
    cache_5m: int
    cache_1h: int
    cache_read: int
    output: int
    web_search: int
    service_account_id: str | None = None
    speed: str = "standard"


@dataclass(frozen=True, slots=True)
class CostItem:
    workspace_id: str | None
    description: str
    amount: Decimal  # cents, at most 5 decimals
    cost_type: str
    model: str | None = None
    token_type: str | None = None
    service_tier: str | None = None
    context_window: str | None = None
    inference_geo: str | None = None


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(name: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(400, f"{name}: invalid RFC 3339 timestamp {value!r}") from None
    if "T" not in value.upper() or moment.tzinfo is None:
        raise BadRequest(400, f"{name}: RFC 3339 timestamp with a time and offset required, got {value!r}")
    return moment.astimezone(UTC).replace(tzinfo=None)


def floor(moment: datetime, width: str) -> datetime:
    if width == "1d":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if width == "1h":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(second=0, microsecond=0)


def ceil(moment: datetime, width: str) -> datetime:
    low = floor(moment, width)
    return low if low == moment else low + WIDTHS[width]


def _ident(rng: random.Random, prefix: str) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghijkmnopqrstuvwxyz"
    return prefix + "".join(rng.choice(alphabet) for _ in range(22))


def _amount_text(cents: Decimal) -> str:
    return format(cents.quantize(CENT_PLACES).normalize(), "f")


class AnthropicAdminFake:
    """A seeded Anthropic organisation served over the Admin API. `app` is the Starlette app."""

    def __init__(
        self,
        *,
        seed: int = 7,
        days: int = 120,
        now: datetime | None = None,
        admin_keys: Iterable[str] = ("sk-ant-admin01-demo-0000000000000000",),
        forbidden_keys: Iterable[str] = (),
    ) -> None:
        self.seed = seed
        self.now = now or datetime.now(UTC).replace(tzinfo=None)
        self.data_start = floor(self.now, "1d") - timedelta(days=days)
        self.admin_keys = frozenset(admin_keys)
        self.forbidden_keys = frozenset(forbidden_keys)
        self.faults = FaultInjector(error_body=error_body)
        self._days: dict[date, tuple[list[Row], list[CostItem]]] = {}
        self._build_org()
        self.claude_code = ClaudeCodeReport(  # 3.4, its data and handler in claude_code_admin.py
            seed=seed, now=self.now, data_start=self.data_start, bad_request=BadRequest,
            users=[u["email"] for u in self.users if u["role"] != "billing"],
            api_keys=["default-scripts", "research-evals"])
        self._app: Starlette | None = None

    # -- the organisation -------------------------------------------------------------------------

    def _build_org(self) -> None:
        rng = random.Random(f"{self.seed}-org")
        created = datetime(2024, 3, 4, 9, 0)
        names = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Edsger Dijkstra",
                 "Barbara Liskov"]  # fmt: skip
        roles = ["admin", "developer", "developer", "user", "billing", "claude_code_user"]
        self.users: list[dict[str, Any]] = [
            {
                "id": _ident(rng, "user_01"),
                "type": "user",
                "email": name.lower().replace(" ", ".") + "@example.com",
                "name": name,
                "role": role,
                "added_at": rfc3339(created + timedelta(days=3 * i)),
            }
            for i, (name, role) in enumerate(zip(names, roles, strict=True))
        ]
        ws_names = [("Production", "#6C5BB9"), ("Research", "#2E8B57"), ("Support bot", "#D2691E"),
                    ("Legacy", "#808080")]  # fmt: skip
        self.workspaces: list[dict[str, Any]] = [
            {
                "id": _ident(rng, "wrkspc_01"),
                "type": "workspace",
                "name": name,
                "created_at": rfc3339(created + timedelta(days=10 * i)),
                "archived_at": rfc3339(datetime(2025, 1, 15)) if name == "Legacy" else None,
                "display_color": color,
                "data_residency": {
                    "allowed_inference_geos": "unrestricted",
                    "default_inference_geo": "global",
                    "workspace_geo": "us",
                },
            }
            for i, (name, color) in enumerate(ws_names)
        ]
        ws = [w["id"] for w in self.workspaces]
        # (name, workspace, owner index, status); None workspace = the default workspace
        key_specs = [
            ("prod-api", ws[0], 0, "active"),
            ("prod-batch", ws[0], 1, "active"),
            ("prod-eu-fallback", ws[0], 1, "active"),
            ("research-notebooks", ws[1], 2, "active"),
            ("research-evals", ws[1], 3, "active"),
            ("support-bot", ws[2], 4, "active"),
            ("default-scripts", None, 5, "active"),
            ("legacy-importer", ws[3], 0, "archived"),
        ]
        self.api_keys: list[dict[str, Any]] = []
        for i, (name, workspace, owner, status) in enumerate(key_specs):
            user = self.users[owner]
            self.api_keys.append(
                {
                    "id": _ident(rng, "apikey_01"),
                    "type": "api_key",
                    "name": name,
                    "created_at": rfc3339(created + timedelta(days=12 + 5 * i)),
                    "created_by": {"id": user["id"], "type": "user"},
                    "expires_at": None,
                    "partial_key_hint": "sk-ant-api03-" + _ident(rng, "")[:3] + "..." + _ident(rng, "")[:4],
                    "status": status,
                    "workspace_id": workspace,
                    "principal": {"id": user["id"], "type": "user"},
                }
            )
        self._active_keys = [k for k in self.api_keys if k["status"] == "active"]
        self._active_ws: list[str | None] = [w["id"] for w in self.workspaces if not w["archived_at"]]

    # -- the data ---------------------------------------------------------------------------------

    def _generate_day(self, day: date) -> tuple[list[Row], list[tuple[datetime, str | None, Decimal]]]:
        """Every row of `day` (all 1440 minutes) and its code-execution sessions, from (seed, day) only."""
        rng = random.Random(f"{self.seed}-{day.isoformat()}")
        midnight = datetime(day.year, day.month, day.day)
        models = list(PRICES)
        rows: list[Row] = []
        for _ in range(rng.randint(30, 60)):
            at = midnight + timedelta(minutes=rng.randrange(1440))
            if rng.random() < 0.85:
                key = rng.choice(self._active_keys)
                api_key_id, workspace_id = key["id"], key["workspace_id"]
                account_id = key["created_by"]["id"]
            else:  # Console Workbench: no API key
                api_key_id = None
                workspace_id = rng.choice([None, *self._active_ws])
                account_id = rng.choice(self.users)["id"]
            model = rng.choices(models, weights=[5, 1, 3, 2])[0]
            tier = rng.choices(["standard", "batch", "priority"], weights=[7, 2, 1])[0]
            long_context = model == "claude-sonnet-4-20250514" and rng.random() < 0.1
            geo = rng.choices(["global", "us"], [4, 1])[0]
            if model.startswith("claude-3"):
                geo = "not_available"
            uncached = rng.randint(210_000, 900_000) if long_context else rng.randint(200, 120_000)
            rows.append(
                Row(
                    at=at,
                    api_key_id=api_key_id,
                    workspace_id=workspace_id,
                    model=model,
                    service_tier=tier,
                    context_window="200k-1M" if long_context else "0-200k",
                    inference_geo=geo,
                    account_id=account_id,
                    uncached=uncached,
                    cache_5m=rng.choice([0, 0, rng.randint(1_000, 40_000)]),
                    cache_1h=rng.choice([0, 0, 0, rng.randint(1_000, 20_000)]),
                    cache_read=rng.choice([0, rng.randint(1_000, 300_000)]),
                    output=rng.randint(50, 16_000),
                    web_search=rng.randint(1, 20) if rng.random() < 0.1 else 0,
                )
            )
        rows.sort(key=lambda r: r.at)
        code_rng = random.Random(f"{self.seed}-{day.isoformat()}-code")
        sessions = [
            (
                midnight + timedelta(minutes=code_rng.randrange(1440)),
                workspace,
                Decimal(code_rng.randint(1, 400)) / 100,  # container hours
            )
            for workspace in self._active_ws
            if code_rng.random() < 0.3
        ]
        return rows, sessions

    def _day(self, day: date) -> tuple[list[Row], list[CostItem]]:
        """The served rows (inside [data_start, now)) and cost items of one day, cached."""
        if day not in self._days:
            midnight = datetime(day.year, day.month, day.day)
            if midnight < self.data_start or midnight >= self.now:
                self._days[day] = ([], [])
            else:
                rows, sessions = self._generate_day(day)
                rows = [r for r in rows if r.at < self.now]
                sessions = [s for s in sessions if s[0] < self.now]
                self._days[day] = (rows, self._cost_items(rows, sessions))
        return self._days[day]

    def _cost_items(
        self, rows: list[Row], sessions: list[tuple[datetime, str | None, Decimal]]
    ) -> list[CostItem]:
        """One item per (workspace, description). Priority Tier is not in the cost report (3.3)."""
        cents: dict[tuple[str | None, str], Decimal] = defaultdict(Decimal)
        meta: dict[tuple[str | None, str], CostItem] = {}
        for row in rows:
            if row.web_search:
                key = (row.workspace_id, "Web Search Usage")
                cents[key] += row.web_search * WEB_SEARCH_CENTS
                meta[key] = CostItem(row.workspace_id, key[1], Decimal(0), "web_search")
            if row.service_tier == "priority":
                continue
            label, input_mtok, output_mtok = PRICES[row.model]
            batch = row.service_tier == "batch"
            long_context = row.context_window == "200k-1M"
            for token_type, (attr, suffix, multiplier) in TOKEN_TYPES.items():
                tokens = getattr(row, attr)
                if not tokens:
                    continue
                if multiplier is None:
                    price = output_mtok * (Decimal("1.5") if long_context else 1)
                else:
                    price = input_mtok * multiplier * (2 if long_context else 1)
                if batch:
                    price /= 2
                price *= DEAL
                description = f"{label}{' Batch' if batch else ''} Usage - {suffix}"
                description += " (Long Context)" if long_context else ""
                description += " (US)" if row.inference_geo == "us" else ""
                key = (row.workspace_id, description)
                cents[key] += tokens * price / 10_000  # $/MTok -> cents per token
                meta[key] = CostItem(
                    row.workspace_id, description, Decimal(0), "tokens", row.model, token_type,
                    row.service_tier, row.context_window, row.inference_geo,
                )  # fmt: skip
        for _, workspace, hours in sessions:
            key = (workspace, "Code Execution Usage")
            cents[key] += hours * CODE_EXECUTION_CENTS_PER_HOUR
            meta[key] = CostItem(workspace, key[1], Decimal(0), "code_execution")
        items: list[CostItem] = []
        for key in sorted(cents, key=lambda k: (k[0] or "", k[1])):
            base = meta[key]
            items.append(
                CostItem(
                    base.workspace_id, base.description, cents[key].quantize(CENT_PLACES), base.cost_type,
                    base.model, base.token_type, base.service_tier, base.context_window, base.inference_geo,
                )
            )
        return items

    def _rows(self, start: datetime, end: datetime) -> Iterable[Row]:
        day = start.date()
        while datetime(day.year, day.month, day.day) < end:
            for row in self._day(day)[0]:
                if start <= row.at < end:
                    yield row
            day += timedelta(days=1)

    # -- ground truth for tests -------------------------------------------------------------------

    def expected_usage(self, start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
        """Per model, in tallybook's measure names, summed from the atomic rows of [start, end)."""
        totals: dict[str, dict[str, Any]] = {}
        for row in self._rows(start, end):
            t = totals.setdefault(
                row.model,
                {
                    "input_tokens": 0,
                    "cache_read_tokens": 0,
                    "cache_write_5m_tokens": 0,
                    "cache_write_1h_tokens": 0,
                    "output_tokens": 0,
                    "requests": 0,  # the usage report has no request count
                    "quantities": {"web_search_requests": 0},
                },
            )
            t["input_tokens"] += row.uncached
            t["cache_read_tokens"] += row.cache_read
            t["cache_write_5m_tokens"] += row.cache_5m
            t["cache_write_1h_tokens"] += row.cache_1h
            t["output_tokens"] += row.output
            t["quantities"]["web_search_requests"] += row.web_search
        return totals

    def expected_costs(self, start: datetime, end: datetime) -> dict[str, Decimal]:
        """Per description, in dollars, for the days starting in [start, end): what the cost report serves."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        day = floor(start, "1d")
        while day < end:
            if day >= start:
                for item in self._day(day.date())[1]:
                    totals[item.description] += item.amount / 100
            day += timedelta(days=1)
        return dict(totals)

    # -- HTTP -------------------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        if self._app is None:
            self._app = Starlette(
                routes=[
                    Route("/v1/organizations/usage_report/messages", self._handler(self._usage_report)),
                    Route("/v1/organizations/cost_report", self._handler(self._cost_report)),
                    Route("/v1/organizations/usage_report/claude_code", self._handler(self.claude_code.respond)),
                    Route("/v1/organizations/workspaces", self._handler(self._workspaces)),
                    Route("/v1/organizations/api_keys", self._handler(self._api_keys)),
                    Route("/v1/organizations/users", self._handler(self._users)),
                    *self.faults.routes(),
                ]
            )
        return self._app

    def _handler(self, build: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            injected = self.faults.before(request)
            if injected is not None:
                self.faults.log(request, injected.status_code)
                return injected
            try:
                self._authenticate(request)
                body = build(request)
            except BadRequest as exc:
                self.faults.log(request, exc.status)
                return JSONResponse(error_body(exc.status, str(exc)), status_code=exc.status)
            body = self.faults.after(request, body)
            self.faults.log(request, 200)
            return JSONResponse(body)

        return endpoint

    def _authenticate(self, request: Request) -> None:
        key = request.headers.get("x-api-key")
        if not key:
            raise BadRequest(401, "x-api-key header is required")
        if key in self.forbidden_keys:
            raise BadRequest(403, "This API key does not have permission to use the Admin API")
        if key not in self.admin_keys:
            raise BadRequest(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise BadRequest(400, "anthropic-version: header is required")

    # usage and cost reports

    def _window(
        self, request: Request, width: str, limit_bounds: tuple[int, int]
    ) -> tuple[list[datetime], str | None]:
        """The buckets of this page and the next page's cursor."""
        q = request.query_params
        if "starting_at" not in q:
            raise BadRequest(400, "starting_at: field required")
        first = floor(parse_rfc3339("starting_at", q["starting_at"]), width)
        ending = q.get("ending_at")
        stop = ceil(parse_rfc3339("ending_at", ending), width) if ending else None
        if stop is not None and stop <= first:
            raise BadRequest(400, "ending_at must be after starting_at")
        default, maximum = limit_bounds
        try:
            limit = int(q.get("limit", default))
        except ValueError:
            raise BadRequest(400, f"limit: must be an integer, got {q.get('limit')!r}") from None
        if not 1 <= limit <= maximum:
            raise BadRequest(400, f"limit: must be between 1 and {maximum} for bucket_width {width}")
        cursor = first
        if "page" in q:
            cursor = _decode_page(q["page"])
            if cursor < first or floor(cursor, width) != cursor:
                raise BadRequest(400, "page: invalid page token for this query")
        last = floor(self.now, width) + WIDTHS[width]  # no bucket starts after now
        stop = min(stop, last) if stop is not None else last
        buckets: list[datetime] = []
        while cursor < stop and len(buckets) < limit:
            buckets.append(cursor)
            cursor += WIDTHS[width]
        more = cursor < stop
        return buckets, (_encode_page(cursor) if more else None)

    def _usage_report(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        width = q.get("bucket_width", "1d")
        if width not in WIDTHS:
            raise BadRequest(400, f"bucket_width: must be one of 1d, 1h, 1m, got {width!r}")
        groups = _list_param(request, "group_by")
        for group in groups:
            if group not in USAGE_GROUPS:
                allowed = ", ".join(USAGE_GROUPS)
                raise BadRequest(400, f"group_by: invalid value {group!r}; allowed: {allowed}")
        filters: dict[str, set[str]] = {}
        for name, attr in FILTERS.items():
            values = _list_param(request, name)
            for value in values:
                if name in ENUMS and value not in ENUMS[name]:
                    raise BadRequest(400, f"{name}[]: invalid value {value!r}")
            if values:
                filters[attr] = set(values)
        buckets, next_page = self._window(request, width, LIMITS[width])
        step = WIDTHS[width]
        data: list[dict[str, Any]] = []
        if buckets:
            grouped: dict[datetime, dict[tuple[Any, ...], list[Row]]] = defaultdict(lambda: defaultdict(list))
            for row in self._rows(buckets[0], buckets[-1] + step):
                if all(getattr(row, attr) in allowed for attr, allowed in filters.items()):
                    key = tuple(getattr(row, g) if g in groups else None for g in USAGE_GROUPS)
                    grouped[floor(row.at, width)][key].append(row)
            for start in buckets:
                results = [
                    _usage_result(key, rows, "speed" in groups)
                    for key, rows in sorted(grouped[start].items(), key=lambda kv: [str(v) for v in kv[0]])
                ]
                data.append(
                    {"starting_at": rfc3339(start), "ending_at": rfc3339(start + step), "results": results}
                )
        return {"data": data, "has_more": next_page is not None, "next_page": next_page}

    def _cost_report(self, request: Request) -> dict[str, Any]:
        width = request.query_params.get("bucket_width", "1d")
        if width != "1d":
            raise BadRequest(400, f"bucket_width: the cost report supports only 1d, got {width!r}")
        groups = _list_param(request, "group_by")
        for group in groups:
            if group not in COST_GROUPS:
                allowed = ", ".join(COST_GROUPS)
                raise BadRequest(400, f"group_by: invalid value {group!r}; allowed: {allowed}")
        buckets, next_page = self._window(request, "1d", (7, 31))
        by_description = "description" in groups
        data: list[dict[str, Any]] = []
        for start in buckets:
            sums: dict[tuple[str | None, str | None], Decimal] = defaultdict(Decimal)
            meta: dict[tuple[str | None, str | None], CostItem] = {}
            for item in self._day(start.date())[1]:
                key = (
                    item.workspace_id if "workspace_id" in groups else None,
                    item.description if by_description else None,
                )
                sums[key] += item.amount
                meta[key] = item
            results: list[dict[str, Any]] = []
            for key in sorted(sums, key=lambda k: (k[0] or "", k[1] or "")):
                item = meta[key]
                results.append(
                    {
                        "amount": _amount_text(sums[key]),
                        "currency": "USD",
                        "cost_type": item.cost_type if by_description else None,
                        "description": key[1],
                        "model": item.model if by_description else None,
                        "service_tier": item.service_tier if by_description else None,
                        "token_type": item.token_type if by_description else None,
                        "context_window": item.context_window if by_description else None,
                        "inference_geo": item.inference_geo if by_description else None,
                        "workspace_id": key[0],
                    }
                )
            data.append({"starting_at": rfc3339(start), "ending_at": rfc3339(start + timedelta(days=1)),
                         "results": results})  # fmt: skip
        return {"data": data, "has_more": next_page is not None, "next_page": next_page}

    # org lists

    def _workspaces(self, request: Request) -> dict[str, Any]:
        archived = request.query_params.get("include_archived", "false").lower() == "true"
        return _page(request, [w for w in self.workspaces if archived or not w["archived_at"]])

    def _api_keys(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        keys = [
            k
            for k in self.api_keys
            if ("status" not in q or k["status"] == q["status"])
            and ("workspace_id" not in q or k["workspace_id"] == q["workspace_id"])
            and ("created_by_user_id" not in q or k["created_by"]["id"] == q["created_by_user_id"])
        ]
        return _page(request, keys)

    def _users(self, request: Request) -> dict[str, Any]:
        email = request.query_params.get("email")
        return _page(request, [u for u in self.users if email is None or u["email"] == email])


def _list_param(request: Request, name: str) -> list[str]:
    """An array parameter in bracket notation (`group_by[]=a`), also accepted bare (`group_by=a`)."""
    q = request.query_params
    return [v for v in q.getlist(f"{name}[]") + q.getlist(name) if v]


def _encode_page(moment: datetime) -> str:
    return "page_" + base64.b64encode(rfc3339(moment).encode()).decode()


def _decode_page(token: str) -> datetime:
    try:
        text = base64.b64decode(token.removeprefix("page_"), validate=True).decode()
        return parse_rfc3339("page", text)
    except (ValueError, BadRequest):
        raise BadRequest(400, "page: invalid page token") from None


def _usage_result(key: tuple[Any, ...], rows: list[Row], with_speed: bool) -> dict[str, Any]:
    dims = dict(zip(USAGE_GROUPS, key, strict=True))
    result: dict[str, Any] = {
        "uncached_input_tokens": sum(r.uncached for r in rows),
        "cache_creation": {
            "ephemeral_1h_input_tokens": sum(r.cache_1h for r in rows),
            "ephemeral_5m_input_tokens": sum(r.cache_5m for r in rows),
        },
        "cache_read_input_tokens": sum(r.cache_read for r in rows),
        "output_tokens": sum(r.output for r in rows),
        "server_tool_use": {"web_search_requests": sum(r.web_search for r in rows)},
    }
    for name in USAGE_GROUPS:
        if name != "speed" or with_speed:
            result[name] = dims[name]
    return result


def _page(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """after_id/before_id cursor listing (3.5): limit 1..1000, default 20."""
    q = request.query_params
    try:
        limit = int(q.get("limit", 20))
    except ValueError:
        raise BadRequest(400, "limit: must be an integer") from None
    if not 1 <= limit <= 1000:
        raise BadRequest(400, "limit: must be between 1 and 1000")
    if "after_id" in q and "before_id" in q:
        raise BadRequest(400, "after_id and before_id cannot both be given")
    ids = [item["id"] for item in items]
    for name in ("after_id", "before_id"):
        if name in q and q[name] not in ids:
            raise BadRequest(400, f"{name}: unknown id {q[name]!r}")
    if "before_id" in q:
        stop = ids.index(q["before_id"])
        chosen = items[max(0, stop - limit) : stop]
        has_more = stop - limit > 0
    else:
        begin = ids.index(q["after_id"]) + 1 if "after_id" in q else 0
        chosen = items[begin : begin + limit]
        has_more = begin + limit < len(items)
    return {
        "data": chosen,
        "first_id": chosen[0]["id"] if chosen else None,
        "last_id": chosen[-1]["id"] if chosen else None,
        "has_more": has_more,
    }
