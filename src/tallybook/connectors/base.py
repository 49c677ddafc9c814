"""The Connector protocol: what a pull source must offer the sync engine.

A sync is a list of `Task`s (one stream, one bucket width, one time range). The
engine asks the connector to `fetch` each task and writes the returned `Chunk`
in one transaction that *replaces* whatever the ledger held for that stream,
width and range. That makes a re-run idempotent and lets an interrupted run
resume at the first task it had not committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from tallybook.ledger.records import CostRecord, ProviderObject, UsageRecord

WIDTH_SECONDS = {"1m": 60, "1h": 3600, "1d": 86400}


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of sync work: a stream's buckets of one width in [start, end)."""

    stream: str
    bucket_width: str
    start: datetime  # UTC, naive, aligned to the bucket width
    end: datetime

    @property
    def id(self) -> str:
        return f"{self.stream}/{self.bucket_width}/{self.start:%Y-%m-%dT%H:%M}/{self.end:%Y-%m-%dT%H:%M}"


@dataclass(slots=True)
class Chunk:
    """What one task returned: every usage and cost record of its range, and how many pages it took."""

    task: Task
    usage: list[UsageRecord] = field(default_factory=list)
    costs: list[CostRecord] = field(default_factory=list)
    pages: int = 0


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """The result of validating an admin key with one cheap call."""

    ok: bool
    organization: str | None = None
    permissions: tuple[str, ...] = ()
    message: str = ""


class Connector(Protocol):
    provider: str  # "openai", "anthropic", ...
    source: str  # ledger source name, e.g. "openai_admin"

    def check_key(self) -> KeyCheck:
        """Validate the admin key with one cheap request; raise AuthError/PermissionDenied on failure."""
        ...

    def plan(self, start: datetime, end: datetime, *, hourly_from: datetime | None = None) -> list[Task]:
        """Split [start, end) into tasks. Hourly tasks are added from `hourly_from` where the API allows."""
        ...

    def fetch(self, task: Task) -> Chunk:
        """Fetch every page of one task. Raise a ConnectorError rather than return partial data."""
        ...

    def names(self) -> Iterator[ProviderObject]:
        """Every project/workspace, API key and user the organisation has, for display names."""
        ...

    def close(self) -> None: ...

    # Optional, coding tools only: `directory() -> ToolDirectory` (members, cycle spend), read after
    # the tasks and saved with the names by the sync engine.


_EPOCH = datetime(1970, 1, 1)


def floor_to(moment: datetime, width: str) -> datetime:
    """`moment` (naive UTC) rounded down to the start of its bucket of `width` (1m, 1h, 1d)."""
    seconds = WIDTH_SECONDS[width]
    elapsed = moment - _EPOCH
    return _EPOCH + timedelta(seconds=(elapsed.days * 86400 + elapsed.seconds) // seconds * seconds)


def ceil_to(moment: datetime, width: str) -> datetime:
    """`moment` rounded up to the next bucket boundary (unchanged when already on one)."""
    low = floor_to(moment, width)
    return low if low == moment else low + timedelta(seconds=WIDTH_SECONDS[width])


def split_range(start: datetime, end: datetime, step: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive ranges of at most `step`."""
    cursor = start
    while cursor < end:
        stop = min(cursor + step, end)
        yield cursor, stop
        cursor = stop
