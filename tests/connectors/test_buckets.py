"""Bucket alignment shared by every connector's plan."""

from __future__ import annotations

from datetime import datetime

import pytest

from tallybook.connectors.base import ceil_to, floor_to


@pytest.mark.parametrize("moment, width, low, high", [
    (datetime(2026, 1, 1), "1d", datetime(2026, 1, 1), datetime(2026, 1, 1)),
    (datetime(2026, 1, 1, 0, 0, 0, 5), "1d", datetime(2026, 1, 1), datetime(2026, 1, 2)),
    (datetime(2026, 1, 1, 13, 59, 59), "1h", datetime(2026, 1, 1, 13), datetime(2026, 1, 1, 14)),
    (datetime(2026, 12, 31, 23, 59, 1), "1m", datetime(2026, 12, 31, 23, 59), datetime(2027, 1, 1)),
])
def test_floor_and_ceil_to_bucket_boundaries(moment: datetime, width: str, low: datetime, high: datetime) -> None:
    assert floor_to(moment, width) == low
    assert ceil_to(moment, width) == high
