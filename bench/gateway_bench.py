"""Gateway overhead with metering on: added latency (p50/p99) and throughput, direct vs through it.

    .venv/bin/python bench/gateway_bench.py [--requests 1000] [--concurrency 1,16] [--stream]

Three processes on loopback: the fake OpenAI upstream, `tallybook gateway` (one worker, SQLite
ledger, spool with fsync, budgets and rate limits on, a priced model), and this client. Each
concurrency level sends the same chat request directly to the fake and then through the gateway;
the difference is what the gateway adds (auth, routing, metering, pricing, the durable spool write).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FAKE = "from tallybook.fakes.openai_chat import OpenAIChatFake; import uvicorn; " \
       "uvicorn.run(OpenAIChatFake().app, host='127.0.0.1', port={port}, log_level='warning')"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


async def run(url: str, key: str, requests: int, concurrency: int, stream: bool) -> tuple[list[float], float]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the ledger."}],
            "stream": stream}
    headers = {"authorization": f"Bearer {key}"}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        async def one() -> None:
            started = time.perf_counter()
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for _ in response.aiter_raw():
                    pass
                assert response.status_code == 200, response.status_code
            latencies.append(time.perf_counter() - started)

        async def worker(n: int) -> None:
            for _ in range(n):
                await one()

        for _ in range(min(50, requests)):  # warm up pools and caches
            await one()
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tallybook-gw-bench-"))
    env = {**os.environ, "TALLYBOOK_DATABASE_URL": f"sqlite:///{tmp / 'ledger.db'}",
           "TALLYBOOK_MASTER_KEY_FILE": str(tmp / "master.key"), "TALLYBOOK_GATEWAY_SPOOL_DIR": str(tmp / "spool"),
           "OPENAI_API_KEY": "sk-bench"}
    cli = [sys.executable, "-m", "tallybook.cli"]
    fake_port, gw_port = free_port(), free_port()
    fake = subprocess.Popen([sys.executable, "-c", FAKE.format(port=fake_port)], env=env)
    procs = [fake]
    try:
        fake_url = f"http://127.0.0.1:{fake_port}"
        subprocess.run([*cli, "providers", "add", "openai", "--base-url", fake_url], env=env, check=True,
                       capture_output=True)
        created = subprocess.run([*cli, "keys", "create", "--name", "bench", "--budget", "1000000", "--period", "day",
                                  "--rpm", "10000000", "--format", "json"], env=env, check=True,
                                 capture_output=True, text=True)
        key = json.loads(created.stdout)["secret"]
        gateway = subprocess.Popen([*cli, "gateway", "--port", str(gw_port)], env=env, stderr=subprocess.DEVNULL)
        procs.append(gateway)
        gw_url = f"http://127.0.0.1:{gw_port}"
        wait_up(fake_url + "/v1/models")
        wait_up(gw_url + "/healthz")
        print(f"{'mode':7} {'conc':>4} {'direct p50':>10} {'p99':>7} {'gateway p50':>11} {'p99':>7} "
              f"{'added p50':>9} {'direct rps':>10} {'gateway rps':>11}")
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            direct, d_time = asyncio.run(run(fake_url, "sk-bench", args.requests, concurrency, args.stream))
            via, g_time = asyncio.run(run(gw_url, key, args.requests, concurrency, args.stream))
            print(f"{'stream' if args.stream else 'json':7} {concurrency:>4} {pct(direct, 50):>8.2f}ms "
                  f"{pct(direct, 99):>5.1f}ms {pct(via, 50):>9.2f}ms {pct(via, 99):>5.1f}ms "
                  f"{pct(via, 50) - pct(direct, 50):>7.2f}ms {len(direct) / d_time:>10.0f} {len(via) / g_time:>11.0f}")
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
