"""The Claude Code analytics connector against the fake Anthropic admin API on a real port."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from tallybook.connectors.base import Task
from tallybook.connectors.claude_code import PATH, ClaudeCodeConnector
from tallybook.connectors.http import RetryPolicy
from tallybook.errors import AuthError, ProviderUnavailable, ResponseError
from tallybook.fakes.anthropic_admin import AnthropicAdminFake
from tallybook.fakes.server import serve_in_thread
from tests.connectors.coding_support import cost_by_user, ledger_totals, per_user, run
from tests.support import FAKE_NOW, window

KEY = "sk-ant-admin01-demo-0000000000000000"
START, END = window(10)
MEASURES = ("sessions", "lines_added", "lines_removed", "commits", "pull_requests", "tool_accepted",
            "tool_rejected", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@pytest.fixture(scope="module")
def fake():
    return AnthropicAdminFake(now=FAKE_NOW)


@pytest.fixture(scope="module")
def server(fake):
    with serve_in_thread(fake.app) as running:
        yield running


@pytest.fixture
def connect(server, fake):
    fake.faults.clear()
    made = []

    def make(api_key: str = KEY, page_size: int = 7, **kwargs):
        kwargs.setdefault("retry", RetryPolicy(attempts=3, base_delay=0))
        connector = ClaudeCodeConnector(api_key, base_url=server.url, key_hint="sk-ant-…0000", **kwargs)
        connector.page_size = page_size  # small pages, so every day pages several times
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()
    fake.faults.clear()


def test_plan_is_one_task_a_day():
    tasks = ClaudeCodeConnector(KEY).plan(datetime(2026, 11, 1), datetime(2026, 11, 3, 12))
    assert [(t.stream, t.bucket_width, t.start, t.end) for t in tasks] == [
        ("claude_code", "1d", datetime(2026, 11, d), datetime(2026, 11, d + 1)) for d in (1, 2, 3)]


def test_synced_totals_equal_the_seeded_data_exactly(engine, connect, fake):
    result = run(engine, connect(), START, END, FAKE_NOW)
    expected = fake.claude_code.expected(START, END)
    got = ledger_totals(engine, "claude_code")
    assert {m: got.get(m, 0) for m in MEASURES} == {m: expected[m] for m in MEASURES}
    assert got["cost_estimated"] == expected["cost_cents"] / 100
    assert "cost_reported" not in got  # the vendor's estimate is never presented as a bill
    assert result.pages > result.tasks == 10  # paged: more than one page a day on busy days
    # the daily rollup reports read agrees with the records
    assert got["rollup_quantity"] == sum(got[m] for m in MEASURES[:7])
    assert got["rollup_input_tokens"] == got["input_tokens"]


def test_actors_are_users_by_email_and_api_keys_by_name(engine, connect, fake):
    run(engine, connect(), START, END, FAKE_NOW)
    expected = fake.claude_code.expected(START, END)["actors"]
    sessions = per_user(engine, "claude_code", "sessions")
    users = {k: v["sessions"] for k, v in expected.items() if "@" in k}
    assert sessions.pop(None) == sum(v["sessions"] for k, v in expected.items() if "@" not in k)
    assert sessions == users
    costs = cost_by_user(engine, "claude_code")
    assert costs[None] > 0 and set(costs) - {None} <= set(users)


def test_resyncing_a_window_changes_nothing(engine, connect):
    run(engine, connect(), START, END, FAKE_NOW)
    first = ledger_totals(engine, "claude_code")
    run(engine, connect(page_size=1000), START, END, FAKE_NOW)
    assert ledger_totals(engine, "claude_code") == first


def test_a_429_with_retry_after_is_waited_out(connect, fake):
    waits: list[float] = []
    fake.faults.add({"path": PATH, "kind": "status", "status": 429, "retry_after": "0.01", "times": 2})
    connector = connect(sleep=waits.append)
    day = Task("claude_code", "1d", START, START + timedelta(days=1))
    chunk = connector.fetch(day)
    assert waits[:2] == [0.01, 0.01]
    assert sum(r.quantity for r in chunk.usage if r.unit == "sessions") == \
        fake.claude_code.expected(START, START + timedelta(days=1))["sessions"]
    assert [r["status"] for r in fake.faults.requests][:2] == [429, 429]


@pytest.mark.parametrize(("fault", "error", "words"), [
    ({"kind": "status", "status": 401, "times": -1}, AuthError, "rejected the admin key"),
    ({"kind": "status", "status": 500, "times": -1}, ProviderUnavailable, "nothing was lost"),
    ({"kind": "malformed_json", "times": -1}, ResponseError, "not JSON"),
])
def test_faults_give_one_clear_error_and_lose_nothing(engine, connect, fake, fault, error, words):
    run(engine, connect(), START, END, FAKE_NOW)
    before = ledger_totals(engine, "claude_code")
    fake.faults.add({"path": PATH, **fault})
    with pytest.raises(error) as caught:
        run(engine, connect(), START, END, FAKE_NOW)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert ledger_totals(engine, "claude_code") == before


def test_a_record_of_another_day_fails_that_day_only():
    record = {"date": "2026-11-02T00:00:00Z", "actor": {"type": "user_actor", "email_address": "a@b.c"},
              "core_metrics": {"num_sessions": 1, "lines_of_code": {"added": 1, "removed": 0},
                               "commits_by_claude_code": 0, "pull_requests_by_claude_code": 0}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps({"data": [record], "has_more": False, "next_page": None}))

    connector = ClaudeCodeConnector(KEY, transport=httpx.MockTransport(handler))
    with pytest.raises(ResponseError, match="2026-11-01: field `date`"):
        connector.fetch(Task("claude_code", "1d", datetime(2026, 11, 1), datetime(2026, 11, 2)))
    record["date"] = "2026-11-01T00:00:00Z"
    del record["core_metrics"]["num_sessions"]
    with pytest.raises(ResponseError, match="core_metrics.num_sessions` is missing"):
        connector.fetch(Task("claude_code", "1d", datetime(2026, 11, 1), datetime(2026, 11, 2)))


def test_fractional_cents_stay_exact():
    record = {"date": "2026-11-01T00:00:00Z", "actor": {"type": "api_actor", "api_key_name": "ci"},
              "customer_type": "api",
              "core_metrics": {"num_sessions": 2, "lines_of_code": {"added": 1, "removed": 0},
                               "commits_by_claude_code": 0, "pull_requests_by_claude_code": 0},
              "model_breakdown": [{"model": "claude-x", "tokens": {"input": 1, "output": 2, "cache_read": 0,
                                                                    "cache_creation": 0},
                                   "estimated_cost": {"currency": "USD", "amount": 12.345}}]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps({"data": [record], "has_more": False, "next_page": None}))

    chunk = ClaudeCodeConnector(KEY, transport=httpx.MockTransport(handler)).fetch(
        Task("claude_code", "1d", datetime(2026, 11, 1), datetime(2026, 11, 2)))
    [cost] = chunk.costs
    assert (cost.amount, cost.origin, cost.api_key, cost.user, cost.cost_type) == (
        Decimal("0.12345"), "estimated", "ci", None, "api")
