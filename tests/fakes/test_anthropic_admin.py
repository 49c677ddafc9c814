"""The Anthropic Admin fake: validation, auth, pagination and the ground-truth helpers."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from starlette.testclient import TestClient

from tallybook.fakes.anthropic_admin import AnthropicAdminFake

KEY = "sk-ant-admin01-demo-0000000000000000"
VERSION = "2023-06-01"
HEADERS = {"x-api-key": KEY, "anthropic-version": VERSION}
NOW = datetime(2025, 9, 15, 13, 37)
USAGE = "/v1/organizations/usage_report/messages"
COSTS = "/v1/organizations/cost_report"


@pytest.fixture(scope="module")
def fake() -> AnthropicAdminFake:
    return AnthropicAdminFake(now=NOW, forbidden_keys=("sk-ant-admin01-readonly",))


@pytest.fixture(scope="module")
def client(fake: AnthropicAdminFake) -> TestClient:
    return TestClient(fake.app)


def pages(client: TestClient, path: str, params: list[tuple[str, str]]) -> list[dict]:
    bodies, cursor = [], None
    while True:
        response = client.get(path, params=params + ([("page", cursor)] if cursor else []), headers=HEADERS)
        assert response.status_code == 200, response.text
        body = response.json()
        bodies.append(body)
        if not body["has_more"]:
            assert body["next_page"] is None
            return bodies
        cursor = body["next_page"]


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        (USAGE, [], "starting_at"),
        (USAGE, [("starting_at", "2025-09-01")], "starting_at"),
        (USAGE, [("starting_at", "yesterday")], "starting_at"),
        (USAGE, [("starting_at", "2025-09-01T00:00:00Z"), ("bucket_width", "1w")], "bucket_width"),
        (USAGE, [("starting_at", "2025-09-01T00:00:00Z"), ("limit", "32")], "limit"),
        (USAGE, [("starting_at", "2025-09-01T00:00:00Z"), ("bucket_width", "1h"), ("limit", "169")], "limit"),
        (
            USAGE,
            [("starting_at", "2025-09-01T12:00:00Z"), ("bucket_width", "1m"), ("limit", "1441")],
            "limit",
        ),
        (USAGE, [("starting_at", "2025-09-01T00:00:00Z"), ("limit", "0")], "limit"),
        (USAGE, [("starting_at", "2025-09-01T00:00:00Z"), ("group_by[]", "project_id")], "group_by"),
        (USAGE, [("starting_at", "2025-09-01T00:00:00Z"), ("service_tiers[]", "gold")], "service_tiers"),
        (USAGE, [("starting_at", "2025-09-02T00:00:00Z"), ("ending_at", "2025-09-01T00:00:00Z")], "ending"),
        (USAGE, [("starting_at", "2025-09-01T00:00:00Z"), ("page", "page_bm9wZQ==")], "page"),
        (COSTS, [("starting_at", "2025-09-01T00:00:00Z"), ("bucket_width", "1h")], "bucket_width"),
        (COSTS, [("starting_at", "2025-09-01T00:00:00Z"), ("limit", "32")], "limit"),
        (COSTS, [("starting_at", "2025-09-01T00:00:00Z"), ("group_by[]", "model")], "group_by"),
        ("/v1/organizations/users", [("limit", "1001")], "limit"),
    ],
)
def test_validation_errors_answer_400_with_the_anthropic_envelope(client, path, params, fragment):
    response = client.get(path, params=params, headers=HEADERS)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert fragment in body["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "status", "kind"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({"x-api-key": "sk-ant-admin01-wrong", "anthropic-version": VERSION}, 401, "authentication_error"),
        ({"x-api-key": "sk-ant-admin01-readonly", "anthropic-version": VERSION}, 403, "permission_error"),
        ({"x-api-key": KEY}, 400, "invalid_request_error"),
    ],
)
def test_auth_and_version_headers(client, headers, status, kind):
    response = client.get(USAGE, params={"starting_at": "2025-09-01T00:00:00Z"}, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind


def test_pagination_gives_every_bucket_once_including_empty_ones(client):
    # The dataset starts 120 days before NOW (2025-05-18): May's first buckets are empty but still listed.
    params = [("starting_at", "2025-05-01T00:00:00Z"), ("ending_at", "2025-09-16T00:00:00Z"), ("limit", "31")]
    bodies = pages(client, USAGE, params)
    starts = [b["starting_at"] for body in bodies for b in body["data"]]
    assert len(bodies) == 5
    assert all(len(body["data"]) <= 31 for body in bodies)
    expected = [datetime(2025, 5, 1) + timedelta(days=i) for i in range(138)]
    assert starts == [f"{d:%Y-%m-%dT%H:%M:%SZ}" for d in expected]
    by_start = {b["starting_at"]: b for body in bodies for b in body["data"]}
    assert by_start["2025-05-01T00:00:00Z"]["results"] == []  # before the dataset: empty, still listed
    assert by_start["2025-09-10T00:00:00Z"]["results"]
    assert all("object" not in body and all("object" not in b for b in body["data"]) for body in bodies)
    cursor = bodies[0]["next_page"]
    assert cursor.startswith("page_")
    assert base64.b64decode(cursor.removeprefix("page_")).decode() == "2025-06-01T00:00:00Z"


def test_buckets_snap_to_their_start_and_stop_at_now(client):
    params = [("starting_at", "2025-09-15T09:41:12Z"), ("bucket_width", "1h"), ("limit", "168")]
    (body,) = pages(client, USAGE, params)
    assert [b["starting_at"] for b in body["data"]] == [f"2025-09-15T{h:02d}:00:00Z" for h in range(9, 14)]
    assert body["data"][0]["ending_at"] == "2025-09-15T10:00:00Z"


def test_default_limit_is_seven_days(client):
    body = client.get(USAGE, params={"starting_at": "2025-08-01T00:00:00Z"}, headers=HEADERS).json()
    assert len(body["data"]) == 7 and body["has_more"] is True


@pytest.mark.parametrize("name", ["group_by", "group_by[]"])
def test_group_by_accepts_both_spellings_and_nulls_other_dimensions(client, name):
    params = [("starting_at", "2025-09-10T00:00:00Z"), ("ending_at", "2025-09-11T00:00:00Z"), (name, "model")]
    (body,) = pages(client, USAGE, params)
    results = body["data"][0]["results"]
    assert {r["model"] for r in results} >= {"claude-sonnet-4-20250514"}
    assert len({r["model"] for r in results}) == len(results)
    assert all(r["workspace_id"] is None and r["api_key_id"] is None for r in results)
    assert all(r["service_tier"] is None and r["account_id"] is None for r in results)


def test_filters_apply(client, fake):
    params = [
        ("starting_at", "2025-09-01T00:00:00Z"),
        ("ending_at", "2025-09-08T00:00:00Z"),
        ("models[]", "claude-sonnet-4-20250514"),
        ("service_tiers[]", "batch"),
        ("group_by[]", "model"),
        ("group_by[]", "service_tier"),
    ]
    (body,) = pages(client, USAGE, params)
    results = [r for b in body["data"] for r in b["results"]]
    assert results
    assert {(r["model"], r["service_tier"]) for r in results} == {("claude-sonnet-4-20250514", "batch")}


def test_minute_buckets_add_up_to_the_day(client, fake):
    window = [("starting_at", "2025-09-12T00:00:00Z"), ("ending_at", "2025-09-13T00:00:00Z")]
    bodies = pages(client, USAGE, window + [("bucket_width", "1m"), ("limit", "1440")])
    buckets = [b for body in bodies for b in body["data"]]
    assert len(buckets) == 1440
    output = sum(r["output_tokens"] for b in buckets for r in b["results"])
    expected = fake.expected_usage(datetime(2025, 9, 12), datetime(2025, 9, 13))
    assert output == sum(m["output_tokens"] for m in expected.values())


def test_cost_report_amounts_are_cent_strings_and_match_expected_costs(client, fake):
    params = [("starting_at", "2025-09-01T00:00:00Z"), ("ending_at", "2025-09-15T00:00:00Z"), ("limit", "31")]
    (body,) = pages(client, COSTS, params + [("group_by[]", "workspace_id"), ("group_by[]", "description")])
    totals: dict[str, Decimal] = {}
    for bucket in body["data"]:
        for item in bucket["results"]:
            assert isinstance(item["amount"], str) and item["currency"] == "USD"
            assert len(item["amount"].partition(".")[2]) <= 5
            dollars = Decimal(item["amount"]) / 100
            totals[item["description"]] = totals.get(item["description"], Decimal(0)) + dollars
    assert totals == fake.expected_costs(datetime(2025, 9, 1), datetime(2025, 9, 15))
    assert "Web Search Usage" in totals and "Code Execution Usage" in totals
    assert any(d.endswith("5m Cache Write Input Tokens") for d in totals)
    token_item = next(i for b in body["data"] for i in b["results"] if i["cost_type"] == "tokens")
    assert token_item["model"] and token_item["token_type"]
    assert token_item["service_tier"] in ("standard", "batch")


def test_cost_report_without_description_leaves_parsed_fields_null(client, fake):
    params = [("starting_at", "2025-09-01T00:00:00Z"), ("ending_at", "2025-09-03T00:00:00Z")]
    (body,) = pages(client, COSTS, params)
    for bucket in body["data"]:
        (item,) = bucket["results"]
        assert item["description"] is None and item["model"] is None and item["workspace_id"] is None
    total = sum(Decimal(i["amount"]) for b in body["data"] for i in b["results"]) / 100
    assert total == sum(fake.expected_costs(datetime(2025, 9, 1), datetime(2025, 9, 3)).values())


def test_days_are_deterministic_across_fakes_built_at_different_times(fake):
    later = AnthropicAdminFake(now=NOW + timedelta(days=20))
    window = (datetime(2025, 8, 1), datetime(2025, 9, 1))
    assert later.expected_usage(*window) == fake.expected_usage(*window)
    assert later.expected_costs(*window) == fake.expected_costs(*window)
    assert fake.expected_usage(NOW, NOW + timedelta(days=1)) == {}  # nothing after now


def test_org_lists_page_with_after_id(client, fake):
    first = client.get("/v1/organizations/api_keys", params={"limit": 3}, headers=HEADERS).json()
    assert [k["type"] for k in first["data"]] == ["api_key"] * 3 and first["has_more"] is True
    rest = client.get(
        "/v1/organizations/api_keys", params={"limit": 100, "after_id": first["last_id"]}, headers=HEADERS
    ).json()
    ids = [k["id"] for k in first["data"] + rest["data"]]
    assert ids == [k["id"] for k in fake.api_keys] and rest["has_more"] is False
    assert all(i.startswith("apikey_01") for i in ids)
    before = client.get(
        "/v1/organizations/api_keys", params={"before_id": rest["first_id"]}, headers=HEADERS
    ).json()
    assert [k["id"] for k in before["data"]] == ids[:3]
    active = client.get("/v1/organizations/workspaces", headers=HEADERS).json()["data"]
    every = client.get("/v1/organizations/workspaces?include_archived=true", headers=HEADERS).json()["data"]
    assert len(active) == 3 and len(every) == 4 and every[0]["id"].startswith("wrkspc_")
    users = client.get("/v1/organizations/users", headers=HEADERS).json()
    assert len(users["data"]) == 6 and users["data"][0]["type"] == "user"
