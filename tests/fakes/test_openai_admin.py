"""The OpenAI admin fake answers like the real API: validation, auth, buckets and pagination."""

from __future__ import annotations

from datetime import datetime

import pytest
from starlette.testclient import TestClient

from tallybook.fakes.openai_admin import OpenAIAdminFake

KEY = "sk-admin-demo-openai-0000000000000000"
NOW = datetime(2025, 6, 15, 13, 37)
JUNE_1 = 1748736000  # 2025-06-01T00:00Z
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def fake() -> OpenAIAdminFake:
    return OpenAIAdminFake(now=NOW, forbidden_keys=("sk-admin-reader",))


@pytest.fixture
def client(fake: OpenAIAdminFake) -> TestClient:
    fake.faults.clear()
    return TestClient(fake.app)


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v1/organization/usage/completions", {}, "start_time"),
        ("/v1/organization/usage/completions", {"start_time": "yesterday"}, "start_time"),
        ("/v1/organization/usage/completions", {"start_time": JUNE_1, "bucket_width": "1w"}, "bucket_width"),
        ("/v1/organization/usage/completions", {"start_time": JUNE_1, "limit": 32}, "limit"),
        ("/v1/organization/usage/completions", {"start_time": JUNE_1, "bucket_width": "1h", "limit": 169}, "limit"),
        ("/v1/organization/usage/completions", {"start_time": JUNE_1, "bucket_width": "1m", "limit": 0}, "limit"),
        ("/v1/organization/costs", {"start_time": JUNE_1, "bucket_width": "1h"}, "bucket_width"),
        ("/v1/organization/costs", {"start_time": JUNE_1, "limit": 181}, "limit"),
        ("/v1/organization/costs", {"start_time": JUNE_1, "group_by": "model"}, "group_by"),
        ("/v1/organization/usage/vector_stores", {"start_time": JUNE_1, "group_by[]": "model"}, "group_by"),
        ("/v1/organization/usage/completions", {"start_time": JUNE_1, "group_by": "size"}, "group_by"),
        ("/v1/organization/usage/completions", {"start_time": JUNE_1, "batch": "maybe"}, "batch"),
        ("/v1/organization/usage/images", {"start_time": JUNE_1, "sizes": "9x9"}, "sizes"),
        ("/v1/organization/usage/completions", {"start_time": JUNE_1, "end_time": JUNE_1}, "end_time"),
        ("/v1/organization/usage/completions", {"start_time": JUNE_1, "page": "page_bogus"}, "page"),
        ("/v1/organization/projects", {"limit": 101}, "limit"),
    ],
)
def test_invalid_requests_get_400_with_openai_envelope(client, path, params, param):
    response = client.get(path, params=params, headers=AUTH)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_limit_maximums_are_accepted(client):
    for width, limit in (("1d", 31), ("1h", 168), ("1m", 1440)):
        params = {"start_time": JUNE_1, "bucket_width": width, "limit": limit}
        assert client.get("/v1/organization/usage/completions", params=params, headers=AUTH).status_code == 200
    assert client.get("/v1/organization/costs", params={"start_time": JUNE_1, "limit": 180}, headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "invalid_api_key"),
        ({"Authorization": "Bearer sk-admin-wrong"}, 401, "invalid_api_key"),
        ({"Authorization": "Bearer sk-admin-reader"}, 403, "insufficient_permissions"),
    ],
)
def test_auth(client, headers, status, code):
    response = client.get("/v1/organization/usage/completions", params={"start_time": JUNE_1}, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_default_limit_and_first_bucket_not_snapped(client):
    start = JUNE_1 + 5 * 3600 + 17 * 60
    body = client.get("/v1/organization/usage/completions", params={"start_time": start}, headers=AUTH).json()
    assert body["object"] == "page" and body["has_more"] is True
    assert body["next_page"].startswith("page_")
    assert len(body["data"]) == 7
    first, second = body["data"][:2]
    assert (first["object"], first["start_time"], first["end_time"]) == ("bucket", start, JUNE_1 + 86400)
    assert (second["start_time"], second["end_time"]) == (JUNE_1 + 86400, JUNE_1 + 2 * 86400)


def test_pagination_yields_every_bucket_once_with_empty_ones(client):
    start, end = JUNE_1 - 10 * 3600, JUNE_1 + 30 * 3600  # the fake has no data after NOW, so ask well before it
    params: dict[str, object] = {"start_time": start, "end_time": end, "bucket_width": "1h", "limit": 7,
                                 "group_by[]": "model"}
    starts, pages, empty = [], 0, 0
    while True:
        body = client.get("/v1/organization/usage/images", params=params, headers=AUTH).json()
        pages += 1
        for bucket in body["data"]:
            starts.append(bucket["start_time"])
            empty += bucket["results"] == []
            for result in bucket["results"]:
                assert result["object"] == "organization.usage.images.result"
                assert result["model"] is not None and result["project_id"] is None and result["size"] is None
        if not body["has_more"]:
            assert body["next_page"] is None
            break
        params["page"] = body["next_page"]
    assert starts == [start + 3600 * i for i in range(40)]
    assert pages == 6
    assert empty > 0  # images are rare: most hours have none, and they are still listed


def test_bracket_and_repeated_arrays_are_the_same(client):
    def results(params):
        body = client.get("/v1/organization/usage/completions", params=params, headers=AUTH).json()
        return [b["results"] for b in body["data"]]

    plain = results([("start_time", JUNE_1), ("group_by", "model"), ("group_by", "batch"), ("models", "o3-mini-2025-01-31")])
    brackets = results([("start_time", JUNE_1), ("group_by[]", "model"), ("group_by[]", "batch"),
                        ("models[]", "o3-mini-2025-01-31")])
    assert plain == brackets
    rows = [r for bucket in plain for r in bucket]
    assert rows and {r["model"] for r in rows} == {"o3-mini-2025-01-31"}
    assert {r["batch"] for r in rows} <= {True, False} and rows[0]["user_id"] is None


def test_extended_completions_arithmetic(client):
    body = client.get("/v1/organization/usage/completions",
                      params={"start_time": JUNE_1, "group_by": "model"}, headers=AUTH).json()
    rows = [r for bucket in body["data"] for r in bucket["results"]]
    assert rows
    for r in rows:
        assert r["input_tokens"] == r["input_uncached_tokens"] + r["input_cached_tokens"] + r["input_cache_write_tokens"]
        assert r["input_uncached_tokens"] == r["input_text_tokens"] + r["input_audio_tokens"] + r["input_image_tokens"]
        assert r["output_tokens"] == r["output_text_tokens"] + r["output_audio_tokens"] + r["output_image_tokens"]


def test_minimal_shape_has_only_the_old_fields():
    fake = OpenAIAdminFake(now=NOW, shape="minimal")
    client = TestClient(fake.app)
    body = client.get("/v1/organization/usage/completions", params={"start_time": JUNE_1}, headers=AUTH).json()
    result = body["data"][0]["results"][0]
    assert "input_uncached_tokens" not in result and "input_cached_tokens" in result
    costs = client.get("/v1/organization/costs", params={"start_time": JUNE_1}, headers=AUTH).json()
    assert "quantity_unit" not in costs["data"][0]["results"][0]


def test_days_are_the_same_whenever_the_fake_is_built(fake):
    later = OpenAIAdminFake(now=datetime(2025, 8, 1))
    day = datetime(2025, 6, 3), datetime(2025, 6, 4)
    assert later.expected_usage(*day) == fake.expected_usage(*day)
    assert later.expected_costs(*day) == fake.expected_costs(*day)


def test_nothing_is_served_after_now(client):
    body = client.get("/v1/organization/usage/completions",
                      params={"start_time": 1749945600, "end_time": 1750032000, "bucket_width": "1h", "limit": 24},
                      headers=AUTH).json()
    hours_with_data = [b["start_time"] for b in body["data"] if b["results"]]
    assert hours_with_data and max(hours_with_data) < 1749945600 + 14 * 3600  # NOW is 13:37


def test_costs_amounts_have_at_most_six_decimals(client):
    body = client.get("/v1/organization/costs", params={"start_time": JUNE_1, "group_by": ["line_item", "project_id"]},
                      headers=AUTH)
    for bucket in body.json()["data"]:
        for r in bucket["results"]:
            assert r["amount"]["currency"] == "usd"
            assert round(r["amount"]["value"], 6) == r["amount"]["value"]
            assert r["quantity"] is not None and r["api_key_id"] is None


def test_list_endpoints_paginate_with_after(client, fake):
    first = client.get("/v1/organization/users", params={"limit": 4}, headers=AUTH).json()
    assert first["object"] == "list" and first["has_more"] is True and len(first["data"]) == 4
    rest = client.get("/v1/organization/users", params={"limit": 4, "after": first["last_id"]}, headers=AUTH).json()
    assert rest["has_more"] is False
    assert [u["id"] for u in first["data"] + rest["data"]] == [u["id"] for u in fake.org.users]
    active = client.get("/v1/organization/projects", headers=AUTH).json()["data"]
    every = client.get("/v1/organization/projects", params={"include_archived": "true"}, headers=AUTH).json()["data"]
    assert len(active) == 3 and len(every) == 4
    keys = client.get(f"/v1/organization/projects/{every[0]['id']}/api_keys", headers=AUTH).json()
    assert keys["data"] and all(k["object"] == "organization.project.api_key" for k in keys["data"])


def test_fault_routes(client):
    client.post("/_fake/faults", json=[{"path": "/v1/organization/costs", "status": 503, "times": 1}])
    assert client.get("/v1/organization/costs", params={"start_time": JUNE_1}, headers=AUTH).status_code == 503
    assert client.get("/v1/organization/costs", params={"start_time": JUNE_1}, headers=AUTH).status_code == 200
    statuses = [r["status"] for r in client.get("/_fake/requests").json()]
    assert statuses == [503, 200]
