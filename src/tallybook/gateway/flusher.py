"""Moving spooled UsageEvents into the ledger, and the ledger's gateway usage records up to date.

    flusher = Flusher(engine, spool_directory)
    flusher.flush_once()      # at startup: replay what a previous process left behind
    flusher.start()           # then every `interval` seconds in the background
    ...
    await spool.close()       # releases the last segment
    await flusher.stop()      # and this flushes it

Each batch of lines is one transaction: the events go into `usage_events` (a known `event_id` is
skipped, so a replayed line or a retried request counts once), exactly the new events are added to
the hourly and daily `usage_records` buckets they fall in (source "gateway", one stream per
endpoint; each bucket rewritten with `store.replace_window`), and the daily rollup is refreshed;
`rebuild` recomputes buckets from `usage_events` for repair. Flushes are serialised (a PostgreSQL
advisory lock; SQLite has one writer). Only after that commit is a segment deleted, so a
crash at any point leaves either the lines in the spool or their events in the ledger, or both,
and replaying them adds nothing twice.

Which segments a flusher takes: any segment nobody is appending to (rotated, closed, or left by a
process that died: `spool.try_lock`), and the complete lines of its own process's open segment.
Another live process's open segment is that process's flusher's job.

Rows: one per (hour or day, endpoint, provider, model, virtual_key, customer, feature,
business_unit, origin). Metered and estimated usage are separate rows: estimated ones carry
`origin="estimated"` and `detail="estimated"` (so the natural keys differ). Requests the gateway
rejected itself (budget, rate limit) reached no provider and are not usage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from tallybook.gateway import spool as spooling
from tallybook.gateway.events import UsageEvent
from tallybook.ledger import rollup, store
from tallybook.ledger import schema as t
from tallybook.ledger.records import UsageRecord
from tallybook.money import to_nanos

log = logging.getLogger(__name__)

SOURCE = "gateway"
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
# Serialises flushes across processes on PostgreSQL: two flushers rebuilding one hour at once would
# each miss the other's uncommitted events. (SQLite serialises writers by itself.)
FLUSH_LOCK = 0x7461_6C6C_7966_6C75  # "tallyflu"
EVENT_MEASURES = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
                  "output_tokens", "reasoning_tokens", "audio_input_tokens", "audio_output_tokens")
ATTRIBUTION = ("virtual_key", "customer", "feature", "business_unit")
RECORD_FIELDS = [f.name for f in dataclasses.fields(UsageRecord)]


@dataclass(slots=True)
class FlushResult:
    lines: int = 0  # complete lines read
    inserted: int = 0  # events new to the ledger
    unreadable: int = 0  # lines that are not a UsageEvent (skipped, logged)
    segments_removed: int = 0

    def add(self, other: FlushResult) -> None:
        self.lines += other.lines
        self.inserted += other.inserted
        self.unreadable += other.unreadable
        self.segments_removed += other.segments_removed


class Flusher:
    """Flushes the spool in `directory` into the ledger behind `engine`, `batch_events` lines a transaction."""

    def __init__(self, engine: Engine, directory: Path, *, interval: float = 1.0, batch_events: int = 5000) -> None:
        self.engine = engine
        self.directory = Path(directory)
        self.interval = interval
        self.batch_events = batch_events
        self._offsets: dict[Path, int] = {}  # bytes already flushed of this process's open segments
        self._lock = threading.Lock()
        self._stopping: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # --- running in the background -----------------------------------------------------------------

    def start(self) -> None:
        """Flush every `interval` seconds on the running event loop (the database work in a thread)."""
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tallybook-flusher")

    async def stop(self) -> None:
        """Stop the background flushes, then flush once more (close the spool first to take its last segment)."""
        if self._task is not None and self._stopping is not None:
            self._stopping.set()
            await self._task
            self._task = None
        await asyncio.to_thread(self.flush_once)

    async def _run(self) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.flush_once)
            except Exception:  # the lines stay in the spool; the next round tries again
                log.exception("Flushing the gateway spool in %s failed; retrying in %ss", self.directory,
                              self.interval)
            try:
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            except TimeoutError:
                pass

    # --- one flush -----------------------------------------------------------------------------

    def flush_once(self) -> FlushResult:
        """Move every complete line this flusher may take into the ledger; delete segments left complete."""
        with self._lock:
            result = FlushResult()
            paths = spooling.segments(self.directory)
            for path in paths:
                result.add(self._flush_segment(path))
            for gone in set(self._offsets) - set(paths):
                del self._offsets[gone]
            return result

    def _flush_segment(self, path: Path) -> FlushResult:
        result = FlushResult()
        owner = spooling.segment_owner(path)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # another flusher took it
            return result
        try:
            complete = spooling.try_lock(fd)
            if not complete and (owner is None or owner[0] != os.getpid()):
                return result  # another live process is appending to it
            offset = self._offsets.get(path, 0)
            size = os.fstat(fd).st_size
            data = os.pread(fd, size - offset, offset) if size > offset else b""
            lines, used = spooling.complete_lines(data)
            for at in range(0, len(lines), self.batch_events):
                result.add(self._store(lines[at:at + self.batch_events], path))
            self._offsets[path] = offset + used
            if complete:
                # Everything it will ever hold is committed; a torn last line was never acknowledged.
                os.unlink(path)
                self._offsets.pop(path, None)
                result.segments_removed += 1
        finally:
            os.close(fd)
        return result

    def _store(self, lines: Sequence[bytes], path: Path) -> FlushResult:
        result = FlushResult(lines=len(lines))
        events: dict[str, UsageEvent] = {}
        for line in lines:
            try:
                event = UsageEvent.from_json(line.decode())
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                result.unreadable += 1
                log.warning("Skipping an unreadable line in %s: %s", path.name, exc)
                continue
            events.setdefault(event.event_id, event)  # the first of a retried request's events counts
        if not events:
            return result
        with self.engine.begin() as conn:
            result.inserted = write_events(conn, events.values())
        return result


# --- the ledger side ------------------------------------------------------------------------------

def write_events(conn: Connection, events: Iterable[UsageEvent]) -> int:
    """Insert the events not yet in `usage_events` and add exactly those to the hourly and daily
    buckets they fall in, in the caller's transaction. Returns the number of events that were new.

    Adding only the new events keeps a flush's cost to the rows of the buckets it touches, not
    to every event of the hour (recomputing the hour costs ~1.3 s on SQLite at 200k events an
    hour). It is exact because the insert says which events are new and flushes are serialised;
    `rebuild` recomputes buckets from the events should they ever need repair.
    """
    by_id = {e.event_id: e for e in events}
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FLUSH_LOCK})
        # Under the lock nobody else inserts events, so those not stored now are the new ones. (An
        # INSERT .. RETURNING of a batch is one huge statement that psycopg parses 5x slower.)
        stored = set(conn.execute(text("SELECT event_id FROM usage_events WHERE event_id = ANY(:ids)"),
                                  {"ids": list(by_id)}).scalars())
        new = [e for i, e in by_id.items() if i not in stored]
        if new:
            insert_new = postgresql.insert(t.usage_events).on_conflict_do_nothing(index_elements=["event_id"])
            conn.execute(insert_new, [event_row(e) for e in new])
    else:  # the insert takes SQLite's write lock, and says which rows it added
        stmt = sqlite.insert(t.usage_events).on_conflict_do_nothing(index_elements=["event_id"])
        inserted = conn.execute(stmt.returning(t.usage_events.c.event_id), [event_row(e) for e in by_id.values()])
        new = [by_id[row[0]] for row in inserted]
    for width, span in (("1h", HOUR), ("1d", DAY)):
        buckets: dict[tuple[int, datetime], list[UsageRecord]] = {}
        for e in new:
            if e.outcome != "rejected":  # refused by the gateway itself: no provider saw it
                record = event_record(e, width)
                buckets.setdefault((e.org_id, record.bucket_start), []).append(record)
        for (org_id, start), added in sorted(buckets.items(), key=lambda item: item[0]):
            # The store sums records of one natural key: stored rows plus the new events' records.
            _replace(conn, org_id, width, start, start + span, [*_stored(conn, org_id, width, start), *added])
            if width == "1d":
                rollup.refresh_daily(conn, org_id, start, start + DAY, source=SOURCE)
    return len(new)


def event_record(e: UsageEvent, width: str) -> UsageRecord:
    """One event as a usage record of its hourly or daily bucket."""
    u = e.usage
    start = e.ts.replace(minute=0, second=0, microsecond=0)
    if width == "1d":
        start = start.replace(hour=0)
    return UsageRecord(
        source=SOURCE, stream=e.endpoint, bucket_start=start, bucket_width=width, provider=e.provider,
        model=e.model, virtual_key=e.virtual_key, customer=e.customer, feature=e.feature,
        business_unit=e.business_unit, detail="estimated" if u.origin == "estimated" else None, origin=u.origin,
        requests=1, **{m: getattr(u, m) for m in EVENT_MEASURES})


def _stored(conn: Connection, org_id: int, width: str, start: datetime) -> list[UsageRecord]:
    u = t.usage_records.c
    rows = conn.execute(select(t.usage_records).where(
        u.org_id == org_id, u.connection_id == 0, u.source == SOURCE, u.bucket_width == width,
        u.bucket_start == start)).mappings()
    return [UsageRecord(**{f: row[f] for f in RECORD_FIELDS}) for row in rows]


def rebuild(conn: Connection, org_id: int, start: datetime, end: datetime) -> None:
    """Recompute the organisation's gateway buckets in [start, end) (whole days) from `usage_events`."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FLUSH_LOCK})
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        for hour in range(24):
            rebuild_hour(conn, org_id, day.replace(hour=hour))
        rebuild_day(conn, org_id, day)
        day += DAY


def event_row(e: UsageEvent) -> dict[str, Any]:
    u = e.usage
    return {
        "event_id": e.event_id, "org_id": e.org_id, "ts": e.ts, "virtual_key": e.virtual_key,
        "customer": e.customer, "feature": e.feature, "business_unit": e.business_unit,
        "tags": json.dumps(e.tags, separators=(",", ":")) if e.tags else None,
        "provider": e.provider, "model": e.model, "endpoint": e.endpoint, "streamed": e.streamed,
        "status": e.status, "outcome": e.outcome, **{m: getattr(u, m) for m in EVENT_MEASURES},
        "gpu_seconds": None if u.gpu_seconds is None else str(u.gpu_seconds), "latency_ms": e.latency_ms,
        "usage_origin": u.origin, "list_cost_nanos": None if e.list_cost is None else to_nanos(e.list_cost),
        "currency": e.currency, "price_version": e.price_version, "idempotency_key": e.idempotency_key,
        "upstream_request_id": e.upstream_request_id,
    }


def _record(row: Any, stream: str, start: datetime, width: str, origin: str, detail: str | None) -> UsageRecord:
    return UsageRecord(
        source=SOURCE, stream=stream, bucket_start=start, bucket_width=width, provider=row.provider,
        model=row.model, virtual_key=row.virtual_key, customer=row.customer, feature=row.feature,
        business_unit=row.business_unit, detail=detail, origin=origin, requests=int(row.requests),
        **{m: int(getattr(row, m) or 0) for m in EVENT_MEASURES})  # type: ignore[arg-type]  # token counts only


def _replace(conn: Connection, org_id: int, width: str, start: datetime, end: datetime,
             records: list[UsageRecord]) -> None:
    """Make the gateway's rows of every stream in [start, end) exactly `records`."""
    u = t.usage_records.c
    stored = conn.execute(select(u.stream).distinct().where(
        u.org_id == org_id, u.connection_id == 0, u.source == SOURCE, u.bucket_width == width,
        u.bucket_start >= start, u.bucket_start < end)).scalars()
    streams = {*stored, *(r.stream for r in records)}
    for stream in sorted(streams):
        store.replace_window(conn, org_id=org_id, connection_id=0, source=SOURCE, stream=stream, bucket_width=width,
                             start=start, end=end, usage=[r for r in records if r.stream == stream])


def rebuild_hour(conn: Connection, org_id: int, hour: datetime) -> None:
    """The hour's gateway usage records, recomputed from its events (see `rebuild`)."""
    e = t.usage_events.c
    keys = (e.endpoint, e.provider, e.model, *(e[a] for a in ATTRIBUTION), e.usage_origin)
    query = (select(*keys, *(func.sum(e[m]).label(m) for m in EVENT_MEASURES), func.count().label("requests"))
             .where(e.org_id == org_id, e.ts >= hour, e.ts < hour + HOUR, e.outcome != "rejected")
             .group_by(*keys))
    records = [_record(row, row.endpoint, hour, "1h", row.usage_origin,
                       "estimated" if row.usage_origin == "estimated" else None)
               for row in conn.execute(query)]
    _replace(conn, org_id, "1h", hour, hour + HOUR, records)


def rebuild_day(conn: Connection, org_id: int, day: datetime) -> None:
    """The day's gateway usage records, summed from its hourly ones, and the daily rollup after them."""
    u = t.usage_records.c
    keys = (u.stream, u.provider, u.model, *(u[a] for a in ATTRIBUTION), u.detail, u.origin)
    query = (select(*keys, *(func.sum(u[m]).label(m) for m in (*EVENT_MEASURES, "requests")))
             .where(u.org_id == org_id, u.connection_id == 0, u.source == SOURCE, u.bucket_width == "1h",
                    u.bucket_start >= day, u.bucket_start < day + DAY)
             .group_by(*keys))
    records = [_record(row, row.stream, day, "1d", row.origin, row.detail) for row in conn.execute(query)]
    _replace(conn, org_id, "1d", day, day + DAY, records)
    rollup.refresh_daily(conn, org_id, day, day + DAY, source=SOURCE)

