"""Dashboard analytics latency: p50/p95 of each analytics function the dashboard pages and API call,
with the arguments they pass, on the demo organisation's ledger.

Build the ledger first (90 days of the fakes through the real connectors):

    TALLYBOOK_DATABASE_URL=sqlite:////tmp/p1/demo.db TALLYBOOK_MASTER_KEY_FILE=/tmp/p1/mk \\
        .venv/bin/tallybook demo --no-serve --days 90

then run:

    .venv/bin/python bench/analytics_dashboard_bench.py --database-url sqlite:////tmp/p1/demo.db [--repeat 15]
        [--only reconcile,anomalies] [--profile reconcile]

Each function runs `--repeat` times on one connection after one warm-up call; the table prints the
50th and 95th percentile wall time in ms, and the median CPU time of this process (steadier
when other work shares the machine; SQLite runs in the process, so its work counts too). `--profile NAME` prints a pyinstrument profile of one call
(pip install pyinstrument into the venv first). The issue 5 goal: every page under 300 ms server time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, create_engine, select

from tallybook.analytics.anomalies import AnomalyRule, find_anomalies
from tallybook.analytics.benchmark import benchmark_report, load_tiers
from tallybook.analytics.finance import finance_report, parse_period
from tallybook.analytics.forecast import forecast
from tallybook.analytics.optimize import savings
from tallybook.analytics.pricers import NegotiatedPricer, blended_list_price, list_pricer, unit_prices
from tallybook.analytics.rates import rates
from tallybook.analytics.reconcile import reconcile
from tallybook.analytics.rollups import ReportQuery, cost_report
from tallybook.analytics.trends import trend
from tallybook.ledger import schema as t
from tallybook.pricing.rules import load_rules


def midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def cases(conn: Connection, org_id: int, today: date) -> dict[str, Callable[[], Any]]:
    """The calls, with the arguments of the pages' and the API's defaults (web/pages, web/api)."""
    end = midnight(today) + timedelta(days=1)  # report windows run through today
    yesterday_end = midnight(today)  # anomalies and forecast stop at yesterday
    d30 = ReportQuery(org_id=org_id, start=end - timedelta(days=30), end=end)
    month_start = midnight(today.replace(day=1))
    month = ReportQuery(org_id=org_id, start=month_start, end=end)
    last_month = f"{month_start - timedelta(days=1):%Y-%m}"
    pricer = NegotiatedPricer(load_rules(conn, org_id))
    tiers = load_tiers()

    def q(**kw: Any) -> ReportQuery:
        return ReportQuery(**{"org_id": org_id, "start": d30.start, "end": d30.end, **kw})

    return {
        # /reconcile page (7 days) and GET /api/v1/reconcile (30 days), and the full 90-day ledger
        "reconcile 7d": lambda: reconcile(conn, q(start=end - timedelta(days=7)), pricer),
        "reconcile 30d": lambda: reconcile(conn, d30, pricer),
        "reconcile 90d": lambda: reconcile(conn, q(start=end - timedelta(days=90)), pricer),
        # GET /api/v1/anomalies: 30 days up to yesterday, by provider and model
        "anomalies": lambda: find_anomalies(conn, q(start=yesterday_end - timedelta(days=30), end=yesterday_end,
                                                    group_by=["provider", "model"]), AnomalyRule()),
        # overview: 56 days of history to the month's forecast; API: the same by default
        "forecast": lambda: forecast(conn, q(start=yesterday_end - timedelta(days=56), end=yesterday_end),
                                     today.replace(day=1)),
        # overview (total and by provider) and GET /api/v1/rates (provider, model)
        "rates month": lambda: rates(conn, ReportQuery(org_id=org_id, start=month.start, end=month.end,
                                                       group_by=["provider"]), list_pricer=list_pricer),
        "rates 30d provider,model": lambda: rates(conn, q(group_by=["provider", "model"]), list_pricer=list_pricer),
        "benchmark": lambda: benchmark_report(conn, org_id, f"{today:%Y-%m}", blended_list_price, tiers=tiers),
        "savings 30d": lambda: savings(conn, d30, unit_prices),
        "trend month 12m": lambda: trend(conn, q(start=midnight(today.replace(day=1) - timedelta(days=330)).replace(
            day=1)), "month"),
        "trend day 30d": lambda: trend(conn, q(group_by=["provider"]), "day"),
        "finance_report": lambda: finance_report(conn, org_id, parse_period(last_month)),
        "costs summary": lambda: cost_report(conn, ReportQuery(org_id=org_id, start=month.start, end=month.end,
                                                               group_by=["provider"])),
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("TALLYBOOK_DATABASE_URL", "sqlite:////tmp/p1/demo.db"))
    parser.add_argument("--org", default="default", help="Organisation slug (the demo's: default).")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--only", default="", help="Comma-separated case names (prefix match).")
    parser.add_argument("--profile", default="", help="Print a pyinstrument profile of this case.")
    args = parser.parse_args()
    engine = create_engine(args.database_url)
    with engine.connect() as conn:
        org_id = conn.execute(select(t.organisations.c.id).where(t.organisations.c.slug == args.org)).scalar_one()
        last = conn.execute(select(t.cost_records.c.bucket_start).where(t.cost_records.c.org_id == org_id)
                            .order_by(t.cost_records.c.bucket_start.desc()).limit(1)).scalar_one()
        today = (last if isinstance(last, datetime) else datetime.fromisoformat(str(last))).date()
        wanted = [w for w in args.only.split(",") if w]
        todo = {n: f for n, f in cases(conn, org_id, today).items() if not wanted or any(n.startswith(w) for w in wanted)}
        if args.profile:
            from pyinstrument import Profiler

            call = todo[args.profile]
            call()
            with Profiler(interval=0.001) as profiler:
                call()
            profiler.print(show_all=False)
            return
        load = os.getloadavg()[0]
        print(f"demo ledger {args.database_url}, org {args.org}, last day {today}, {args.repeat} runs, "
              f"1-min load {load:.1f}, Python {sys.version.split()[0]}")
        print(f"{'function':<26} {'p50 ms':>8} {'p95 ms':>8} {'CPU p50':>8} {'rows':>6}")
        for name, call in todo.items():
            rows = call()  # warm-up: caches, SQLite pages
            times, cpu = [], []
            for _ in range(args.repeat):
                started, used = time.perf_counter(), time.process_time()
                call()
                times.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - used) * 1000)
            count = len(rows) if hasattr(rows, "__len__") else 1
            print(f"{name:<26} {statistics.median(times):8.1f} {percentile(times, 0.95):8.1f} "
                  f"{statistics.median(cpu):8.1f} {count:>6}")


if __name__ == "__main__":
    main()
