"""The OpenAI connector against the faithful fake on a real port, and a few pure mapping tests."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tallybook.connectors.base import Task
from tallybook.connectors.http import RetryPolicy
from tallybook.connectors.openai import USAGE_STREAMS, OpenAIConnector
from tallybook.errors import AuthError, PermissionDenied, ProviderUnavailable, ResponseError
from tallybook.fakes.openai_admin import OpenAIAdminFake, empty_usage
from tallybook.fakes.server import serve_in_thread

KEY = "sk-admin-demo-openai-0000000000000000"
HINT = "sk-admin…0000 (fp 3f9a)"
NOW = datetime(2025, 6, 15, 13, 37)
TODAY = datetime(2025, 6, 15)
JUNE = Task("completions", "1d", datetime(2025, 6, 1), datetime(2025, 6, 8))


@pytest.fixture(scope="module")
def fake() -> OpenAIAdminFake:
    return OpenAIAdminFake(now=NOW, forbidden_keys=("sk-admin-reader",))


@pytest.fixture(scope="module")
def server(fake):
    with serve_in_thread(fake.app) as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def connect(server, fake, sleeps):
    fake.faults.clear()
    made: list[OpenAIConnector] = []

    def make(key: str = KEY, **options: Any) -> OpenAIConnector:
        options.setdefault("retry", RetryPolicy(attempts=6, base_delay=0))
        connector = OpenAIConnector(key, base_url=server.url + "/v1", key_hint=HINT, sleep=sleeps.append, **options)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()
    fake.faults.clear()


def totals(records) -> dict[str | None, dict[str, Any]]:
    out: dict[str | None, dict[str, Any]] = defaultdict(empty_usage)
    for r in records:
        slot = out[r.model]
        for measure in ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "output_tokens",
                        "audio_input_tokens", "audio_output_tokens", "requests"):
            slot[measure] += getattr(r, measure)
        if r.unit:
            slot["quantities"][r.unit] = slot["quantities"].get(r.unit, 0) + r.quantity
    return dict(out)


def test_plan_rounds_the_end_up_and_cuts_ranges():
    connector = OpenAIConnector(KEY)
    tasks = connector.plan(TODAY - timedelta(days=40), NOW, hourly_from=TODAY - timedelta(days=2))
    connector.close()
    daily = [t for t in tasks if t.stream == "completions" and t.bucket_width == "1d"]
    hourly = [t for t in tasks if t.stream == "completions" and t.bucket_width == "1h"]
    assert [(t.start, t.end) for t in daily] == [
        (TODAY - timedelta(days=40), TODAY - timedelta(days=9)),
        (TODAY - timedelta(days=9), TODAY + timedelta(days=1)),
    ]
    assert hourly[0].start == TODAY - timedelta(days=2) and hourly[-1].end == datetime(2025, 6, 15, 14)
    assert {t.stream for t in tasks} == set(USAGE_STREAMS) | {"costs"}
    assert not [t for t in tasks if t.stream == "costs" and t.bucket_width != "1d"]


@pytest.mark.parametrize("shape", ["extended", "minimal"])
def test_a_40_day_sync_matches_the_ground_truth(connect, fake, server, shape):
    if shape == "minimal":  # a second fake, same seed, older shape: the client must read both
        fake = OpenAIAdminFake(now=NOW, shape="minimal")
        with serve_in_thread(fake.app) as other:
            connector = OpenAIConnector(KEY, base_url=other.url + "/v1", key_hint=HINT)
            try:
                check_sync(connector, fake)
            finally:
                connector.close()
    else:
        check_sync(connect(), fake)


def check_sync(connector: OpenAIConnector, fake: OpenAIAdminFake) -> None:
    start, hourly_from = TODAY - timedelta(days=39), TODAY - timedelta(days=2)
    chunks = [connector.fetch(task) for task in connector.plan(start, NOW, hourly_from=hourly_from)]
    daily = [r for c in chunks if c.task.bucket_width == "1d" for r in c.usage]
    hourly = [r for c in chunks if c.task.bucket_width == "1h" for r in c.usage]
    assert totals(daily) == fake.expected_usage(start, NOW)
    assert totals(hourly) == fake.expected_usage(hourly_from, NOW)
    costs: dict[str, Decimal] = defaultdict(Decimal)
    for chunk in chunks:
        for cost in chunk.costs:
            assert cost.currency == "USD" and cost.bucket_width == "1d"
            costs[cost.line_item] += cost.amount
    expected = fake.expected_costs(start, NOW)
    assert {k: v.quantize(Decimal("0.01")) for k, v in costs.items()} == {
        k: v.quantize(Decimal("0.01")) for k, v in expected.items()
    }
    assert sum(costs.values()) == sum(expected.values())
    assert all(r.provider == "openai" and r.source == "openai_admin" for r in daily)
    assert {r.stream for r in daily} == set(USAGE_STREAMS)


def test_records_carry_every_dimension(connect):
    chunk = connect().fetch(JUNE)
    assert chunk.pages == 1 and chunk.usage
    record = chunk.usage[0]
    assert record.bucket_start == datetime(2025, 6, 1) and record.bucket_width == "1d"
    assert record.project.startswith("proj_") and record.api_key.startswith("key_")
    assert record.batch in (True, False) and record.service_tier in ("default", "flex", "priority")
    costs = connect().fetch(Task("costs", "1d", datetime(2025, 6, 1), datetime(2025, 6, 3))).costs
    token_cost = next(c for c in costs if c.line_item.endswith(", cached input"))
    assert token_cost.token_type == "cached input" and token_cost.model == token_cost.line_item.split(", ")[0]
    assert token_cost.quantity_unit == "tokens" and isinstance(token_cost.quantity, Decimal)
    storage = next(c for c in costs if c.line_item == "vector store storage")
    assert storage.model is None and storage.token_type is None


def test_pages_are_followed(connect, fake):
    chunk = connect().fetch(Task("images", "1h", datetime(2025, 6, 1), datetime(2025, 6, 12, 12)))
    assert chunk.pages == 2  # 276 hours at 168 a page
    expected = fake.expected_usage(datetime(2025, 6, 1), datetime(2025, 6, 12, 12))
    assert totals(chunk.usage) == {model: expected[model] for model in ("dall-e-2", "dall-e-3")}


def test_names_lists_every_project_user_and_key(connect, fake):
    objects = list(connect().names())
    by_kind = defaultdict(list)
    for o in objects:
        by_kind[o.kind].append(o)
    assert {p.object_id for p in by_kind["project"]} == {p["id"] for p in fake.org.projects}
    assert {(u.object_id, u.email) for u in by_kind["user"]} == {(u["id"], u["email"]) for u in fake.org.users}
    assert {(k.object_id, k.parent_id, k.name) for k in by_kind["api_key"]} == {
        (k["id"], k["project_id"], k["name"]) for k in fake.org.keys
    }


def test_names_follow_after_cursors():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url.query, "ascii"))
        after = request.url.params.get("after")
        if request.url.path.endswith("/projects"):
            page = [{"id": "proj_b"}] if after == "proj_a" else [{"id": "proj_a"}]
            return httpx.Response(200, json={"object": "list", "data": page, "first_id": page[0]["id"],
                                             "last_id": page[0]["id"], "has_more": after is None})
        return httpx.Response(200, json={"object": "list", "data": [], "first_id": None, "last_id": None,
                                         "has_more": False})

    connector = OpenAIConnector(KEY, transport=httpx.MockTransport(handler))
    assert [o.object_id for o in connector.names() if o.kind == "project"] == ["proj_a", "proj_b"]
    assert "after=proj_a" in seen[1] and "limit=100" in seen[0] and "include_archived=true" in seen[0]


def test_check_key(connect):
    check = connect().check_key()
    assert check.ok and check.permissions == ("usage.read",)


def test_429_is_retried_after_the_providers_delay(connect, fake, sleeps):
    fake.faults.add({"path": "/v1/organization/usage/completions", "status": 429, "retry_after": "2", "times": 3})
    chunk = connect().fetch(JUNE)
    assert chunk.usage and sleeps == [2.0, 2.0, 2.0]


def test_401_names_the_key_hint_never_the_key(connect):
    with pytest.raises(AuthError) as info:
        connect("sk-admin-wrong-key-123456").fetch(JUNE)
    assert HINT in str(info.value) and "sk-admin-wrong-key-123456" not in str(info.value)
    assert "tallybook connect openai" in str(info.value)


def test_403_is_permission_denied(connect):
    with pytest.raises(PermissionDenied):
        connect("sk-admin-reader").check_key()


def test_500_forever_is_provider_unavailable(connect, fake, sleeps):
    fake.faults.add({"path": "/v1/organization/usage", "status": 500, "times": -1})
    with pytest.raises(ProviderUnavailable):
        connect(retry=RetryPolicy(attempts=3, base_delay=0)).fetch(JUNE)
    assert len(sleeps) == 2


def test_malformed_json_is_a_response_error(connect, fake):
    fake.faults.add({"path": "/v1/organization/usage/completions", "kind": "malformed_json", "times": 6})
    with pytest.raises(ResponseError, match="not JSON"):
        connect().fetch(JUNE)


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ({"kind": "null_field", "field": "model"}, "`model`"),
        ({"kind": "null_field", "field": "num_model_requests"}, "`num_model_requests`"),
        ({"kind": "null_field", "field": "input_tokens"}, "`input_tokens`"),
        ({"kind": "extra_field", "field": "region", "value": "eu"}, "`region`"),
        ({"kind": "extra_field", "field": "batch", "value": "yes"}, "`batch`"),
    ],
)
def test_unreadable_results_name_the_field(connect, fake, fault, field):
    fake.faults.add({"path": "/v1/organization/usage/completions", **fault})
    with pytest.raises(ResponseError) as info:
        connect().fetch(JUNE)
    message = str(info.value)
    assert field in message and "OpenAI" in message and "/organization/usage/completions" in message
    assert "2025-06-01" in message and "nothing was stored" in message and "\n" not in message


def test_unknown_null_fields_and_non_strict_mode_are_tolerated(connect, fake):
    fake.faults.add({"path": "/v1/organization/usage/completions", "kind": "extra_field", "field": "region",
                     "value": None})
    assert connect().fetch(JUNE).usage
    fake.faults.add({"path": "/v1/organization/usage/completions", "kind": "extra_field", "field": "region",
                     "value": "eu"})
    assert connect(strict=False).fetch(JUNE).usage


# -- pure mapping, no server --------------------------------------------------------------------

def page(results: list[dict[str, Any]], **envelope: Any) -> dict[str, Any]:
    return {"object": "page", "data": [{"object": "bucket", "start_time": 1748736000, "end_time": 1748822400,
                                        "results": results}], "has_more": False, "next_page": None, **envelope}


def mock(body: dict[str, Any], seen: list[httpx.Request] | None = None) -> OpenAIConnector:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(200, content=json.dumps(body).encode())

    return OpenAIConnector(KEY, transport=httpx.MockTransport(handler))


def test_minimal_completion_maps_to_uncached_input_and_request_groups_by_everything():
    seen: list[httpx.Request] = []
    result = {"object": "organization.usage.completions.result", "input_tokens": 1000, "output_tokens": 50,
              "num_model_requests": 3, "input_cached_tokens": 300, "input_audio_tokens": 20,
              "output_audio_tokens": 5, "model": "gpt-4o-2024-08-06", "batch": False, "project_id": None}
    [record] = mock(page([result], some_new_envelope_key=1), seen).fetch(JUNE).usage
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_5m_tokens) == (700, 300, 0)
    assert (record.output_tokens, record.audio_input_tokens, record.audio_output_tokens, record.requests) == (50, 20, 5, 3)
    assert record.batch is False and record.bucket_start == datetime(2025, 6, 1)
    query = seen[0].url.params
    assert query.get_list("group_by") == ["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"]
    assert query["start_time"] == "1748736000" and query["end_time"] == "1749340800" and query["limit"] == "31"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


def test_cost_amounts_stay_decimal():
    result = {"object": "organization.costs.result", "amount": {"value": 0.1, "currency": "usd"},
              "line_item": "gpt-4o-2024-08-06, input", "project_id": "proj_abc"}
    [cost] = mock(page([result])).fetch(Task("costs", "1d", datetime(2025, 6, 1), datetime(2025, 6, 2))).costs
    assert cost.amount == Decimal("0.1") and cost.currency == "USD"
    assert (cost.model, cost.token_type, cost.api_key, cost.quantity) == ("gpt-4o-2024-08-06", "input", None, None)


@pytest.mark.parametrize(
    ("result", "field"),
    [
        ({"object": "organization.usage.embeddings.result", "input_tokens": 1, "num_model_requests": 1}, "object"),
        ({"object": "organization.usage.completions.result", "input_tokens": "1", "output_tokens": 1,
          "num_model_requests": 1, "model": "m"}, "input_tokens"),
        ({"object": "organization.usage.completions.result", "output_tokens": 1, "num_model_requests": 1,
          "model": "m"}, "input_tokens"),
    ],
)
def test_wrong_object_type_or_missing_measure(result, field):
    with pytest.raises(ResponseError, match=field):
        mock(page([result])).fetch(JUNE)


def test_a_bucket_without_results_is_refused():
    body = page([])
    del body["data"][0]["results"]
    with pytest.raises(ResponseError, match="`results` is missing"):
        mock(body).fetch(JUNE)
