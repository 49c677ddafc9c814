"""Period-over-period trends: exact Decimal changes for day to year, currencies never mixed."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tallybook.analytics.rollups import ReportError, ReportQuery
from tallybook.analytics.trends import next_period, pct_change, period_label, period_start, trend
from tallybook.ledger import store
from tallybook.ledger.records import CostRecord, UsageRecord

START, END = datetime(2025, 10, 1), datetime(2026, 7, 1)
COSTS = [  # (day, provider, amount, currency)
    (date(2025, 11, 15), "openai", "10.10", "USD"),
    (date(2025, 12, 31), "openai", "20.20", "USD"),
    (date(2026, 1, 1), "openai", "30.30", "USD"),
    (date(2026, 1, 1), "openai", "7", "EUR"),
    (date(2026, 1, 5), "anthropic", "5", "USD"),
    (date(2026, 2, 10), "openai", "0.000000001", "USD"),
    (date(2026, 4, 1), "openai", "15.15", "USD"),
]


def midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


@pytest.fixture
def org(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        for provider in ("openai", "anthropic"):
            source = f"{provider}_admin"
            costs = [CostRecord(source=source, stream="costs", bucket_start=midnight(d), bucket_width="1d",
                                provider=p, amount=Decimal(a), currency=c, line_item=f"{p} {c}")
                     for d, p, a, c in COSTS if p == provider]
            usage = [UsageRecord(source=source, stream="usage", bucket_width="1d", provider=provider,
                                 bucket_start=datetime(2026, m, 3), input_tokens=100 * m, output_tokens=m)
                     for m in (1, 2) if provider == "openai"]
            for stream, kw in (("costs", {"costs": costs}), ("usage", {"usage": usage})):
                store.replace_window(conn, org_id=org, connection_id=1, source=source, stream=stream,
                                     bucket_width="1d", start=START, end=END, **kw)  # type: ignore[arg-type]
    return org


def run(engine: sa.Engine, org: int, period: str, group_by: tuple[str, ...] = (),
        start: datetime = START, end: datetime = END) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        rows = trend(conn, ReportQuery(org_id=org, start=start, end=end, group_by=group_by), period)
    return [(*r.group.values(), r.currency, r.period, r.amount, r.change, r.change_pct, r.complete)
            for r in rows]


def D(text: str) -> Decimal:
    return Decimal(text)


def test_years_compare_exactly_and_keep_currencies_apart(engine: sa.Engine, org: int) -> None:
    assert run(engine, org, "year") == [
        ("EUR", "2025", D("0"), None, None, False),
        ("EUR", "2026", D("7"), D("7"), None, False),  # from zero: a change but no percentage
        ("USD", "2025", D("30.30"), None, None, False),
        ("USD", "2026", D("50.450000001"), D("20.150000001"), D("66.50"), False),
    ]


def test_quarters_include_empty_ones_and_flag_cut_periods(engine: sa.Engine, org: int) -> None:
    rows = [r for r in run(engine, org, "quarter") if r[0] == "USD"]
    assert rows == [
        ("USD", "2025-Q4", D("30.30"), None, None, True),
        ("USD", "2026-Q1", D("35.300000001"), D("5.000000001"), D("16.50"), True),
        ("USD", "2026-Q2", D("15.15"), D("-20.150000001"), D("-57.08"), True),
    ]
    cut = run(engine, org, "quarter", start=datetime(2025, 11, 15), end=datetime(2026, 2, 11))
    assert [(r[1], r[2], r[5]) for r in cut if r[0] == "USD"] == [
        ("2025-Q4", D("30.30"), False), ("2026-Q1", D("35.300000001"), False)]


def test_months_per_provider(engine: sa.Engine, org: int) -> None:
    rows = [r[2:6] for r in run(engine, org, "month", ("provider",)) if r[:2] == ("openai", "USD")]
    assert rows == [
        ("2025-10", D("0"), None, None),
        ("2025-11", D("10.10"), D("10.10"), None),
        ("2025-12", D("20.20"), D("10.10"), D("100.00")),
        ("2026-01", D("30.30"), D("10.10"), D("50.00")),
        ("2026-02", D("0.000000001"), D("-30.299999999"), D("-100.00")),
        ("2026-03", D("0"), D("-0.000000001"), D("-100.00")),
        ("2026-04", D("15.15"), D("15.15"), None),
        ("2026-05", D("0"), D("-15.15"), D("-100.00")),
        ("2026-06", D("0"), D("0"), None),
    ]
    assert {r[0] for r in run(engine, org, "month", ("provider",))} == {"anthropic", "openai"}


def test_weeks_start_on_monday_and_days_are_contiguous(engine: sa.Engine, org: int) -> None:
    weeks = run(engine, org, "week", start=datetime(2025, 12, 29), end=datetime(2026, 1, 12))
    assert [r[:5] for r in weeks if r[0] == "USD"] == [
        ("USD", "2025-12-29", D("50.50"), None, None),
        ("USD", "2026-01-05", D("5"), D("-45.50"), D("-90.10"))]
    days = run(engine, org, "day", start=datetime(2025, 12, 30), end=datetime(2026, 1, 3))
    assert [r[1:5] for r in days if r[0] == "USD"] == [
        ("2025-12-30", D("0"), None, None), ("2025-12-31", D("20.20"), D("20.20"), None),
        ("2026-01-01", D("30.30"), D("10.10"), D("50.00")), ("2026-01-02", D("0"), D("-30.30"), D("-100.00"))]


def test_tokens_beside_the_cost(engine: sa.Engine, org: int) -> None:
    with engine.connect() as conn:
        rows = trend(conn, ReportQuery(org_id=org, start=START, end=END, group_by=["provider"]), "month")
        by_item = trend(conn, ReportQuery(org_id=org, start=START, end=END, group_by=["line_item"]), "month")
    tokens = {r.period: r.tokens for r in rows if r.group["provider"] == "openai" and r.currency == "USD"}
    assert (tokens["2026-01"], tokens["2026-02"], tokens["2025-12"]) == (101, 202, 0)
    assert {r.tokens for r in by_item} == {None}  # usage has no line items
    assert rows[0].as_dict()["origin"] == "reported"


def test_a_period_is_not_a_group(engine: sa.Engine, org: int) -> None:
    with engine.connect() as conn, pytest.raises(ReportError, match="period"):
        trend(conn, ReportQuery(org_id=org, start=START, end=END, group_by=["month"]), "day")
    with engine.connect() as conn, pytest.raises(ReportError, match="hour"):
        trend(conn, ReportQuery(org_id=org, start=START, end=END), "hour")


@pytest.mark.parametrize(("day", "period", "start", "label", "nxt"), [
    (date(2026, 10, 7), "day", date(2026, 10, 7), "2026-10-07", date(2026, 10, 8)),
    (date(2026, 1, 1), "week", date(2025, 12, 29), "2025-12-29", date(2026, 1, 5)),
    (date(2026, 12, 31), "month", date(2026, 12, 1), "2026-12", date(2027, 1, 1)),
    (date(2026, 3, 31), "quarter", date(2026, 1, 1), "2026-Q1", date(2026, 4, 1)),
    (date(2026, 11, 30), "quarter", date(2026, 10, 1), "2026-Q4", date(2027, 1, 1)),
    (date(2026, 7, 4), "year", date(2026, 1, 1), "2026", date(2027, 1, 1)),
])
def test_period_arithmetic(day: date, period: str, start: date, label: str, nxt: date) -> None:
    assert period_start(day, period) == start
    assert period_label(start, period) == label
    assert next_period(start, period) == nxt


def test_pct_change_rounds_half_even_to_a_hundredth() -> None:
    assert pct_change(D("1.000125"), D("1")) == D("0.01")  # 0.0125 % -> 0.01
    assert pct_change(D("2"), D("3")) == D("-33.33")
    assert pct_change(D("5"), D("0")) is None
