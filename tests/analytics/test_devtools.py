"""Coding-tool KPIs from a ledger synced from the Claude Code and Cursor fakes, re-derived from the fakes' data."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from tallybook.analytics.devtools import devtools
from tallybook.analytics.rollups import ReportError
from tallybook.connectors.claude_code import ClaudeCodeConnector
from tallybook.connectors.cursor import CursorConnector
from tallybook.connectors.sync import sync_connection
from tallybook.fakes.anthropic_admin import AnthropicAdminFake
from tallybook.fakes.cursor_admin import DEMO_KEY, IDLE, CursorAdminFake
from tallybook.fakes.server import serve_in_thread
from tallybook.ledger import store
from tests.cli.helpers import ok
from tests.support import FAKE_NOW

START, END = datetime(2026, 10, 26), datetime(2026, 11, 16)  # three whole ISO weeks, Monday to Sunday
Q = Decimal("0.0001")


@pytest.fixture(scope="module")
def fakes():
    anthropic, cursor = AnthropicAdminFake(now=FAKE_NOW), CursorAdminFake(now=FAKE_NOW, rate_limit=10_000)
    with serve_in_thread(anthropic.app) as a, serve_in_thread(cursor.app) as c:
        yield anthropic, cursor, a.url, c.url


@pytest.fixture
def ledger(engine, fakes):
    _, _, a_url, c_url = fakes
    with engine.begin() as conn:
        org = store.ensure_org(conn, "default")  # the CLI's organisation when --org is not given
    for i, connector in enumerate((ClaudeCodeConnector("sk-ant-admin01-demo-0000000000000000", base_url=a_url),
                                   CursorConnector(DEMO_KEY, base_url=c_url, rate=None)), 1):
        sync_connection(engine, connector, org_id=org, connection_id=i, connection_name=connector.provider,
                        start=START, end=END, hourly_from=None, now=FAKE_NOW)
        connector.close()
    return org


def _days():
    day = START.date()
    while day < END.date():
        yield day
        day += timedelta(days=1)


def truth(anthropic: AnthropicAdminFake, cursor: CursorAdminFake) -> dict[str, dict[date, set[str]]]:
    """Active people per tool and day, straight from the fakes' records."""
    active: dict[str, dict[date, set[str]]] = {"claude_code": defaultdict(set), "cursor": defaultdict(set)}
    for day in _days():
        for r in anthropic.claude_code.records(day):
            if r["actor"]["type"] == "user_actor":
                active["claude_code"][day].add(r["actor"]["email_address"])
        for r in cursor.day(day)[0]:
            if r["isActive"]:
                active["cursor"][day].add(r["email"])
    return active


def test_kpis_equal_the_fakes_data(engine, ledger, fakes):
    anthropic, cursor, *_ = fakes
    with engine.connect() as conn:
        rows = {r.tool: r.as_dict() for r in devtools(conn, ledger, START, END)}
    cc, cu, every = rows["claude_code"], rows["cursor"], rows["all"]
    exp = anthropic.claude_code.expected(START, END)
    assert [cc[k] for k in ("sessions", "lines_added", "lines_accepted", "commits", "pull_requests")] == \
        [exp["sessions"], exp["lines_added"], exp["lines_added"], exp["commits"], exp["pull_requests"]]
    assert cc["acceptance_rate"] == (Decimal(exp["tool_accepted"]) / (exp["tool_accepted"] + exp["tool_rejected"])).quantize(Q)
    assert (cc["cost"], cc["cost_origin"]) == (exp["cost_cents"] / 100, "estimated")
    assert cc["requests"] is None and cu["sessions"] is None and cu["commits"] is None

    per = cursor.expected(START, END)
    assert cu["lines_accepted"] == sum(m.get("acceptedLinesAdded", 0) for m in per.values())
    assert cu["requests"] == sum(m.get(k, 0) for m in per.values() for k in (
        "composerRequests", "chatRequests", "agentRequests", "cmdkUsages", "bugbotUsages"))
    cents = sum((m.get("charged_cents", Decimal(0)) for m in per.values()), Decimal(0))
    assert (cu["cost"], cu["cost_origin"]) == (cents / 100, "reported")

    active = truth(anthropic, cursor)
    days = (END - START).days
    for tool, row in (("claude_code", cc), ("cursor", cu)):
        people = set().union(*active[tool].values())
        assert row["active_users"] == len(people)
        assert row["dau"] == (Decimal(sum(len(p) for p in active[tool].values())) / days).quantize(Q)
        assert row["wau"] == len(set().union(*(p for d, p in active[tool].items() if d >= END.date() - timedelta(days=7))))
        assert row["cost_per_active_user"] == (row["cost"] / len(people)).quantize(Q)
        assert row["cost_per_accepted_line"] == (row["cost"] / row["lines_accepted"]).quantize(Q)
    assert IDLE not in set().union(*active["cursor"].values())
    assert cc["active_api_keys"] == 2
    union = set().union(*active["claude_code"].values(), *active["cursor"].values())
    assert every["active_users"] == len(union) < cc["active_users"] + cu["active_users"]  # a person counted once
    assert (every["cost"], every["cost_origin"]) == (cc["cost"] + cu["cost"], "estimated+reported")
    assert every["lines_accepted"] == cc["lines_accepted"] + cu["lines_accepted"]


def test_weeks_add_up_to_the_window(engine, ledger):
    with engine.connect() as conn:
        whole = {r.tool: r.as_dict() for r in devtools(conn, ledger, START, END)}
        weeks = [r.as_dict() for r in devtools(conn, ledger, START, END, period="week")]
    assert [w["period"] for w in weeks if w["tool"] == "cursor"] == ["2026-10-26", "2026-11-02", "2026-11-09"]
    for tool in ("claude_code", "cursor", "all"):
        mine = [w for w in weeks if w["tool"] == tool]
        for name in ("lines_added", "tokens", "cost"):
            assert sum(w[name] for w in mine) == whole[tool][name]
        assert max(w["active_users"] for w in mine) <= whole[tool]["active_users"]
    with engine.connect() as conn:  # one tool, and choices that do not exist
        assert [r.tool for r in devtools(conn, ledger, START, END, tools=["cursor"])] == ["cursor"]
        with pytest.raises(ReportError, match="Unknown coding tool copilot"):
            devtools(conn, ledger, START, END, tools=["copilot"])
        with pytest.raises(ReportError, match="choose from day, week, month"):
            devtools(conn, ledger, START, END, period="year")


def test_the_cli_report(cli_env, ledger, engine):
    rows = ok("report", "devtools", "--from", "2026-10-26", "--to", "2026-11-15", "--format", "json",
              env=cli_env).json()
    with engine.connect() as conn:
        direct = {r.tool: r.as_dict() for r in devtools(conn, ledger, START, END)}
    assert {r["tool"]: (r["sessions"], r["active_users"], Decimal(r["cost"])) for r in rows} == \
        {t: (d["sessions"], d["active_users"], d["cost"]) for t, d in direct.items()}
    csv = ok("report", "devtools", "--from", "2026-10-26", "--to", "2026-11-15", "--tool", "cursor", "--by", "month",
             "--format", "csv", env=cli_env).stdout.splitlines()
    assert csv[0].startswith("tool,period,start,end,active_users") and len(csv) == 3  # October and November


def test_claude_code_estimates_and_tokens_stay_out_of_default_totals(engine):
    """Regression: the demo printed Claude Code's estimated cost as vendor-reported spend, added to the total."""
    from tallybook.analytics.rates import rates
    from tallybook.analytics.rollups import ReportQuery, cost_report, usage_report
    from tallybook.ledger import rollup
    from tallybook.ledger.records import CostRecord, UsageRecord

    day = datetime(2026, 11, 2)

    def write(conn, org, source, usage, costs):  # type: ignore[no-untyped-def]
        store.replace_window(conn, org_id=org, connection_id=1, source=source, stream=source, bucket_width="1d",
                             start=day, end=day + timedelta(days=1), usage=usage, costs=costs)

    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        common = {"bucket_start": day, "bucket_width": "1d"}
        write(conn, org, "claude_code", [
            UsageRecord("claude_code", "claude_code", provider="claude_code", model="claude-x", input_tokens=100,
                        user="a@x", **common),
            UsageRecord("claude_code", "claude_code", provider="claude_code", unit="sessions", quantity=3,
                        user="a@x", **common)],
            [CostRecord("claude_code", "claude_code", provider="claude_code", amount=Decimal(7), currency="USD",
                        origin="estimated", user="a@x", **common)])
        write(conn, org, "cursor", [
            UsageRecord("cursor", "cursor", provider="cursor", model="gpt-5", input_tokens=10, requests=1, **common)],
            [CostRecord("cursor", "cursor", provider="cursor", amount=Decimal(2), currency="USD", user="a@x",
                        **common)])
        rollup.refresh_daily(conn, org, day, day + timedelta(days=1))
    query = ReportQuery(org_id=org, start=day, end=day + timedelta(days=1), group_by=["provider"])
    with engine.connect() as conn:
        costs = {r["provider"]: (r["amount"], r["origin"]) for r in cost_report(conn, query)}
        usage = {r["provider"]: (r["input_tokens"], r["quantities"]) for r in usage_report(conn, query)}
        only = ReportQuery(org_id=org, start=day, end=day + timedelta(days=1), filters={"source": ["claude_code"]})
        estimated = cost_report(conn, only)
        rated = {r.group["provider"] for r in rates(conn, query)}
    assert costs == {"cursor": (Decimal(2), "reported")}
    assert usage == {"claude_code": (0, {"sessions": 3}), "cursor": (10, {})}
    assert [(r["amount"], r["origin"]) for r in estimated] == [(Decimal(7), "estimated")]
    assert rated == set()
