"""Quarter and year periods in the rollups: the same labels from SQLite and PostgreSQL, boundaries exact."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tallybook.analytics.rollups import ReportQuery, cost_report, usage_report
from tallybook.ledger import store
from tallybook.ledger.records import CostRecord, UsageRecord

# The last and first day of every quarter across a year boundary, so an off-by-one month shows.
DAYS = [datetime(2025, 12, 31), datetime(2026, 1, 1), datetime(2026, 3, 31), datetime(2026, 4, 1),
        datetime(2026, 6, 30), datetime(2026, 7, 1), datetime(2026, 9, 30), datetime(2026, 10, 1),
        datetime(2026, 12, 31)]
START, END = datetime(2025, 12, 1), datetime(2027, 1, 1)


def write(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        costs = [CostRecord(source="openai_admin", stream="costs", bucket_start=d, bucket_width="1d",
                            provider="openai", amount=Decimal(f"{i + 1}.000000001"), currency="usd",
                            line_item="gpt-4o, input") for i, d in enumerate(DAYS)]
        usage = [UsageRecord(source="openai_admin", stream="completions", bucket_start=d, bucket_width="1d",
                             provider="openai", model="gpt-4o", input_tokens=10 ** i)
                 for i, d in enumerate(DAYS)]
        for stream, kw in (("costs", {"costs": costs}), ("completions", {"usage": usage})):
            store.replace_window(conn, org_id=org, connection_id=1, source="openai_admin", stream=stream,
                                 bucket_width="1d", start=START, end=END, **kw)  # type: ignore[arg-type]
    return org


@pytest.mark.parametrize(("period", "expected"), [
    ("quarter", {"2025-Q4": "1.000000001", "2026-Q1": "5.000000002", "2026-Q2": "9.000000002",
                 "2026-Q3": "13.000000002", "2026-Q4": "17.000000002"}),
    ("year", {"2025": "1.000000001", "2026": "44.000000008"}),
    ("month", {"2025-12": "1.000000001", "2026-01": "2.000000001", "2026-03": "3.000000001",
               "2026-04": "4.000000001", "2026-06": "5.000000001", "2026-07": "6.000000001",
               "2026-09": "7.000000001", "2026-10": "8.000000001", "2026-12": "9.000000001"}),
])
def test_costs_by_quarter_and_year(engine: sa.Engine, period: str, expected: dict[str, str]) -> None:
    org = write(engine)
    with engine.connect() as conn:
        rows = cost_report(conn, ReportQuery(org_id=org, start=START, end=END, group_by=[period]))
    assert {r[period]: r["amount"] for r in rows} == {k: Decimal(v) for k, v in expected.items()}
    assert [r[period] for r in rows] == sorted(expected)


def test_usage_by_quarter_and_year_with_other_groups(engine: sa.Engine) -> None:
    org = write(engine)
    with engine.connect() as conn:
        quarters = usage_report(conn, ReportQuery(org_id=org, start=START, end=END,
                                                  group_by=["quarter", "model"]))
        years = usage_report(conn, ReportQuery(org_id=org, start=START, end=END, group_by=["year"]))
    assert {(r["quarter"], r["model"]): r["input_tokens"] for r in quarters} == {
        ("2025-Q4", "gpt-4o"): 1, ("2026-Q1", "gpt-4o"): 110, ("2026-Q2", "gpt-4o"): 11_000,
        ("2026-Q3", "gpt-4o"): 1_100_000, ("2026-Q4", "gpt-4o"): 110_000_000}
    assert {r["year"]: r["input_tokens"] for r in years} == {"2025": 1, "2026": 111_111_110}
