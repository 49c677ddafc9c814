"""Month-end forecasts: close to the truth on a linear series, intervals that hold what they claim."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tallybook.analytics.forecast import forecast, forecast_month, least_squares, t_quantile, weekday_factors
from tallybook.analytics.rollups import ReportError, ReportQuery
from tallybook.ledger import store
from tallybook.ledger.records import CostRecord
from tests.analytics.synthetic import daily

OCTOBER = date(2026, 10, 1)
MID = date(2026, 10, 15)


def linear(seed: int = 11, **kw: float) -> dict[date, Decimal]:
    """August to October: 60 a day on 1 August, growing by 1.2 a day (2 % of the start), 3 % noise."""
    params = {"weekday": 60.0, "slope": 0.02, "noise": 0.03, **kw}
    return daily(date(2026, 8, 1), 92, seed=seed, **params)  # type: ignore[arg-type]


def october(series: dict[date, Decimal]) -> Decimal:
    return sum((v for d, v in series.items() if d.month == 10), Decimal(0))


def test_linear_series_forecast_is_within_two_percent_and_the_interval_holds_the_truth() -> None:
    series = linear()
    truth = october(series)
    f = forecast_month(series, OCTOBER, MID)
    assert abs(f.forecast - truth) <= truth * Decimal("0.02")
    assert f.low is not None and f.high is not None
    assert f.low <= truth <= f.high
    assert f.spent_to_date == sum(v for d, v in series.items() if OCTOBER <= d <= MID)  # exact, reported
    assert (f.month, f.method, f.days_observed, f.days_remaining, f.history_days) == (
        "2026-10", "trend+weekday", 15, 16, 56)
    assert f.low < f.forecast < f.high


def test_an_exact_line_is_forecast_to_the_cent() -> None:
    series = linear(noise=0.0)
    truth = october(series)
    f = forecast_month(series, OCTOBER, MID)
    assert abs(f.forecast - truth) <= Decimal("0.10")  # inputs were rounded to cents
    assert f.low is not None and f.high is not None and f.low <= truth <= f.high


def test_weekly_seasonality_on_a_trend() -> None:
    series = linear(weekend=15.0, noise=0.05, seed=2)  # one case; the coverage test below is the proof
    truth = october(series)
    f = forecast_month(series, OCTOBER, MID)
    assert abs(f.forecast - truth) <= truth * Decimal("0.02")
    assert f.low is not None and f.high is not None and f.low <= truth <= f.high


@pytest.mark.parametrize("weekend", [None, 15.0])
def test_the_80_percent_interval_holds_the_truth_about_80_percent_of_the_time(weekend: float | None) -> None:
    kw = {} if weekend is None else {"weekend": weekend}
    hits = 0
    for seed in range(200):
        series = linear(seed=seed, noise=0.1, **kw)
        f = forecast_month(series, OCTOBER, MID)
        hits += f.low <= october(series) <= f.high  # type: ignore[operator]
    assert 0.72 <= hits / 200 <= 0.88


def test_a_one_off_spike_in_the_history_does_not_tilt_the_projection() -> None:
    series = linear(noise=0.05)
    spiked = {**series, MID - timedelta(days=2): Decimal("2000.00")}  # near the end, where it tilts most
    plain, hit = forecast_month(series, OCTOBER, MID), forecast_month(spiked, OCTOBER, MID)
    projection = plain.forecast - plain.spent_to_date
    assert abs((hit.forecast - hit.spent_to_date) - projection) <= projection * Decimal("0.01")
    assert hit.spent_to_date - plain.spent_to_date == Decimal("2000.00") - series[MID - timedelta(days=2)]


def test_a_wider_level_gives_a_wider_interval() -> None:
    series = linear(noise=0.1)
    narrow = forecast_month(series, OCTOBER, MID, level=0.8)
    wide = forecast_month(series, OCTOBER, MID, level=0.95)
    assert wide.low < narrow.low < narrow.forecast == wide.forecast  # type: ignore[operator]
    assert narrow.forecast < narrow.high < wide.high  # type: ignore[operator]
    with pytest.raises(ReportError, match="between 0.5 and 1"):
        forecast_month(series, OCTOBER, MID, level=80)


def test_a_month_already_over_is_its_actual_spend() -> None:
    series = linear()
    f = forecast_month(series, date(2026, 9, 1), MID)
    september = sum(v for d, v in series.items() if d.month == 9)
    assert (f.method, f.forecast, f.low, f.high, f.days_remaining) == (
        "actual", september, september, september, 0)


def test_a_month_not_yet_begun_is_all_projection() -> None:
    series = linear(noise=0.0)
    f = forecast_month(series, date(2026, 11, 1), MID)
    truth = sum(Decimal(f"{60 * (1 + 0.02 * t):.2f}") for t in range(92, 122))  # 1..30 November
    assert f.spent_to_date == 0 and f.days_observed == 0 and f.days_remaining == 30
    assert abs(f.forecast - truth) <= truth * Decimal("0.01")


@pytest.mark.parametrize(("days", "method"), [
    (21, "trend+weekday"), (20, "trend"), (7, "trend"), (6, "mean")])
def test_short_histories_fit_fewer_terms(days: int, method: str) -> None:
    series = {d: v for d, v in linear().items() if d > MID - timedelta(days=days)}
    f = forecast_month(series, OCTOBER, MID)
    assert (f.method, f.history_days) == (method, days)
    assert f.low is not None and f.low <= f.forecast <= f.high  # type: ignore[operator]


def test_too_little_history_gives_no_interval() -> None:
    one = forecast_month({MID: Decimal(10)}, OCTOBER, MID)
    assert (one.method, one.forecast, one.low, one.high) == ("mean", Decimal("170.00"), None, None)
    none = forecast_month({}, OCTOBER, MID)
    assert (none.method, none.forecast, none.low) == ("none", Decimal(0), None)


def test_the_statistics_underneath() -> None:
    for p, dof, table in [(0.9, 5, 1.4759), (0.95, 13, 1.7709), (0.9, 48, 1.2994), (0.975, 3, 3.1824)]:
        assert t_quantile(p, dof) == pytest.approx(table, rel=2e-3)
    fit = least_squares([[1.0, float(t)] for t in range(5)], [3.0 + 2.0 * t for t in range(5)])
    assert fit.beta == pytest.approx([3.0, 2.0]) and fit.rss == pytest.approx(0.0, abs=1e-12)
    days = [date(2026, 6, 1) + timedelta(days=i) for i in range(28)]
    factors = weekday_factors(days, [20.0 if d.weekday() >= 5 else 100.0 for d in days])
    assert factors[0] == pytest.approx(factors[4]) and factors[5] == pytest.approx(factors[0] / 5)
    assert sum(factors) / 7 == pytest.approx(1.0)


def test_forecast_from_the_ledger_per_provider(engine: sa.Engine) -> None:
    openai, anthropic = linear(seed=1), linear(seed=2, weekday=20.0, weekend=5.0)
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        for provider, series in (("openai", openai), ("anthropic", anthropic)):
            source = f"{provider}_admin"
            costs = [CostRecord(source=source, stream="costs", bucket_width="1d", provider=provider,
                                bucket_start=datetime.combine(d, datetime.min.time()), amount=v,
                                currency="usd", line_item="tokens") for d, v in series.items() if d <= MID]
            store.replace_window(conn, org_id=org, connection_id=1, source=source, stream="costs",
                                 bucket_width="1d", start=datetime(2026, 8, 1), end=datetime(2026, 11, 1),
                                 costs=costs)
    # Fit on the 28 days up to 15 October: the month's first half is read even so.
    query = ReportQuery(org_id=org, start=datetime(2026, 9, 18), end=datetime(2026, 10, 16),
                        group_by=["provider"])
    with engine.connect() as conn:
        found = forecast(conn, query, OCTOBER)
    assert [(f.group["provider"], f.currency, f.history_days, f.through) for f in found] == [
        ("anthropic", "USD", 28, MID), ("openai", "USD", 28, MID)]
    for f, series in zip(found, (anthropic, openai), strict=True):
        assert f.spent_to_date == sum(v for d, v in series.items() if OCTOBER <= d <= MID)
        assert abs(f.forecast - october(series)) <= october(series) * Decimal("0.03")
        assert f.as_dict()["origin"] == "estimated" and f.as_dict()["spent_origin"] == "reported"
