"""Anomalies: a spike is flagged, weekends and ordinary weekdays are not, whatever the trend."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tallybook.analytics.anomalies import AnomalyRule, detect, expectations, find_anomalies
from tallybook.analytics.rollups import ReportError, ReportQuery
from tallybook.ledger import store
from tallybook.ledger.records import CostRecord
from tests.analytics.synthetic import daily

START = date(2026, 6, 1)  # a Monday
WEEKS = 12


def seasonal(seed: int = 7, **kw: float) -> dict[date, Decimal]:
    """Twelve weeks of weekday spend around 120 and weekends around 15, growing 0.4 % a day, 8 % noise."""
    params = {"weekday": 120.0, "weekend": 15.0, "slope": 0.004, "noise": 0.08, **kw}
    return daily(START, 7 * WEEKS, seed=seed, **params)  # type: ignore[arg-type]


def test_a_spike_is_flagged_and_no_ordinary_weekend_or_weekday_is() -> None:
    series = seasonal()
    spike = date(2026, 8, 5)  # a Wednesday in week 10
    series[spike] *= Decimal("2.5")
    found = detect(series)
    assert [(a.day, a.direction) for a in found] == [(spike, "spike")]
    hit = found[0]
    assert hit.actual > hit.high > hit.expected > hit.low > 0
    assert Decimal(130) < hit.expected < Decimal(180)  # the Wednesday level of early August, not the mean
    assert hit.score > Decimal("3.5")
    # Weekends (an eighth of a weekday) were judged, against weekends: none of them is a "drop".
    judged = expectations({d: float(v) for d, v in series.items()})
    weekends = [d for d in judged if d.weekday() >= 5]
    assert len(weekends) >= 14
    assert all(judged[d].high < 40 for d in weekends)


@pytest.mark.parametrize("seed", range(10))
def test_ordinary_weeks_flag_nothing(seed: int) -> None:
    assert detect(seasonal(seed)) == []


def test_a_weekend_spike_below_the_weekday_level_is_still_a_spike() -> None:
    series = seasonal()
    saturday = date(2026, 8, 8)
    series[saturday] = Decimal("60.00")  # four times a Saturday, half a weekday
    assert [(a.day, a.direction) for a in detect(series)] == [(saturday, "spike")]


def test_a_weekday_without_spend_is_a_drop() -> None:
    series = seasonal()
    series[date(2026, 8, 11)] = Decimal(0)
    found = detect(series)
    assert [(a.day, a.direction, a.actual) for a in found] == [(date(2026, 8, 11), "drop", Decimal(0))]
    assert found[0].score < Decimal("-3.5")


def test_steep_growth_and_decline_are_not_anomalies() -> None:
    assert detect(seasonal(slope=0.015)) == []  # spend more than doubles over the twelve weeks
    assert detect(seasonal(slope=-0.007)) == []  # and halves


def test_spend_that_stops_is_a_week_of_drops_not_months_of_them() -> None:
    series = seasonal()
    stop = date(2026, 8, 3)
    for day in series:
        if day >= stop:
            series[day] = Decimal(0)
    drops = detect(series)
    assert drops[0].day == stop
    assert {a.direction for a in drops} == {"drop"}
    assert max(a.day for a in drops) < stop + timedelta(days=8)


def test_tiny_series_do_not_spam() -> None:
    cents = daily(START, 7 * WEEKS, weekday=0.30, weekend=0.02, noise=0.6, seed=3)
    assert detect(cents) == []


def test_no_verdict_without_history() -> None:
    short = daily(START, 30, weekday=100.0, weekend=10.0, noise=0.05)
    short[max(short)] = Decimal(1000)
    assert detect(short) == []  # a month: too short a track record to judge


def test_only_the_days_asked_for() -> None:
    series = seasonal()
    spike = date(2026, 8, 5)
    series[spike] *= 3
    assert detect(series, days=[spike + timedelta(days=1)]) == []
    assert [a.day for a in detect(series, days=[spike])] == [spike]


def test_rule_is_checked() -> None:
    with pytest.raises(ReportError, match="min_weeks"):
        AnomalyRule(weeks=4, min_weeks=5)
    with pytest.raises(ReportError, match="k must be positive"):
        AnomalyRule(k=0)


def test_anomalies_from_the_ledger_per_provider(engine: sa.Engine) -> None:
    openai, anthropic = seasonal(seed=1), seasonal(seed=2, weekday=40.0, weekend=4.0)
    spike = date(2026, 8, 19)
    anthropic[spike] = Decimal("400.00")
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        for provider, series in (("openai", openai), ("anthropic", anthropic)):
            source = f"{provider}_admin"
            costs = [CostRecord(source=source, stream="costs", bucket_width="1d", provider=provider,
                                bucket_start=datetime.combine(d, datetime.min.time()), amount=v,
                                currency="usd", line_item="tokens") for d, v in series.items()]
            store.replace_window(conn, org_id=org, connection_id=1, source=source, stream="costs",
                                 bucket_width="1d", start=datetime(2026, 6, 1), end=datetime(2026, 9, 1),
                                 costs=costs)
    # The window is the last two weeks; the eight weeks before it are read as history.
    query = ReportQuery(org_id=org, start=datetime(2026, 8, 10), end=datetime(2026, 8, 24),
                        group_by=["provider"])
    with engine.connect() as conn:
        found = find_anomalies(conn, query)
        outside = find_anomalies(conn, ReportQuery(org_id=org, start=datetime(2026, 8, 20),
                                                   end=datetime(2026, 8, 24), group_by=["provider"]))
    assert [(a.day, a.group["provider"], a.currency, a.actual, a.direction) for a in found] == [
        (spike, "anthropic", "USD", Decimal(400), "spike")]
    assert found[0].as_dict()["origin"] == "reported"
    assert outside == []
