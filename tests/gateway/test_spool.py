"""The spool: an event is on disk, one whole line, when `append` returns; writes are grouped; a
failed write loses nothing it acknowledged and leaves no broken line behind."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tallybook.gateway import spool as spooling
from tallybook.gateway.events import Usage, UsageEvent, new_event_id
from tallybook.gateway.spool import Spool, SpoolError


def event(n: int = 0, *, customer: str | None = "acme-corp", org_id: int = 1, ts: datetime | None = None,
          origin: str = "metered", outcome: str = "ok", event_id: str | None = None) -> UsageEvent:
    return UsageEvent(
        event_id=event_id or new_event_id(), org_id=org_id, ts=ts or datetime(2026, 11, 24, 10, n % 60),
        provider="openai", model="gpt-4o", endpoint="chat.completions", streamed=False, status=200,
        outcome=outcome, usage=Usage(input_tokens=100 + n, output_tokens=10 + n, cache_read_tokens=n, origin=origin),
        latency_ms=50, virtual_key="vk_test", customer=customer, feature="search", business_unit="retail",
        tags={"env": "test"}, list_cost=Decimal("0.000125"), price_version="openai:2026-10-01")


def lines(directory: Path) -> list[UsageEvent]:
    return [UsageEvent.from_json(line) for path in spooling.segments(directory)
            for line in path.read_text().splitlines()]


def test_an_appended_event_is_one_line_on_disk_when_append_returns(tmp_path: Path) -> None:
    sent = event(1)

    async def main() -> None:
        spool = Spool(tmp_path)
        await spool.append(sent)
        assert spool.segment is not None
        assert spool.segment.read_bytes() == (sent.to_json() + "\n").encode()
        await spool.close()

    asyncio.run(main())
    assert lines(tmp_path) == [sent]
    assert [p.name for p in spooling.segments(tmp_path)] == [f"events-{os.getpid()}-0.jsonl"]


def test_append_sync_for_callers_without_an_event_loop(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    sent = [event(n) for n in range(3)]
    for e in sent:
        spool.append_sync(e)
    spool.close_sync()
    assert lines(tmp_path) == sent


def test_concurrent_appends_share_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd))[1])
    sent = [event(n) for n in range(300)]

    async def main() -> None:
        spool = Spool(tmp_path, fsync_interval=0.05)
        await asyncio.gather(*(spool.append(e) for e in sent))
        assert spool.segment is not None and len(spool.segment.read_bytes().splitlines()) == 300  # written
        await spool.close()

    asyncio.run(main())
    assert {e.event_id for e in lines(tmp_path)} == {e.event_id for e in sent}
    assert 1 <= len(syncs) <= 3  # in the background, one group for all 300 (and the close)


def test_sync_answer_waits_for_the_group_fdatasync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd))[1])
    sent = [event(n) for n in range(300)]

    async def main() -> None:
        spool = Spool(tmp_path, fsync_interval=0.05, max_batch=100, sync="answer")
        await spool.append(sent[0])
        assert len(syncs) == 1  # not acknowledged before its fdatasync
        await asyncio.gather(*(spool.append(e) for e in sent[1:]))
        assert spool.syncs >= 2
        await spool.close()

    asyncio.run(main())
    assert {e.event_id for e in lines(tmp_path)} == {e.event_id for e in sent}
    assert 2 <= len(syncs) <= 10  # 300 events share a few fdatasyncs


def test_a_background_sync_follows_within_the_interval(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync_interval=0.01)
    spool.append_sync(event(1))
    deadline = time.monotonic() + 2
    while spool.syncs == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert spool.syncs == 1
    spool.close_sync()


def test_segments_rotate_by_size_and_every_line_stays_whole(tmp_path: Path) -> None:
    sent = [event(n) for n in range(40)]
    spool = Spool(tmp_path, segment_bytes=4096, fsync_interval=0)
    for e in sent:
        spool.append_sync(e)
    spool.close_sync()
    paths = spooling.segments(tmp_path)
    assert len(paths) > 3
    assert [spooling.segment_owner(p) for p in paths] == [(os.getpid(), n) for n in range(len(paths))]
    assert lines(tmp_path) == sent


def test_two_spools_in_one_directory_never_share_a_file(tmp_path: Path) -> None:
    first, second = Spool(tmp_path), Spool(tmp_path)
    first.append_sync(event(1))
    second.append_sync(event(2))
    assert first.segment != second.segment
    first.close_sync()
    second.close_sync()
    assert len(spooling.segments(tmp_path)) == 2


def test_a_closed_spool_refuses_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.close_sync()
    with pytest.raises(SpoolError, match="closed"):
        spool.append_sync(event())


def test_a_failed_write_is_reported_and_leaves_no_broken_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, fsync_interval=0)
    kept = event(1)
    spool.append_sync(kept)
    real = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        real(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(SpoolError, match="No space left"):
        spool.append_sync(event(2))
    monkeypatch.setattr(os, "write", real)
    after = event(3)
    spool.append_sync(after)
    spool.close_sync()
    assert lines(tmp_path) == [kept, after]


def test_a_cancelled_caller_does_not_stop_the_writer(tmp_path: Path) -> None:
    async def main() -> None:
        spool = Spool(tmp_path, fsync_interval=0.05)
        task = asyncio.create_task(spool.append(event(1)))
        await asyncio.sleep(0)
        task.cancel()
        await spool.append(event(2))
        await spool.close()

    asyncio.run(main())
    assert len(lines(tmp_path)) == 2  # the cancelled caller's line was queued, so it was written


def test_complete_lines_leave_a_torn_tail_out() -> None:
    assert spooling.complete_lines(b'{"a":1}\n{"b":2}\n{"c"') == ([b'{"a":1}', b'{"b":2}'], 16)
    assert spooling.complete_lines(b'{"c"') == ([], 0)
    assert spooling.complete_lines(b"") == ([], 0)


def test_rotate_seconds_releases_the_open_segment_for_another_process_flusher(tmp_path: Path) -> None:
    spool = Spool(tmp_path, rotate_seconds=0.1)
    spool.append_sync(event(1))
    first = spool.segment
    assert first is not None
    deadline = time.monotonic() + 5
    while spool.segment is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    fd = os.open(first, os.O_RDONLY)
    try:
        while not spooling.try_lock(fd) and time.monotonic() < deadline:  # fdatasynced, then closed
            time.sleep(0.01)
        assert spooling.try_lock(fd)  # unlocked: complete, a flusher in another process may take it
    finally:
        os.close(fd)
    spool.append_sync(event(2))
    assert spool.segment is not None and spool.segment != first
    spool.close_sync()
    assert [e.usage.input_tokens for e in lines(tmp_path)] == [101, 102]
