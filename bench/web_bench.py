"""Dashboard server time: p50/p95 of every page on the demo organisation (goal: under 300 ms each).

Run:  .venv/bin/python bench/web_bench.py [--days 90] [--repeat 20]

Builds the demo organisation as `tallybook demo` does (both fake admin APIs, 90 days synced through
the real connectors into a fresh SQLite ledger), signs an admin in, then requests each page `--repeat`
times in-process (Starlette's TestClient: the whole app, routing, auth, analytics and Jinja, without a
socket) and prints the median and 95th percentile of the server time per page. Figures: bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

GOAL_MS = 300
PAGES = ["/", "/spend", "/spend?period=week&group=model", "/spend?period=month&group=project",
         "/spend?group=customer", "/optimise", "/benchmark", "/reconcile", "/connect", "/settings",
         "/settings/alerts", "/audit", "/billing", "/login"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tallybook-web-bench-"))
    os.environ.update({"TALLYBOOK_DATABASE_URL": f"sqlite:///{tmp / 'ledger.db'}",
                       "TALLYBOOK_MASTER_KEY_FILE": str(tmp / "master.key"), "TALLYBOOK_SYNC_SCHEDULE": "off"})
    for key in ("TALLYBOOK_MASTER_KEY", "TALLYBOOK_ORG"):
        os.environ.pop(key, None)

    from tallybook.cli.common import Context, utcnow
    from tallybook.cli.connect import save_key
    from tallybook.cli.sync import run_sync
    from tallybook.config import get_settings
    from tallybook.connectors.sync import midnight
    from tallybook.fakes.launcher import DEMO_KEYS, start_fakes
    from tallybook.web.app import create_app
    from tallybook.web.auth import create_first_admin

    started = time.monotonic()
    with start_fakes(days=args.days + 30) as cloud:
        ctx = Context()
        for provider in ("openai", "anthropic"):
            save_key(ctx, provider, DEMO_KEYS[provider], base_url=cloud.base_url(provider), name=f"{provider}-demo")
        since = midnight(utcnow()) - timedelta(days=args.days - 1)
        for provider in ("openai", "anthropic"):
            run_sync(ctx, connection=f"{provider}-demo", since=since, show_progress=False)
        ctx.close()
    print(f"demo organisation: {args.days} days synced in {time.monotonic() - started:.1f} s", file=sys.stderr)

    app = create_app(get_settings())
    with app.state.engine.begin() as conn:
        create_first_admin(conn, "bench@example.com", "a long bench password", "default")
    with TestClient(app, follow_redirects=False) as client:
        token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        signed = client.post("/login", data={"email": "bench@example.com", "password": "a long bench password",
                                             "csrf_token": token})
        assert signed.status_code == 303, signed.text
        print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {args.repeat} requests per page after "
              "one warm-up (CPU ms: the median CPU time of the whole process per request)\n")
        print(f"{'page':<40} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms':>8} {'KiB':>6}  goal < {GOAL_MS} ms")
        worst = 0.0
        for path in PAGES:
            if path == "/login":
                client.cookies.clear()
            first = client.get(path)
            assert first.status_code in (200, 303), (path, first.status_code, first.text[:300])
            times, cpu = [], []
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                response = client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)  # every thread of the process: load-independent
                assert response.status_code == first.status_code
            times.sort()
            p50 = statistics.median(times)
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            worst = max(worst, p95)
            mark = "ok" if p95 < GOAL_MS else "OVER"
            print(f"{path:<40} {p50:>8.1f} {p95:>8.1f} {statistics.median(cpu):>8.1f} "
                  f"{len(first.content) / 1024:>6.0f}  {mark}")
    app.state.engine.dispose()
    print(f"\nworst p95: {worst:.0f} ms ({'goal met' if worst < GOAL_MS else 'goal NOT met'})")


if __name__ == "__main__":
    main()
