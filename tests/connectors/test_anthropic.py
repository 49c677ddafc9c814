"""The Anthropic connector against the fake on a real port, and its mapping on hand-made bodies."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from tallybook.connectors.anthropic import AnthropicConnector
from tallybook.connectors.base import Task
from tallybook.connectors.http import RetryPolicy
from tallybook.errors import AuthError, PermissionDenied, ProviderUnavailable, ResponseError
from tallybook.fakes.anthropic_admin import AnthropicAdminFake
from tallybook.fakes.server import serve_in_thread

KEY = "sk-ant-admin01-demo-0000000000000000"
HINT = "sk-ant-admin01-…0000"
NOW = datetime(2025, 9, 15, 13, 37)
START, END = datetime(2025, 8, 5), datetime(2025, 9, 14)  # 40 days
USAGE = "/v1/organizations/usage_report/messages"


@pytest.fixture(scope="module")
def fake():
    return AnthropicAdminFake(now=NOW, forbidden_keys=("sk-ant-admin01-readonly",))


@pytest.fixture(scope="module")
def server(fake):
    with serve_in_thread(fake.app) as running:
        yield running


@pytest.fixture
def connect(server, fake):
    fake.faults.clear()
    made = []

    def make(api_key: str = KEY, **kwargs):
        kwargs.setdefault("retry", RetryPolicy(attempts=3, base_delay=0))
        connector = AnthropicConnector(api_key, base_url=server.url, key_hint=HINT, **kwargs)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()
    fake.faults.clear()


def usage_by_model(records) -> dict[str, dict]:
    totals: dict[str, dict] = {}
    for r in records:
        t = totals.setdefault(
            r.model,
            {
                "input_tokens": 0,
                "cache_read_tokens": 0,
                "cache_write_5m_tokens": 0,
                "cache_write_1h_tokens": 0,
                "output_tokens": 0,
                "requests": 0,
                "quantities": {"web_search_requests": 0},
            },
        )
        for measure in ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
                        "output_tokens", "requests"):  # fmt: skip
            t[measure] += getattr(r, measure)
        if r.unit:
            t["quantities"][r.unit] += r.quantity
    return totals


def test_plan_splits_into_aligned_pages():
    connector = AnthropicConnector(KEY)
    tasks = connector.plan(START, datetime(2025, 9, 14, 10, 30), hourly_from=datetime(2025, 9, 1, 5, 20))
    connector.close()
    daily = [t for t in tasks if t.stream == "messages" and t.bucket_width == "1d"]
    hourly = [t for t in tasks if t.bucket_width == "1h"]
    costs = [t for t in tasks if t.stream == "costs"]
    assert [(t.start, t.end) for t in daily] == [
        (START, datetime(2025, 9, 5)),
        (datetime(2025, 9, 5), datetime(2025, 9, 15)),
    ]
    assert [(t.start, t.end) for t in costs] == [(t.start, t.end) for t in daily]
    assert hourly[0].start == datetime(2025, 9, 1, 5) and hourly[-1].end == datetime(2025, 9, 14, 11)
    assert all(t.end - t.start <= timedelta(hours=168) for t in hourly)
    assert all(a.end == b.start for a, b in itertools.pairwise(hourly))


def test_usage_and_costs_for_40_days_equal_the_ground_truth(connect, fake):
    connector = connect()
    hourly_from = datetime(2025, 9, 11)
    chunks = [connector.fetch(task) for task in connector.plan(START, END, hourly_from=hourly_from)]
    daily = [r for c in chunks if c.task.bucket_width == "1d" for r in c.usage]
    hourly = [r for c in chunks if c.task.bucket_width == "1h" for r in c.usage]
    assert usage_by_model(daily) == fake.expected_usage(START, END)
    assert usage_by_model(hourly) == fake.expected_usage(hourly_from, END)
    costs: dict[str, Decimal] = defaultdict(Decimal)
    for chunk in chunks:
        for cost in chunk.costs:
            costs[cost.line_item] += cost.amount
    assert dict(costs) == fake.expected_costs(START, END)
    assert sum(chunk.pages for chunk in chunks) == len(chunks)  # one page per task: limit = task length

    record = next(r for r in daily if r.project and r.api_key and r.unit is None)
    assert (record.source, record.stream, record.provider) == ("anthropic_admin", "messages", "anthropic")
    assert record.user.startswith("user_01") and record.context_window in ("0-200k", "200k-1M")
    assert record.bucket_start.tzinfo is None and record.requests == 0
    assert any(r.project is None for r in daily)  # default workspace
    assert any(r.api_key is None for r in daily)  # Console usage
    assert all(r.quantity > 0 and r.input_tokens == 0 for r in daily if r.unit == "web_search_requests")
    assert len({(r.bucket_start, r.key()) for r in daily}) == len(daily)  # no two rows share a natural key
    token_cost = next(c for ch in chunks for c in ch.costs if c.cost_type == "tokens")
    assert token_cost.currency == "USD" and token_cost.model and token_cost.token_type
    assert token_cost.stream == "costs" and token_cost.source == "anthropic_admin"


def test_an_unaligned_end_is_rounded_up_and_today_is_partial(connect, fake):
    connector = connect()
    tasks = [t for t in connector.plan(datetime(2025, 9, 13), NOW) if t.stream == "messages"]
    chunks = [connector.fetch(t) for t in tasks]
    assert chunks[0].task.end == datetime(2025, 9, 16)
    records = [r for c in chunks for r in c.usage]
    assert usage_by_model(records) == fake.expected_usage(datetime(2025, 9, 13), NOW)


def test_names_lists_every_workspace_key_and_user(connect, fake):
    objects = list(connect().names())
    kinds = defaultdict(list)
    for obj in objects:
        kinds[obj.kind].append(obj)
    assert {o.object_id for o in kinds["workspace"]} == {w["id"] for w in fake.workspaces}
    assert {o.object_id for o in kinds["api_key"]} == {k["id"] for k in fake.api_keys}
    assert {o.object_id for o in kinds["user"]} == {u["id"] for u in fake.users}
    key = kinds["api_key"][0]
    assert key.parent_id == fake.api_keys[0]["workspace_id"] and key.name and key.status == "active"
    assert all(u.email and "@" in u.email for u in kinds["user"])
    assert any(w.status == "archived" for w in kinds["workspace"])


def test_check_key(connect):
    check = connect().check_key()
    assert check.ok and check.permissions == ("usage_report.read",)


def test_429_is_retried_after_the_servers_delay(connect, fake):
    waits: list[float] = []
    fake.faults.add({"path": USAGE, "kind": "status", "status": 429, "retry_after": "2", "times": 3})
    connector = connect(sleep=waits.append, retry=None)
    chunk = connector.fetch(Task("messages", "1d", datetime(2025, 9, 1), datetime(2025, 9, 3)))
    assert waits == [2.0, 2.0, 2.0] and chunk.usage


def test_401_names_the_key_hint_never_the_key(connect):
    with pytest.raises(AuthError) as info:
        connect("sk-ant-admin01-not-a-real-key").check_key()
    assert HINT in str(info.value) and "not-a-real-key" not in str(info.value)
    assert "tallybook connect anthropic" in str(info.value)


def test_403_is_permission_denied(connect):
    with pytest.raises(PermissionDenied):
        connect("sk-ant-admin01-readonly").check_key()


def test_500_forever_is_provider_unavailable(connect, fake):
    fake.faults.add({"path": USAGE, "kind": "status", "status": 500, "times": -1})
    with pytest.raises(ProviderUnavailable):
        connect(sleep=lambda s: None).check_key()


def test_malformed_json_is_a_response_error(connect, fake):
    fake.faults.add({"path": "/v1/organizations/cost_report", "kind": "malformed_json"})
    with pytest.raises(ResponseError):
        connect().fetch(Task("costs", "1d", datetime(2025, 9, 1), datetime(2025, 9, 3)))


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ({"kind": "null_field", "field": "model"}, "model"),
        ({"kind": "null_field", "field": "output_tokens"}, "output_tokens"),
        ({"kind": "extra_field", "field": "speed", "value": "fast"}, "speed"),
    ],
)
def test_unreadable_results_fail_the_task_naming_the_field(connect, fake, fault, field):
    fake.faults.add({"path": USAGE, **fault})
    with pytest.raises(ResponseError) as info:
        connect().fetch(Task("messages", "1d", datetime(2025, 9, 1), datetime(2025, 9, 3)))
    message = str(info.value)
    assert f"`{field}`" in message and "Anthropic" in message and "2025-09-01" in message
    assert "nothing was stored" in message and KEY not in message


def test_an_unknown_field_is_tolerated_when_not_strict(connect, fake):
    fake.faults.add({"path": USAGE, "kind": "extra_field", "field": "speed", "value": "fast"})
    chunk = connect(strict=False).fetch(Task("messages", "1d", datetime(2025, 9, 1), datetime(2025, 9, 3)))
    assert chunk.usage


# -- mapping on hand-made bodies ---------------------------------------------------------------------

RESULT = {
    "uncached_input_tokens": 1500,
    "cache_creation": {"ephemeral_1h_input_tokens": 1000, "ephemeral_5m_input_tokens": 500},
    "cache_read_input_tokens": 200,
    "output_tokens": 500,
    "server_tool_use": {"web_search_requests": 10},
    "api_key_id": None,
    "workspace_id": None,
    "model": "claude-sonnet-4-20250514",
    "service_tier": "standard",
    "context_window": "0-200k",
    "inference_geo": "global",
    "account_id": "user_01abc",
    "service_account_id": None,
    "speed": None,  # unknown but null: ignored
}


def mock(body_for):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=json.dumps(body_for(request)))

    return AnthropicConnector(KEY, transport=httpx.MockTransport(handler)), seen


def test_usage_mapping_and_request_shape():
    body = {
        "data": [
            {"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z", "results": [RESULT]},
            {"starting_at": "2025-08-02T00:00:00Z", "ending_at": "2025-08-03T00:00:00Z", "results": []},
        ],
        "has_more": False,
        "next_page": None,
        "something_new": {"ignored": True},
    }
    connector, seen = mock(lambda request: body)
    chunk = connector.fetch(Task("messages", "1d", datetime(2025, 8, 1), datetime(2025, 8, 3)))
    tokens, searches = chunk.usage
    assert (tokens.input_tokens, tokens.cache_write_1h_tokens) == (1500, 1000)
    assert tokens.cache_write_5m_tokens == 500
    assert (tokens.cache_read_tokens, tokens.output_tokens, tokens.requests) == (200, 500, 0)
    assert tokens.project is None and tokens.api_key is None and tokens.user == "user_01abc"
    assert tokens.bucket_start == datetime(2025, 8, 1) and tokens.unit is None
    assert (searches.unit, searches.quantity, searches.input_tokens, searches.model) == (
        "web_search_requests", 10, 0, "claude-sonnet-4-20250514",
    )  # fmt: skip
    request = seen[0]
    assert request.headers["x-api-key"] == KEY and request.headers["anthropic-version"] == "2023-06-01"
    params = request.url.params
    assert params["starting_at"] == "2025-08-01T00:00:00Z" and params["ending_at"] == "2025-08-03T00:00:00Z"
    assert params["limit"] == "31" and params["bucket_width"] == "1d"
    assert params.get_list("group_by[]") == [
        "api_key_id",
        "workspace_id",
        "model",
        "service_tier",
        "context_window",
        "inference_geo",
        "account_id",
    ]


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"amount": "123.78912", "currency": "usd"}, None),
        ({"amount": "12,5", "currency": "USD"}, "amount"),
        ({"amount": 123.5, "currency": "USD"}, "amount"),
        ({"amount": "1.5"}, "currency"),
        ({"amount": "1.5", "currency": "USD", "discount": "0.2"}, "discount"),
    ],
)
def test_cost_mapping(item, problem):
    body = {
        "data": [{"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z", "results": [
            {"description": "Claude Sonnet 4 Usage - Input Tokens", "workspace_id": "wrkspc_01x",
             "cost_type": "tokens", "token_type": "uncached_input_tokens", **item}
        ]}],
        "has_more": False,
        "next_page": None,
    }  # fmt: skip
    connector, _ = mock(lambda request: body)
    task = Task("costs", "1d", datetime(2025, 8, 1), datetime(2025, 8, 2))
    if problem:
        with pytest.raises(ResponseError, match=f"`{problem}`"):
            connector.fetch(task)
        return
    (cost,) = connector.fetch(task).costs
    assert cost.amount == Decimal("1.2378912") and cost.currency == "USD"
    assert cost.project == "wrkspc_01x" and cost.line_item == "Claude Sonnet 4 Usage - Input Tokens"
    assert cost.token_type == "uncached_input_tokens" and cost.cost_type == "tokens"
