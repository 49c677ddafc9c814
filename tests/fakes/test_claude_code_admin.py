"""The Claude Code analytics endpoint of the fake Anthropic admin API follows reference 3.4."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tallybook.fakes.anthropic_admin import AnthropicAdminFake
from tests.support import FAKE_NOW

PATH = "/v1/organizations/usage_report/claude_code"
HEADERS = {"x-api-key": "sk-ant-admin01-demo-0000000000000000", "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def client():
    return TestClient(AnthropicAdminFake(now=FAKE_NOW).app)


def test_one_day_a_request_paged_by_records(client):
    full = client.get(PATH, params={"starting_at": "2026-11-18", "limit": 1000}, headers=HEADERS).json()
    assert full["has_more"] is False and full["next_page"] is None and len(full["data"]) > 3
    assert {r["date"] for r in full["data"]} == {"2026-11-18T00:00:00Z"}
    paged, page = [], None
    while True:
        params = {"starting_at": "2026-11-18", "limit": 3, **({"page": page} if page else {})}
        body = client.get(PATH, params=params, headers=HEADERS).json()
        paged += body["data"]
        if not body["has_more"]:
            break
        page = body["next_page"]
    assert paged == full["data"]


def test_actors_are_users_and_api_keys(client):
    data = [r for d in range(10, 19) for r in client.get(
        PATH, params={"starting_at": f"2026-11-{d}", "limit": 1000}, headers=HEADERS).json()["data"]]
    kinds = {r["actor"]["type"] for r in data}
    assert kinds == {"user_actor", "api_actor"}
    assert all(isinstance(m["estimated_cost"]["amount"], int) for r in data for m in r["model_breakdown"])
    assert {r["customer_type"] for r in data} == {"api", "subscription"}


@pytest.mark.parametrize(("params", "message"), [
    ({}, "starting_at: field required"),
    ({"starting_at": "2026-11-18T00:00:00Z"}, "expected a date YYYY-MM-DD"),
    ({"starting_at": "2026-11-18", "limit": 1001}, "between 1 and 1000"),
    ({"starting_at": "2026-11-18", "page": "page_bogus"}, "invalid page token"),
])
def test_bad_queries_get_the_anthropic_error_envelope(client, params, message):
    response = client.get(PATH, params=params, headers=HEADERS)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert message in body["error"]["message"]


def test_the_admin_key_is_required(client):
    assert client.get(PATH, params={"starting_at": "2026-11-18"}).status_code == 401
