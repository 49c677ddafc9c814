"""Constants and small helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

# A fixed "now" for the fakes: tests never depend on the wall clock's hour.
FAKE_NOW = datetime(2026, 11, 20, 15, 30)


def window(days: int, end: datetime = FAKE_NOW) -> tuple[datetime, datetime]:
    """The last `days` whole UTC days before `end`'s day: [start, end_midnight)."""
    stop = end.replace(hour=0, minute=0, second=0, microsecond=0)
    return stop - timedelta(days=days), stop
