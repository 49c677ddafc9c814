"""The fast paths of the dashboard's analytics give exactly the figures of the straightforward computation."""

from __future__ import annotations

import random
import statistics
from datetime import date, timedelta

import pytest

from tallybook.analytics.anomalies import (
    MAD_TO_SIGMA,
    AnomalyRule,
    Expectation,
    expectations,
    same_weekday,
)


def expectations_day_by_day(series: dict[date, float], rule: AnomalyRule) -> dict[date, Expectation]:
    """The method as the module docstring states it, one dictionary lookup at a time."""
    centres: dict[date, float] = {}
    found = {}
    for day in sorted(series):
        adjusted = same_weekday(series, day, rule)
        if len(adjusted) < rule.min_weeks:
            continue
        expected = centres[day] = statistics.median(adjusted)
        past = (day - timedelta(days=i) for i in range(1, rule.error_days + 1))
        errors = [abs(series[e] - centres[e]) / centres[e] for e in past if centres.get(e)]
        if len(errors) < rule.min_errors:
            continue
        sigma = max(MAD_TO_SIGMA * statistics.median(abs(a - expected) for a in adjusted),
                    MAD_TO_SIGMA * statistics.median(errors) * expected)
        tolerance = max(rule.k * sigma, float(rule.min_abs), float(rule.min_rel) * expected)
        found[day] = Expectation(expected=expected, low=max(0.0, expected - tolerance), high=expected + tolerance,
                                 sigma=sigma, tolerance=tolerance, weeks=len(adjusted))
    return found


def random_series(rng: random.Random, days: int, gaps: bool) -> dict[date, float]:
    first = date(2026, 1, 1) + timedelta(days=rng.randrange(7))
    level = rng.choice([0.5, 20.0, 3000.0])
    series = {}
    for i in range(days):
        if gaps and rng.random() < 0.1:
            continue  # a day the mapping lacks
        roll = rng.random()
        value = 0.0 if roll < 0.1 else level * rng.uniform(0.5, 1.5) * (8 if roll > 0.97 else 1)
        series[first + timedelta(days=i)] = round(value, 2)
        level *= rng.uniform(0.97, 1.04)
    return series


@pytest.mark.parametrize("seed", range(12))
def test_expectations_equal_the_day_by_day_method(seed: int) -> None:
    rng = random.Random(seed)
    rule = rng.choice([AnomalyRule(), AnomalyRule(weeks=3, min_weeks=2, error_days=20, min_errors=5),
                       AnomalyRule(weeks=12, k=2.0)])
    series = random_series(rng, rng.choice([10, 60, 150]), gaps=seed % 2 == 1)
    fast, slow = expectations(series, rule), expectations_day_by_day(series, rule)
    assert fast == slow
    assert fast or len(series) < 60  # a long series has days with a verdict: the comparison is not empty


def test_expectations_of_an_empty_series() -> None:
    assert expectations({}) == {}
