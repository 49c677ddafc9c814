"""The Cursor admin connector against the fake Cursor admin API on a real port."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tallybook.connectors.cursor import DAILY, EVENTS, CursorConnector
from tallybook.connectors.http import RetryPolicy
from tallybook.connectors.pacing import Pacer
from tallybook.errors import AuthError, ProviderUnavailable, ResponseError
from tallybook.fakes.cursor_admin import DEMO_KEY, REMOVED, CursorAdminFake
from tallybook.fakes.server import serve_in_thread
from tallybook.ledger.schema_coding import coding_cycle_spend, coding_members
from tallybook.money import from_nanos
from tests.connectors.coding_support import cost_by_user, ledger_totals, per_user, run
from tests.support import FAKE_NOW

START, END = datetime(2026, 10, 12), datetime(2026, 11, 20)  # 39 days: two 30-day tasks a stream
# fake's daily-usage field -> our unit
UNITS = {"totalLinesAdded": "lines_added", "totalLinesDeleted": "lines_removed", "totalAccepts": "tool_accepted",
         "totalRejects": "tool_rejected", "acceptedLinesAdded": "accepted_lines_added", "active_days": "active_days",
         "totalTabsShown": "tabs_shown", "totalTabsAccepted": "tabs_accepted", "totalApplies": "applies"}
REQUESTS = ("composerRequests", "chatRequests", "agentRequests", "cmdkUsages", "bugbotUsages")


@pytest.fixture(scope="module")
def fake():
    return CursorAdminFake(now=FAKE_NOW, rate_limit=10_000)


@pytest.fixture(scope="module")
def server(fake):
    with serve_in_thread(fake.app) as running:
        yield running


@pytest.fixture
def connect(server, fake):
    fake.faults.clear()
    made = []

    def make(api_key: str = DEMO_KEY, url: str | None = None, **kwargs):
        kwargs.setdefault("retry", RetryPolicy(attempts=3, base_delay=0))
        kwargs.setdefault("rate", None)
        connector = CursorConnector(api_key, base_url=url or server.url, key_hint="key_…demo", **kwargs)
        connector.events_page = 40  # small pages: every 30-day task pages
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()
    fake.faults.clear()


def expected_totals(fake: CursorAdminFake) -> dict[str, object]:
    per = fake.expected(START, END)
    out: dict[str, object] = {unit: sum(m.get(field, 0) for m in per.values()) for field, unit in UNITS.items()}
    out["requests_units"] = sum(m.get(f, 0) for m in per.values() for f in REQUESTS)
    out["events"] = sum(m.get("events", 0) for m in per.values())
    for field, measure in (("inputTokens", "input_tokens"), ("outputTokens", "output_tokens"),
                           ("cacheReadTokens", "cache_read_tokens"), ("cacheWriteTokens", "cache_write_tokens")):
        out[measure] = sum(m.get(field, 0) for m in per.values())
    out["cents"] = sum((m.get("charged_cents", Decimal(0)) for m in per.values()), Decimal(0))
    return out


def test_plan_cuts_each_stream_into_30_day_tasks():
    tasks = CursorConnector(DEMO_KEY, rate=None).plan(START, END)
    assert [(t.stream, t.start, t.end) for t in tasks] == [
        (s, a, b) for s in ("daily", "events")
        for a, b in ((START, START + timedelta(days=30)), (START + timedelta(days=30), END))]


def test_synced_totals_equal_the_seeded_data_exactly(engine, connect, fake):
    result = run(engine, connect(), START, END, FAKE_NOW)
    expected = expected_totals(fake)
    got = ledger_totals(engine, "cursor")
    assert {u: got.get(u, 0) for u in UNITS.values()} == {u: expected[u] for u in UNITS.values()}
    assert (got["requests"], got["request_measure"]) == (expected["requests_units"], expected["events"])
    assert {m: got[m] for m in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")} == \
        {m: expected[m] for m in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")}
    assert got["cost_reported"] == expected["cents"] / 100
    assert result.pages > result.tasks  # the events paged
    assert got["rollup_input_tokens"] == got["input_tokens"]


def test_costs_are_per_member(engine, connect, fake):
    run(engine, connect(), START, END, FAKE_NOW)
    per = fake.expected(START, END)
    want = {email: m["charged_cents"] / 100 for email, m in per.items() if m.get("charged_cents")}
    assert cost_by_user(engine, "cursor") == want


def test_the_member_removed_mid_month(engine, connect, fake):
    run(engine, connect(), START, END, FAKE_NOW)
    with engine.connect() as conn:
        members = {r.email: r for r in conn.execute(sa.select(coding_members))}
    assert members[REMOVED].removed and members[REMOVED].removed_at is not None
    assert sum(m.removed for m in members.values()) == 1 and len(members) == 7
    lines = per_user(engine, "cursor", "lines_added")
    assert lines[REMOVED] == fake.expected(START, END)[REMOVED]["totalLinesAdded"] > 0  # her usage stays
    u = __import__("tallybook.ledger.schema", fromlist=["usage_records"]).usage_records.c
    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(u.bucket_start)).where(u.user == REMOVED)).scalar_one()
    assert last < fake.removed_on
    first_seen = members[REMOVED].removed_at
    run(engine, connect(), START, END, FAKE_NOW + timedelta(hours=1))
    with engine.connect() as conn:
        again = conn.execute(sa.select(coding_members.c.removed_at).where(coding_members.c.email == REMOVED))
        assert again.scalar_one() == first_seen  # a re-sync never moves the removal


def test_resyncing_a_window_changes_nothing(engine, connect):
    run(engine, connect(), START, END, FAKE_NOW)
    first = ledger_totals(engine, "cursor")
    with engine.connect() as conn:
        spend = sorted(tuple(r) for r in conn.execute(sa.select(coding_cycle_spend.c.email,
                                                                coding_cycle_spend.c.spend_nanos)))
    run(engine, connect(), START, END, FAKE_NOW)
    assert ledger_totals(engine, "cursor") == first
    with engine.connect() as conn:
        assert sorted(tuple(r) for r in conn.execute(sa.select(coding_cycle_spend.c.email,
                                                               coding_cycle_spend.c.spend_nanos))) == spend


def test_cycle_spend_is_the_vendors_figure(engine, connect, fake):
    run(engine, connect(), START, END, FAKE_NOW)
    with engine.connect() as conn:
        rows = {r.email: r for r in conn.execute(sa.select(coding_cycle_spend))}
    assert {e: from_nanos(r.spend_nanos) for e, r in rows.items()} == \
        {e: Decimal(c) / 100 for e, c in fake.cycle_spend_cents().items()}
    assert {r.cycle_start for r in rows.values()} == {fake.cycle_start}


def test_the_older_spend_shape_is_read_too(connect):
    old = CursorAdminFake(now=FAKE_NOW, rate_limit=10_000, spend_shape="old")
    with serve_in_thread(old.app) as running:
        directory = connect(url=running.url).directory()
    assert directory.spend and all(s.overall_spend is None for s in directory.spend)


def test_a_429_with_retry_after_is_waited_out_and_nothing_is_lost(engine, connect, fake):
    fake.faults.add({"path": EVENTS, "kind": "status", "status": 429, "retry_after": "0.01", "times": 2})
    run(engine, connect(), START, END, FAKE_NOW)
    assert [r["status"] for r in fake.faults.requests].count(429) == 2
    assert ledger_totals(engine, "cursor")["cost_reported"] == expected_totals(fake)["cents"] / 100


def test_the_fakes_own_rate_limit_is_met_by_retry_after(connect):
    """Without client pacing the fake's 20-a-minute limit (here 4 a second) answers 429; the sync still completes."""
    strict = CursorAdminFake(now=FAKE_NOW, rate_limit=4, rate_window=1.0)
    with serve_in_thread(strict.app) as running:
        connector = connect(url=running.url, retry=RetryPolicy(attempts=6, base_delay=0))
        chunks = [connector.fetch(task) for task in connector.plan(START, END)]
    assert 429 in [r["status"] for r in strict.faults.requests]
    events = sum(r.requests for c in chunks for r in c.usage if c.task.stream == "events")
    assert events == sum(m.get("events", 0) for m in strict.expected(START, END).values())


def test_client_pacing_keeps_under_the_limit(connect):
    strict = CursorAdminFake(now=FAKE_NOW, rate_limit=4, rate_window=1.0)
    with serve_in_thread(strict.app) as running:
        connector = connect(url=running.url, rate=(4, 1.0))
        for task in connector.plan(START, END):
            connector.fetch(task)
        connector.directory()
    statuses = [r["status"] for r in strict.faults.requests]
    assert len(statuses) > 4 and set(statuses) == {200}
    assert connector.pacer is not None and connector.pacer.waited > 0


def test_pacer_waits_only_past_the_limit():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(20, 60.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(20):
        pacer.wait()
        pacer.done()
    assert slept == []
    now[0] = 15.0
    pacer.wait()
    assert slept == [45.0]  # 60 s after the first answer
    pacer.done()
    now[0] = 200.0
    pacer.wait()
    assert slept == [45.0]  # the window has passed: no wait


@pytest.mark.parametrize(("fault", "error", "words"), [
    ({"kind": "status", "status": 401, "times": -1}, AuthError, "rejected the admin key"),
    ({"kind": "status", "status": 500, "times": -1}, ProviderUnavailable, "nothing was lost"),
    ({"kind": "malformed_json", "times": -1}, ResponseError, "not JSON"),
])
def test_faults_give_one_clear_error_and_lose_nothing(engine, connect, fake, fault, error, words):
    run(engine, connect(), START, END, FAKE_NOW)
    before = ledger_totals(engine, "cursor")
    fake.faults.add({"path": DAILY, **fault})
    with pytest.raises(error) as caught:
        run(engine, connect(), START, END, FAKE_NOW)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert ledger_totals(engine, "cursor") == before


def test_a_wrong_key_is_refused_by_basic_auth(connect):
    with pytest.raises(AuthError, match="Cursor rejected the admin key key_…demo"):
        connect(api_key="key_wrong").check_key()
