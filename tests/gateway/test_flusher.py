"""The flusher: every spooled event reaches `usage_events` exactly once, even after `kill -9` or a
replay, and the gateway's usage records always equal the sum of their events."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from tallybook.gateway import spool as spooling
from tallybook.gateway.flusher import Flusher, rebuild, write_events
from tallybook.gateway.spool import Spool
from tallybook.ledger import schema as t
from tallybook.ledger import store
from tests.gateway.test_spool import event

HOUR = datetime(2026, 11, 24, 10)
ROOT = Path(__file__).parents[2]
MEASURES = ("input_tokens", "output_tokens", "cache_read_tokens", "requests")


def org(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return store.ensure_org(conn, "acme")


def spooled(directory: Path, events: list) -> None:  # type: ignore[type-arg]
    spool = Spool(directory, fsync_interval=0)
    for e in events:
        spool.append_sync(e)
    spool.close_sync()


def stored_ids(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(t.usage_events.c.event_id)).scalars())


def records(engine: sa.Engine, width: str, *group: str) -> dict[tuple[object, ...], tuple[int, ...]]:
    u = t.usage_records.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*(u[g] for g in group), *(sa.func.sum(u[m]) for m in MEASURES))
            .where(u.source == "gateway", u.bucket_width == width).group_by(*(u[g] for g in group)))
        return {tuple(r[:len(group)]): tuple(int(v) for v in r[len(group):]) for r in rows}


def expected(events: list, *group: str) -> dict[tuple[object, ...], tuple[int, ...]]:  # type: ignore[type-arg]
    sums: dict[tuple[object, ...], list[int]] = {}
    for e in events:
        key = tuple(e.usage.origin if g == "origin" else getattr(e, g) for g in group)
        row = sums.setdefault(key, [0] * len(MEASURES))
        for i, m in enumerate(MEASURES):
            row[i] += 1 if m == "requests" else getattr(e.usage, m)
    return {k: tuple(v) for k, v in sums.items()}


def test_usage_records_per_customer_equal_the_sum_of_their_events(engine: sa.Engine, tmp_path: Path) -> None:
    org_id = org(engine)
    events = [event(n, org_id=org_id, customer=f"customer-{n % 3}",
                    ts=HOUR.replace(hour=10 + n % 2, minute=n % 60)) for n in range(60)]
    spooled(tmp_path, events)
    result = Flusher(engine, tmp_path).flush_once()
    assert (result.lines, result.inserted, result.segments_removed) == (60, 60, 1)
    assert spooling.segments(tmp_path) == []
    assert sorted(stored_ids(engine)) == sorted(e.event_id for e in events)
    assert records(engine, "1d", "customer") == expected(events, "customer")
    assert records(engine, "1h", "bucket_start") == {
        (HOUR,): expected(events[0::2], "org_id")[(org_id,)],
        (HOUR.replace(hour=11),): expected(events[1::2], "org_id")[(org_id,)]}
    assert records(engine, "1d", "virtual_key", "feature", "business_unit", "stream", "origin") == {
        ("vk_test", "search", "retail", "chat.completions", "metered"): expected(events, "org_id")[(org_id,)]}
    with engine.connect() as conn:  # the daily rollup was refreshed in the same transaction
        daily = conn.execute(sa.select(sa.func.sum(t.usage_daily.c.requests))
                             .where(t.usage_daily.c.source == "gateway")).scalar_one()
    assert int(daily) == 60


def test_batch_after_batch_the_buckets_equal_a_rebuild_from_the_events(engine: sa.Engine, tmp_path: Path) -> None:
    org_id = org(engine)
    events = [event(n, org_id=org_id, customer=f"customer-{n % 4}", origin="estimated" if n % 5 == 0 else "metered",
                    ts=HOUR.replace(day=24 + n % 2, hour=n % 24, minute=n % 60)) for n in range(150)]
    flusher = Flusher(engine, tmp_path, batch_events=7)
    for at in range(0, 150, 40):
        spooled(tmp_path, events[at:at + 40])
        flusher.flush_once()
    group = ("bucket_start", "stream", "customer", "virtual_key", "origin", "detail")
    incremental = (records(engine, "1h", *group), records(engine, "1d", *group))
    assert records(engine, "1d", "customer") == expected(events, "customer")
    with engine.begin() as conn:
        rebuild(conn, org_id, HOUR.replace(hour=0), HOUR.replace(day=26, hour=0))
    assert (records(engine, "1h", *group), records(engine, "1d", *group)) == incremental


def test_flushers_of_several_processes_adding_to_one_hour_lose_nothing(engine: sa.Engine) -> None:
    """Two flushes of one bucket at once would each miss the other's events, were they not serialised."""
    org_id = org(engine)
    batches = [[event(n, org_id=org_id, customer=f"customer-{n % 2}") for n in range(k * 10, k * 10 + 10)]
               for k in range(24)]
    errors: list[BaseException] = []

    def flusher(mine: list) -> None:  # type: ignore[type-arg]
        try:
            for batch in mine:
                with engine.begin() as conn:
                    write_events(conn, batch)
        except BaseException as exc:  # noqa: BLE001 - any failure in the thread is reported below
            errors.append(exc)

    threads = [threading.Thread(target=flusher, args=(batches[k::4],)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = [e for batch in batches for e in batch]
    assert records(engine, "1h", "customer") == records(engine, "1d", "customer") == expected(events, "customer")


def test_replaying_a_flushed_segment_counts_nothing_twice(engine: sa.Engine, tmp_path: Path) -> None:
    """A crash after the commit and before the segment's deletion replays it in full."""
    org_id = org(engine)
    events = [event(n, org_id=org_id) for n in range(20)]
    spooled(tmp_path / "spool", events)
    (segment,) = spooling.segments(tmp_path / "spool")
    shutil.copy(segment, tmp_path / "copy")
    flusher = Flusher(engine, tmp_path / "spool")
    flusher.flush_once()
    before = records(engine, "1h", "customer")
    shutil.copy(tmp_path / "copy", segment)
    again = flusher.flush_once()
    assert (again.lines, again.inserted, again.segments_removed) == (20, 0, 1)
    assert records(engine, "1h", "customer") == before == expected(events, "customer")
    assert len(stored_ids(engine)) == 20


def test_a_retried_request_with_the_same_event_id_counts_once(engine: sa.Engine, tmp_path: Path) -> None:
    org_id = org(engine)
    first = event(1, org_id=org_id, event_id="0190a5c4-0000-5000-8000-000000000001")
    retry = event(1, org_id=org_id, event_id=first.event_id)
    spooled(tmp_path, [first, retry])
    Flusher(engine, tmp_path).flush_once()
    spooled(tmp_path, [retry])  # and again, in a later batch
    Flusher(engine, tmp_path).flush_once()
    assert stored_ids(engine) == [first.event_id]
    assert records(engine, "1d", "customer") == expected([first], "customer")


def test_estimated_usage_is_kept_apart_and_rejected_requests_are_not_usage(engine: sa.Engine, tmp_path: Path) -> None:
    org_id = org(engine)
    metered = [event(n, org_id=org_id) for n in range(3)]
    estimated = [event(n, org_id=org_id, origin="estimated") for n in range(2)]
    rejected = event(9, org_id=org_id, outcome="rejected")
    spooled(tmp_path, [*metered, *estimated, rejected])
    Flusher(engine, tmp_path).flush_once()
    assert len(stored_ids(engine)) == 6  # every event is kept
    assert records(engine, "1d", "origin", "detail") == {
        ("metered", None): expected(metered, "org_id")[(org_id,)],
        ("estimated", "estimated"): expected(estimated, "org_id")[(org_id,)]}


def test_a_torn_last_line_and_a_broken_line_are_skipped(engine: sa.Engine, tmp_path: Path) -> None:
    org_id = org(engine)
    whole = [event(n, org_id=org_id) for n in range(3)]
    torn = event(4, org_id=org_id).to_json()
    body = "\n".join(e.to_json() for e in whole[:2]) + "\n\x00\x00not json\n" + whole[2].to_json() + "\n"
    (tmp_path / "events-999999-0.jsonl").write_text(body + torn[: len(torn) // 2])
    result = Flusher(engine, tmp_path).flush_once()
    assert (result.inserted, result.unreadable, result.segments_removed) == (3, 1, 1)
    assert sorted(stored_ids(engine)) == sorted(e.event_id for e in whole)


def test_the_open_segment_is_flushed_as_it_grows_and_removed_once_closed(engine: sa.Engine, tmp_path: Path) -> None:
    org_id = org(engine)
    spool = Spool(tmp_path, fsync_interval=0)
    flusher = Flusher(engine, tmp_path)
    spool.append_sync(event(1, org_id=org_id))
    assert (flusher.flush_once().inserted, len(spooling.segments(tmp_path))) == (1, 1)
    spool.append_sync(event(2, org_id=org_id))
    second = flusher.flush_once()
    assert (second.lines, second.inserted) == (1, 1)  # only what it had not read yet
    spool.close_sync()
    last = flusher.flush_once()
    assert (last.lines, last.segments_removed) == (0, 1)
    assert len(stored_ids(engine)) == 2


def test_another_live_process_open_segment_is_left_to_it(engine: sa.Engine, tmp_path: Path) -> None:
    org(engine)
    with subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "1", "0"], stdout=subprocess.PIPE,
                          text=True, cwd=ROOT) as child:
        try:
            assert child.stdout is not None
            child.stdout.readline()  # one event appended; the child keeps its segment open
            assert Flusher(engine, tmp_path).flush_once().lines == 0
        finally:
            child.kill()
    assert Flusher(engine, tmp_path).flush_once().inserted == 1  # the lock died with the process


def test_the_background_flusher_takes_the_last_segment_on_stop(engine: sa.Engine, tmp_path: Path) -> None:
    org_id = org(engine)

    async def main() -> None:
        spool = Spool(tmp_path)
        flusher = Flusher(engine, tmp_path, interval=0.05)
        flusher.start()
        await asyncio.gather(*(spool.append(event(n, org_id=org_id)) for n in range(50)))
        await spool.close()
        await flusher.stop()

    asyncio.run(main())
    assert len(stored_ids(engine)) == 50
    assert spooling.segments(tmp_path) == []


# A gateway process: appends events from many concurrent requests, printing each event_id once
# its append has returned, until it is killed.
WRITER = """
import asyncio, sys
from pathlib import Path
from tallybook.gateway.spool import Spool
from tests.gateway.test_spool import event

directory, org_id, forever = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"

async def request(spool, n):
    while True:
        e = event(n, org_id=org_id)
        await spool.append(e)
        print(e.event_id, flush=True)
        if not forever:
            await asyncio.sleep(3600)

async def main():
    spool = Spool(directory, segment_bytes=32768)
    await asyncio.gather(*(request(spool, n) for n in range(16 if forever else 1)))

asyncio.run(main())
"""


def test_every_event_acknowledged_before_kill_9_reaches_the_ledger_once(engine: sa.Engine, tmp_path: Path) -> None:
    org_id = org(engine)
    with subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(org_id), "1"],
                          stdout=subprocess.PIPE, cwd=ROOT) as child:
        assert child.stdout is not None
        acknowledged: list[str] = []
        deadline = time.monotonic() + 30
        while len(acknowledged) < 1500 and time.monotonic() < deadline:
            acknowledged.append(child.stdout.readline().decode())
        os.kill(child.pid, signal.SIGKILL)
        rest = child.stdout.read().decode()
    printed = [line.strip() for line in (*acknowledged, *rest.splitlines(keepends=True)) if line.endswith("\n")]
    assert len(printed) >= 1500
    assert len(spooling.segments(tmp_path)) > 1  # it had rotated

    result = Flusher(engine, tmp_path).flush_once()
    assert spooling.segments(tmp_path) == []
    with engine.connect() as conn:
        found = conn.execute(sa.select(t.usage_events.c.event_id)
                             .where(t.usage_events.c.event_id.in_(printed))).scalars().all()
        total = conn.execute(sa.select(sa.func.count()).select_from(t.usage_events)).scalar_one()
    assert sorted(found) == sorted(printed)  # every acknowledged event, each once (event_id is the key)
    assert total == result.inserted >= len(printed)  # and any written but not yet acknowledged
    assert records(engine, "1d", "org_id")[(org_id,)][3] == total
