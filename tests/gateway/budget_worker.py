"""One gateway process in the budget concurrency test: many concurrent reservations against one key.

Run as `python budget_worker.py URL KEY_ID ORG_ID BUDGET NOW SEED`; prints "ready", waits for a line
on stdin, then prints one JSON line: requests admitted, nanos settled and the largest upper bound.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from decimal import Decimal

from sqlalchemy import Engine, text

from tallybook.gateway.keys import KeyInfo
from tallybook.gateway.limits import BudgetExceeded, Limits, to_nanos
from tallybook.ledger.db import connect

TASKS = 16


async def main(engine: Engine, key: KeyInfo, now: float, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    stats = {"admitted": 0, "settled_nanos": 0, "max_upper_nanos": 0, "rounds": 0}

    async def spender(limits: Limits) -> None:
        refusals = 0
        while True:
            upper = Decimal(rng.randint(1, 40)) / 100  # 0.01 .. 0.40
            try:
                reservation = await limits.reserve(key, None, upper)
            except BudgetExceeded:  # a client honouring retry-after, impatiently
                refusals += 1
                if refusals == 10:
                    return
                await asyncio.sleep(0.01)
                continue
            refusals = 0
            stats["admitted"] += 1
            stats["max_upper_nanos"] = max(stats["max_upper_nanos"], to_nanos(upper))
            await asyncio.sleep(rng.random() / 25)  # the upstream answering, 0-40 ms
            actual = None if rng.random() < 0.1 else (upper * Decimal(rng.randint(20, 100)) / 100)
            stats["settled_nanos"] += to_nanos(upper if actual is None else actual)
            await limits.settle(reservation, actual)

    # Rounds end when a process that has given back every lease still cannot reserve anything.
    while stats["rounds"] < 100:
        stats["rounds"] += 1
        limits = Limits(engine, clock=lambda: now, flush_seconds=0.05)
        await asyncio.gather(*(spender(limits) for _ in range(TASKS)))
        await limits.close()
        probe = Limits(engine, clock=lambda: now)
        try:
            reservation = await probe.reserve(key, None, Decimal("0.000000001"))
        except BudgetExceeded:
            break
        finally:
            await probe.close()
        await probe.settle(reservation, Decimal(0))
    engine.dispose()
    return stats


if __name__ == "__main__":
    url, key_id, org_id, budget, now, seed = sys.argv[1:7]
    key = KeyInfo(key_id, int(org_id), "concurrency", budget=Decimal(budget), budget_period="day")
    engine = connect(url)
    with engine.connect() as conn:  # warm up, so both processes start spending together
        conn.execute(text("SELECT 1"))
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(asyncio.run(main(engine, key, float(now), int(seed)))), flush=True)
