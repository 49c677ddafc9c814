"""Synthetic daily spend for the analytics tests: a level, a trend, a weekly pattern and seeded noise."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal


def daily(start: date, days: int, *, weekday: float, weekend: float | None = None, slope: float = 0.0,
          noise: float = 0.0, seed: int = 0) -> dict[date, Decimal]:
    """Spend per day, to the cent: (weekday or weekend level) * (1 + slope * t) * (1 + noise * N(0, 1)).

    `slope` is relative growth per day, so weekends grow in proportion, as real spend does.
    """
    rng = random.Random(seed)
    out = {}
    for t in range(days):
        day = start + timedelta(days=t)
        base = weekday if weekend is None or day.weekday() < 5 else weekend
        value = base * (1 + slope * t) * (1 + noise * rng.gauss(0, 1))
        out[day] = Decimal(f"{max(value, 0.0):.2f}")
    return out
