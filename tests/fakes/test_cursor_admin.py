"""The Cursor fake follows the reference: Basic auth, epoch-ms ranges of at most 30 days, paging, 429."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import pytest
from starlette.testclient import TestClient

from tallybook.fakes.cursor_admin import DEMO_KEY, IDLE, REMOVED, CursorAdminFake, ms
from tests.support import FAKE_NOW

AUTH = {"authorization": "Basic " + base64.b64encode(f"{DEMO_KEY}:".encode()).decode()}


@pytest.fixture
def client():
    return TestClient(CursorAdminFake(now=FAKE_NOW, rate_limit=1000).app)


def test_basic_auth_with_the_key_as_user_name(client):
    assert client.get("/teams/members", headers=AUTH).status_code == 200
    bad = "Basic " + base64.b64encode(b"key_other:").decode()
    refused = client.get("/teams/members", headers={"authorization": bad})
    assert refused.status_code == 401 and "error" in refused.json()
    missing = client.get("/teams/members")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Basic")


def test_members_list_the_removed_and_the_idle(client):
    members = {m["email"]: m for m in client.get("/v1/teams/members", headers=AUTH).json()["teamMembers"]}
    assert members[REMOVED]["isRemoved"] is True and not members[IDLE]["isRemoved"]
    assert set(members[REMOVED]) == {"id", "name", "email", "role", "isRemoved"}


def test_daily_usage_takes_at_most_30_days(client):
    start = datetime(2026, 10, 1)
    ok = client.post("/teams/daily-usage-data", headers=AUTH,
                     json={"startDate": ms(start), "endDate": ms(start + timedelta(days=30))})
    assert ok.status_code == 200 and ok.json()["period"]["startDate"] == ms(start)
    assert {r["email"] for r in ok.json()["data"]} >= {REMOVED}
    assert IDLE not in {r["email"] for r in ok.json()["data"]}
    too_long = client.post("/teams/daily-usage-data", headers=AUTH,
                           json={"startDate": ms(start), "endDate": ms(start + timedelta(days=31))})
    assert too_long.status_code == 400 and "30 days" in too_long.json()["error"]
    assert client.post("/teams/daily-usage-data", headers=AUTH, json={}).status_code == 400


def test_removed_member_has_no_activity_from_her_removal():
    f = CursorAdminFake(now=FAKE_NOW)
    day = f.removed_on
    assert all(r["email"] != REMOVED for r in f.day(day.date())[0])
    assert any(r["email"] == REMOVED for d in range(1, 15) for r in f.day((day - timedelta(days=d)).date())[0])


def test_events_page_until_the_count(client):
    body = {"startDate": ms(datetime(2026, 11, 1)), "endDate": ms(datetime(2026, 11, 10)), "pageSize": 25}
    first = client.post("/teams/filtered-usage-events", headers=AUTH, json=body).json()
    total, pages = first["totalUsageEventsCount"], first["pagination"]["numPages"]
    seen = list(first["usageEvents"])
    for page in range(2, pages + 1):
        seen += client.post("/teams/filtered-usage-events", headers=AUTH, json={**body, "page": page}).json()["usageEvents"]
    assert len(seen) == total > 25 and len({(e["timestamp"], e["userEmail"]) for e in seen}) == total
    assert all(isinstance(e["timestamp"], str) for e in seen)
    assert client.post("/teams/filtered-usage-events", headers=AUTH, json={"pageSize": 0}).status_code == 400


def test_spend_covers_the_current_cycle(client):
    body = client.post("/teams/spend", headers=AUTH, json={}).json()
    assert body["subscriptionCycleStart"] == ms(datetime(2026, 11, 3))
    assert body["totalMembers"] == 7 and body["totalPages"] == 1
    assert all("overallSpendCents" in s for s in body["teamMemberSpend"])


def test_20_requests_a_minute_then_429_with_retry_after():
    client = TestClient(CursorAdminFake(now=FAKE_NOW).app)
    statuses = [client.get("/teams/members", headers=AUTH).status_code for _ in range(21)]
    assert statuses == [200] * 20 + [429]
    limited = client.get("/teams/members", headers=AUTH)
    assert 1 <= int(limited.headers["retry-after"]) <= 60 and "Rate limit" in limited.json()["error"]
