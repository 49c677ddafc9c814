"""The fast paths of the dashboard's analytics give exactly the figures of the straightforward computation."""

from __future__ import annotations

import random
import statistics
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from tallybook.analytics.anomalies import (
    MAD_TO_SIGMA,
    AnomalyRule,
    Expectation,
    expectations,
    same_weekday,
)
from tallybook.analytics.pricers import NegotiatedPricer, list_pricer
from tallybook.analytics.rates import FINE
from tallybook.analytics.reconcile import reconcile
from tallybook.analytics.rollups import ReportQuery, reading_table
from tallybook.ledger import rollup, store
from tallybook.ledger import schema as t
from tallybook.ledger.records import UsageRecord
from tests.ledger.test_rollup import START, write
from tests.ledger.test_rollup import records as ledger_records


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


def test_reconcile_from_the_rollups_equals_reconcile_from_the_records(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
    data = ledger_records(seed=3, start=START, end=START + timedelta(days=40))
    write(engine, org, data, START, START + timedelta(days=40), refresh=False)
    metered = [UsageRecord(source="gateway", stream="usage", bucket_start=r.bucket_start, bucket_width="1d",
                           provider=r.provider, model=r.model, project=r.project, api_key=r.api_key, user=r.user,
                           input_tokens=r.input_tokens + (7 if r.user == "u1" else 0), output_tokens=r.output_tokens)
               for r in data["usage"] if r.unit is None and r.bucket_start.day % 3 == 0]
    with engine.begin() as conn:
        store.replace_window(conn, org_id=org, connection_id=0, source="gateway", stream="usage", bucket_width="1d",
                             start=START, end=START + timedelta(days=40), usage=metered)
    queries = [ReportQuery(org_id=org, start=START, end=START + timedelta(days=40)),
               ReportQuery(org_id=org, start=START + timedelta(days=3), end=START + timedelta(days=20),
                           filters={"provider": ["anthropic"]})]
    pricer = NegotiatedPricer([])

    def answers() -> list[list[dict[str, Any]]]:
        with engine.connect() as conn:
            return [[r.as_dict(Decimal("0.01")) for r in reconcile(conn, q, p)]
                    for q in queries for p in (pricer, list_pricer)]

    with engine.connect() as conn:
        assert reading_table(conn, t.usage_records, queries[0])[0] is t.usage_records
    raw = answers()
    with engine.begin() as conn:
        rollup.rebuild(conn, org)
        assert reading_table(conn, t.usage_records, queries[0], ("unit", "source", *FINE))[0] is t.usage_daily
    assert answers() == raw
    flat = [r for rows in raw for r in rows]
    assert any(r["metered_tokens"] for r in flat) and any(r["estimated_cost"] is None for r in flat)
    assert any(r["estimated_cost"] for r in flat) and any(r["flagged"] for r in flat)
