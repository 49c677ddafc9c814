"""The demo organisation's finance side: loaded idempotently, and `tallybook demo` then gives a finance
report with every section filled, in under five seconds, whose totals the ledger's rows re-derive."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tallybook.analytics.finance import finance_report, parse_period
from tallybook.cli.demo_finance import load_demo_finance
from tallybook.ledger import schema as t
from tallybook.ledger import schema_identity as ti
from tallybook.ledger import store
from tallybook.ledger.identities import load_identities
from tests.cli.helpers import ok
from tests.finance.seed import ledger_spend


def seats(conn: sa.Connection) -> list[tuple[str, datetime]]:
    c = ti.seat_assignments.c
    return sorted(conn.execute(sa.select(c.email, c.assigned_from)).all())


def test_loading_the_demo_finance_twice_changes_nothing(engine: sa.Engine) -> None:
    today = datetime(2026, 11, 20)
    with engine.begin() as conn:
        org = store.ensure_org(conn, "default")
        first = load_demo_finance(conn, org, today)
    with engine.connect() as conn:
        before = load_identities(conn, org).rows()
        invoiced = conn.execute(sa.select(sa.func.sum(t.cost_records.c.amount_nanos))).scalar()
        held = seats(conn)
    with engine.begin() as conn:
        load_demo_finance(conn, org, today)
    with engine.connect() as conn:
        assert load_identities(conn, org).rows() == before
        assert conn.execute(sa.select(sa.func.sum(t.cost_records.c.amount_nanos))).scalar() == invoiced
        assert seats(conn) == held and len(held) == 6
        mover = load_identities(conn, org).lookup("email", "katherine.johnson@example.com", datetime(2026, 10, 15))
        before_move = load_identities(conn, org).lookup("email", "katherine.johnson@example.com", datetime(2026, 10, 14))
    assert first.moved_on.isoformat() == "2026-10-15"
    assert (before_move.team, mover.team) == ("research", "platform")  # type: ignore[union-attr]


def test_a_demo_run_a_month_later_gives_no_one_a_second_seat(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "default")
        load_demo_finance(conn, org, datetime(2026, 11, 20))
        load_demo_finance(conn, org, datetime(2026, 12, 20))
    with engine.connect() as conn:
        held = seats(conn)
    assert len(held) == 6 and {since for _, since in held} == {datetime(2026, 8, 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_demo_finance_report_is_complete_fast_and_adds_up(engine: sa.Engine, cli_env) -> None:
    ok("demo", "--no-serve", "--days", "62", "--openai-port", str(_free_port()), "--anthropic-port", str(_free_port()),
       "--cursor-port", str(_free_port()))
    today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    month = f"{today.replace(day=1) - timedelta(days=1):%Y-%m}"
    # CPU time of this process: what the report costs, not how busy the shared test machine is
    started = time.process_time()
    report = ok("report", "finance", "--month", month, "--format", "json").json()
    assert time.process_time() - started < 5
    period = parse_period(month)
    claude_seats = Decimal(6 * 30)
    assert Decimal(report["usage_total"]) == ledger_spend(engine, period.start, period.end)
    assert Decimal(report["seat_total"]) >= claude_seats
    assert Decimal(report["total"]) == Decimal(report["usage_total"]) + Decimal(report["seat_total"])
    teams = {r["name"] for r in report["teams"]}
    assert {"platform", "research", "support", "data", "unallocated"} <= teams
    assert Decimal(report["unallocated"]["amount"]) > 0 and report["top_users"]
    claude = next(p for p in report["platforms"] if p["platform"] == "claude")
    assert Decimal(claude["vendor_reported"]) == claude_seats + 15  # the prorated seat on the invoice
    assert Decimal(claude["difference"]) == Decimal(claude["total"]) - Decimal(claude["vendor_reported"])
    assert "edsger.dijkstra@example.com" in {s["email"] for s in report["idle_seats"]}
    with engine.connect() as conn:
        org = conn.execute(sa.select(t.organisations.c.id)).scalar_one()
        direct = finance_report(conn, org, period)
    assert direct.total == Decimal(report["total"])
