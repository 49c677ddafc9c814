"""Gateway spool throughput and latency: appends/s and p50/p99 append latency, by concurrency.

    .venv/bin/python bench/spool_bench.py [--events 20000] [--dir /path/on/the/real/disk]
        [--sync background|answer] [--flush sqlite:///bench.db] [--busy-hour 200000]

Each concurrency level runs that many asyncio "requests" appending events back to back; an append's
latency runs from the call until it returns: the event is written (`--sync background`, the
gateway's default: fdatasync follows in the background) or written and fdatasynced (`--sync answer`). With --flush, the spool is then
flushed into that (fresh) ledger and the flush rate is printed, then the cost of one flush of 1 and
of 100 events into an hour that already holds --busy-hour events (the flusher's steady state).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from tallybook.gateway.events import Usage, UsageEvent, new_event_id
from tallybook.gateway.spool import Spool


def event(n: int) -> UsageEvent:
    return UsageEvent(
        event_id=new_event_id(), org_id=1, ts=datetime(2026, 11, 24, 10, n % 60), provider="openai",
        model="gpt-4o", endpoint="chat.completions", streamed=True, status=200, outcome="ok",
        usage=Usage(input_tokens=1200, cache_read_tokens=800, output_tokens=300), latency_ms=850,
        virtual_key=f"vk_{n % 20}", customer=f"customer-{n % 50}", feature="chat", business_unit="retail",
        tags={"env": "prod"}, list_cost=Decimal("0.0061"), price_version="openai:2026-10-01")


async def run(directory: Path, events: int, concurrency: int, sync: str) -> tuple[float, list[float]]:
    spool = Spool(directory, sync=sync)
    latencies: list[float] = []
    per_task = events // concurrency

    async def request(k: int) -> None:
        for n in range(per_task):
            e = event(k * per_task + n)
            began = time.perf_counter()
            await spool.append(e)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(request(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - began
    await spool.close()
    return elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, default=None, help="spool directory (default: a temporary one)")
    parser.add_argument("--sync", choices=("background", "answer"), default="background")
    parser.add_argument("--flush", default=None, help="a ledger URL to flush the spooled events into")
    parser.add_argument("--busy-hour", type=int, default=200_000, help="events already in the hour (with --flush)")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="spool-bench-"))
    print(f"spool in {base}, sync={args.sync}")
    print(f"{'concurrency':>11} {'appends/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for concurrency in (1, 16, 128, 512):
        events = args.events if concurrency > 1 else min(args.events, 2000)
        directory = base / f"c{concurrency}"
        elapsed, latencies = asyncio.run(run(directory, events, concurrency, args.sync))
        q = statistics.quantiles(latencies, n=100)
        print(f"{concurrency:>11} {len(latencies) / elapsed:>10.0f} {q[49] * 1000:>8.2f} {q[98] * 1000:>8.2f}")
    if args.flush:
        from tallybook.gateway.flusher import Flusher
        from tallybook.ledger import store
        from tallybook.ledger.db import open_ledger

        engine = open_ledger(args.flush)
        with engine.begin() as conn:
            store.ensure_org(conn, "bench")
        began = time.perf_counter()
        total = sum(Flusher(engine, base / f"c{c}").flush_once().inserted for c in (1, 16, 128, 512))
        elapsed = time.perf_counter() - began
        print(f"flushed {total} events in {elapsed:.2f} s ({total / elapsed:.0f} events/s)")
        busy_hour(engine, args.busy_hour)


def busy_hour(engine, events: int) -> None:  # type: ignore[no-untyped-def]
    from tallybook.gateway.flusher import write_events

    hour = datetime(2026, 11, 25, 10)
    for at in range(0, events, 5000):
        with engine.begin() as conn:
            write_events(conn, [_at(event(n), hour, n) for n in range(at, min(at + 5000, events))])
    for size in (1, 100):
        began = time.perf_counter()
        with engine.begin() as conn:
            write_events(conn, [_at(event(n), hour, n) for n in range(size)])
        print(f"a {size}-event flush into an hour of {events} events: {time.perf_counter() - began:.3f} s")


def _at(e: UsageEvent, hour: datetime, n: int) -> UsageEvent:
    e.ts = hour.replace(minute=n % 60, second=n % 59)
    return e


if __name__ == "__main__":
    main()
