"""Days whose spend is out of line with the same weekday in recent weeks, per series.

The method (docs/analytics.md, "Anomalies", says the same at more length). For a day d with
weekday w, in one series (one group in one currency, missing days counted as zero):

1. Growth. G_j = median over the 14 days e = d-14 .. d-1 of x(e) / x(e - 7j): how spend moved
   in j weeks. Each ratio sets a day against the same weekday, so the weekly pattern cancels,
   and a few odd days (a spike, a zero) barely move the median. Ratios over a zero are
   skipped; with fewer than three ratios G_j = 1.
2. Same-weekday history, brought to today's level. For j = 1..N (N = `weeks`, default 8):
   a_j = x(d-7j) * G_j. Weekly seasonality is handled by only ever comparing a Monday with
   Mondays; a trend, by G_j (the expectation lags a trend by 7.5 days, the centre of the 14
   days). When spend stops, G_j becomes 0 after eight days, so a retired model is a week of
   drops, not a drop every day for two months.
3. Expected = median(a_j), given at least `min_weeks` (default 3) same-weekday values. Spread
   sigma = the larger of 1.4826 * MAD(a_j) (how much this weekday varies; 1.4826 scales a MAD
   to a normal's standard deviation) and 1.4826 * median(|x(e) - expected(e)| / expected(e)) *
   expected over the previous `error_days` (56) days e: the method's own recent relative error,
   pooled over weekdays. A MAD of eight values alone is too unsteady (in simulation it flagged
   8 % of ordinary days); the pooled term needs `min_errors` (14) past expectations, so a new
   series gets its first verdict after about five weeks.
4. Tolerance = max(k * sigma, min_abs, min_rel * expected), with k = 3.5 (the usual cut-off
   for robust z-scores), min_abs = 1.00 in the series' currency, min_rel = 0.25, so a flat
   or tiny series (sigma near 0) does not flag every cent of movement.
5. The expected range is [max(0, expected - tolerance), expected + tolerance]; a day above it
   is a spike, below it a drop. score = (actual - expected) / (tolerance / k), so |score| > k
   exactly when the day is flagged, and it reads as a robust z-score where sigma dominates.

Medians make a past spike harmless to later days: one odd value in N moves neither the
expectation nor the MAD. Statistics run in float; money leaves as Decimal, quantized to cents.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import Connection

from tallybook.analytics.rollups import ReportError, ReportQuery
from tallybook.analytics.trends import daily_series
from tallybook.money import CENT

MAD_TO_SIGMA = 1.4826  # 1 / Phi^-1(3/4): the MAD of a normal sample is 0.6745 sigma
GROWTH_DAYS = 14  # two full weeks: half the false alarms of six days, in simulation


@dataclass(frozen=True)
class AnomalyRule:
    """How far from the expectation a day must be to be flagged; see the module docstring."""

    weeks: int = 8
    min_weeks: int = 3
    k: float = 3.5
    min_abs: Decimal = Decimal("1.00")
    min_rel: Decimal = Decimal("0.25")
    error_days: int = 56
    min_errors: int = 14

    def __post_init__(self) -> None:
        if not 1 <= self.min_weeks <= self.weeks:
            raise ReportError(f"min_weeks must be between 1 and weeks ({self.weeks}), not {self.min_weeks}.")
        if self.k <= 0 or self.min_abs < 0 or self.min_rel < 0:
            raise ReportError("k must be positive and the floors min_abs, min_rel not negative.")


@dataclass(frozen=True)
class Expectation:
    """What a day should have cost: the centre and the range outside which it is flagged (floats)."""

    expected: float
    low: float
    high: float
    sigma: float
    tolerance: float
    weeks: int  # same-weekday values the expectation rests on


@dataclass(frozen=True)
class Anomaly:
    """A flagged day. `actual` is the reported spend; `expected`, `low`, `high` are our estimate."""

    day: date
    actual: Decimal
    expected: Decimal
    low: Decimal
    high: Decimal
    score: Decimal
    direction: str  # spike | drop
    currency: str = ""
    group: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day, **self.group, "actual": self.actual, "expected": self.expected,
                "low": self.low, "high": self.high, "currency": self.currency, "score": self.score,
                "direction": self.direction, "origin": "reported", "expected_origin": "estimated"}


def growth(series: Mapping[date, float], day: date, weeks: int) -> float:
    """How spend moved over `weeks` weeks up to `day`: the median, over the 14 days before `day`,
    of x(e) / x(e - 7 * weeks). Each ratio sets a day against the same weekday, so the weekly
    pattern cancels; the median shrugs off odd days. 1.0 when fewer than three ratios exist
    (the series is young or mostly zero)."""
    ratios = []
    for i in range(1, GROWTH_DAYS + 1):
        now, then = series.get(day - timedelta(days=i)), series.get(day - timedelta(days=i + 7 * weeks))
        if now is not None and then:
            ratios.append(now / then)
    return statistics.median(ratios) if len(ratios) >= 3 else 1.0


def same_weekday(series: Mapping[date, float], day: date, rule: AnomalyRule) -> list[float]:
    """a_j = x(day - 7j) * growth over j weeks, for j = 1..weeks while the series reaches back."""
    adjusted = []
    for j in range(1, rule.weeks + 1):
        value = series.get(day - timedelta(days=7 * j))
        if value is None:
            break  # the series had not started yet
        adjusted.append(value * growth(series, day, j))
    return adjusted


def expectations(series: Mapping[date, float],
                 rule: AnomalyRule = AnomalyRule()) -> dict[date, Expectation]:
    """The expected spend and range of every day of the series that has enough history, in one pass.

    The same figures as `same_weekday` and `growth` day by day (tests/analytics pin that), computed
    on a list indexed by day number: a dashboard asks for a few hundred days of dozens of series.
    """
    if not series:
        return {}
    first = min(series)
    span = (max(series) - first).days + 1
    x: list[float | None] = [None] * span  # x[i]: day first + i, None where the series has no value
    for d, v in series.items():
        x[(d - first).days] = v
    centre: list[float | None] = [None] * span
    found = {}
    for i in sorted((d - first).days for d in series):
        adjusted = []
        for j in range(1, rule.weeks + 1):
            back = i - 7 * j
            value = x[back] if back >= 0 else None
            if value is None:
                break  # the series had not started yet
            adjusted.append(value * _growth(x, i, j))
        if len(adjusted) < rule.min_weeks:
            continue
        expected = centre[i] = statistics.median(adjusted)
        errors = []
        for e in range(i - 1, max(-1, i - rule.error_days - 1), -1):
            c = centre[e]
            if c:
                errors.append(abs(x[e] - c) / c)  # type: ignore[operator]  # a centre has a value
        if len(errors) < rule.min_errors:
            continue  # no track record yet to say how far off a day may be
        sigma = max(MAD_TO_SIGMA * statistics.median(abs(a - expected) for a in adjusted),
                    MAD_TO_SIGMA * statistics.median(errors) * expected)
        tolerance = max(rule.k * sigma, float(rule.min_abs), float(rule.min_rel) * expected)
        found[first + timedelta(days=i)] = Expectation(
            expected=expected, low=max(0.0, expected - tolerance), high=expected + tolerance, sigma=sigma,
            tolerance=tolerance, weeks=len(adjusted))
    return found


def _growth(x: list[float | None], i: int, weeks: int) -> float:
    """`growth` on the day-indexed list of `expectations`."""
    ratios = []
    lag = 7 * weeks
    for k in range(i - 1, i - GROWTH_DAYS - 1, -1):
        if k - lag < 0:
            break  # every earlier day lies before the series too
        now, then = x[k], x[k - lag]
        if now is not None and then:
            ratios.append(now / then)
    return statistics.median(ratios) if len(ratios) >= 3 else 1.0


def detect(series: Mapping[date, Decimal], days: Iterable[date] | None = None,
           rule: AnomalyRule = AnomalyRule(), *, currency: str = "",
           group: Mapping[str, Any] | None = None) -> list[Anomaly]:
    """Flag the `days` (default: every day of the series) that fall outside their expected range.

    `series` is one group's daily spend in one currency; give every day from its first to its
    last, zeros included (`fill_days` does that), since a missing day is taken as "not started".
    """
    expected = expectations({d: float(v) for d, v in series.items()}, rule)
    found = []
    for day in sorted(series if days is None else days):
        exp = expected.get(day)
        if exp is None:
            continue
        actual = series[day]
        if exp.low <= float(actual) <= exp.high:
            continue
        score = (float(actual) - exp.expected) / (exp.tolerance / rule.k)
        found.append(Anomaly(
            day=day, actual=actual, expected=_money(exp.expected, ROUND_HALF_EVEN),
            low=_money(exp.low, ROUND_FLOOR), high=_money(exp.high, ROUND_CEILING),
            score=Decimal(score).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN),
            direction="spike" if float(actual) > exp.high else "drop", currency=currency, group=group or {}))
    return found


def fill_days(series: Mapping[date, Decimal], end: date) -> dict[date, Decimal]:
    """The series from its first day to the day before `end`, a missing day as zero spend."""
    if not series:
        return {}
    first = min(series)
    return {first + timedelta(days=i): series.get(first + timedelta(days=i), Decimal(0))
            for i in range((end - first).days)}


def find_anomalies(conn: Connection, query: ReportQuery, rule: AnomalyRule = AnomalyRule()) -> list[Anomaly]:
    """Anomalous days in [query.start, query.end) of reported daily spend, per group and currency.

    The history before `query.start` that the method needs is read too. Rows are ordered by
    day, then group. Days are UTC; the last day of the ledger may still be filling up, so a
    caller asking about "today" will see it as a drop (the CLI stops at yesterday by default).
    """
    history = timedelta(days=7 * rule.weeks + GROWTH_DAYS)
    first, end = query.start.date(), query.end.date()
    days = [first + timedelta(days=i) for i in range((end - first).days)]
    found = []
    for series in daily_series(conn, dataclasses.replace(query, start=query.start - history)):
        found += detect(fill_days(series.values, end), days, rule, currency=series.currency,
                        group=series.group)
    found.sort(key=lambda a: (a.day, *("" if v is None else str(v) for v in a.group.values()), a.currency))
    return found


def _money(value: float, rounding: str) -> Decimal:
    return Decimal(repr(value)).quantize(CENT, rounding=rounding)
