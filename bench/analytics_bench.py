"""Analytics latency: how long `report rates` and `report trend` take over a year of busy usage.

Run:  .venv/bin/python bench/analytics_bench.py [--rows N] [--postgres-url URL] [--skip-postgres]

Per database (a fresh SQLite file, and a throw-away PostgreSQL database created and dropped
again) the bench bulk-loads N daily usage records (default 10 million: 2 providers, 20 models,
50 projects, 200 API keys, 300 users, 365 days, service tiers and batch) and about three cost
lines per model, project and day, around the write door on purpose (executemany in one
transaction on SQLite, COPY on PostgreSQL): the bench measures reads, not ingest.

It then times the analytics functions exactly as the CLI calls them:

  rates 30d / 365d    `rates(conn, ReportQuery(group_by=[provider, model]), list_pricer=list_pricer)`
  trend month 365d    `trend(conn, ReportQuery(group_by=[provider]), "month")`
  trend day 30d       `trend(conn, ReportQuery(group_by=[provider, model]), "day")`

first straight from the raw tables, then, when `tallybook.ledger.rollup` exists, after
`rollup.rebuild(conn)` has built the daily rollups (the same functions then read those).
The goal (bench/README.md) is under 1 s for each query.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tallybook.analytics.pricers import list_pricer
from tallybook.analytics.rates import rates
from tallybook.analytics.rollups import ReportQuery
from tallybook.analytics.trends import trend
from tallybook.ledger import store
from tallybook.ledger.db import connect, migrate
from tallybook.ledger.records import natural_key

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DAYS = 365
FIRST_DAY = datetime(2025, 11, 1)
END = FIRST_DAY + timedelta(days=DAYS)  # exclusive: the data covers 2025-11-01 .. 2026-10-31
OPENAI_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5", "gpt-5-mini",
                 "gpt-5-nano", "o3", "o3-mini", "o4-mini", "gpt-4-turbo"]
ANTHROPIC_MODELS = ["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5", "claude-3-5-haiku-20241022",
                    "claude-sonnet-4-20250514", "claude-opus-4-20250514", "claude-3-7-sonnet-20250219",
                    "claude-3-5-sonnet-20241022"]
# (provider, connection_id, source, usage stream, cost stream, cost token types)
PROVIDERS = {
    "openai": (1, "openai_admin", "completions", "costs", ("input", "cached input", "output")),
    "anthropic": (2, "anthropic_admin", "messages", "cost_report",
                  ("uncached_input_tokens", "cache_read_input_tokens", "output_tokens")),
}
USAGE_COLUMNS = (
    "bucket_start", "org_id", "connection_id", "source", "stream", "bucket_width", "record_key", "provider",
    "model", "project", "api_key", "user", "service_tier", "batch", "context_window", "inference_geo", "detail",
    "unit", "origin", "input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
    "output_tokens", "reasoning_tokens", "audio_input_tokens", "audio_output_tokens", "requests", "quantity",
)
COST_COLUMNS = (
    "bucket_start", "org_id", "connection_id", "source", "stream", "bucket_width", "record_key", "provider",
    "model", "project", "line_item", "token_type", "cost_type", "currency", "origin", "amount_nanos",
)
ORG_ID = 1


# --- data ---------------------------------------------------------------------------------------

@dataclass
class Dataset:
    usage_static: list[tuple[Any, ...]]  # per combination: the columns after bucket_start, before measures
    measures: list[tuple[int, ...]]  # a pool of measure tuples, cycled through
    cost_static: list[tuple[Any, ...]]
    amounts: list[int]
    rows: int

    def days(self) -> Iterator[tuple[datetime, int]]:
        """(day, usage rows that day) until `rows` are spent."""
        left = self.rows
        for d in range(DAYS):
            if left <= 0:
                return
            take = min(len(self.usage_static), left)
            yield FIRST_DAY + timedelta(days=d), take
            left -= take

    def usage(self, d: int, day_value: Any, take: int) -> list[tuple[Any, ...]]:
        pool, n = self.measures, len(self.measures)
        return [(day_value, *s, *pool[(i * 7 + d * 31) % n]) for i, s in enumerate(self.usage_static[:take])]

    def costs(self, d: int, day_value: Any) -> list[tuple[Any, ...]]:
        amounts, n = self.amounts, len(self.amounts)
        return [(day_value, *s, amounts[(i * 13 + d * 17) % n]) for i, s in enumerate(self.cost_static)]


def make_dataset(rows: int, seed: int = 7) -> Dataset:
    """The same combinations every day (a steady organisation), ordered as the natural-key index is."""
    rng = random.Random(seed)
    per_day = -(-rows // DAYS)
    projects = [f"proj_{rng.getrandbits(64):016x}" for _ in range(50)]
    keys = [(f"key_{rng.getrandbits(64):016x}", projects[i % 50]) for i in range(200)]
    users = [f"user-{rng.getrandbits(48):012x}" for _ in range(300)]
    models = [("openai", m) for m in OPENAI_MODELS] + [("anthropic", m) for m in ANTHROPIC_MODELS]
    combos: set[tuple[Any, ...]] = set()
    while len(combos) < per_day:
        provider, model = rng.choice(models)
        key, project = rng.choice(keys)
        if provider == "openai":
            tier, batch, window = rng.choice(("default", "default", "default", "flex", "priority")), \
                rng.random() < 0.15, None
        else:
            tier, batch, window = rng.choice(("standard", "standard", "priority")), rng.random() < 0.15, \
                rng.choice(("0-200k", "0-200k", "0-200k", "200k-1M"))
        combos.add((provider, model, project, key, rng.choice(users), tier, batch, window))
    usage_static = []
    for provider, model, project, key, user, tier, batch, window in combos:
        connection_id, source, stream, _, _ = PROVIDERS[provider]
        record_key = natural_key((provider, model, project, key, user, tier, batch, window, None, None, None))
        usage_static.append((ORG_ID, connection_id, source, stream, "1d", record_key, provider, model, project,
                             key, user, tier, batch, window, None, None, None, "reported"))
    usage_static.sort(key=lambda s: (s[1], s[5]))
    measures = []
    for _ in range(4096):
        uncached = rng.randrange(1_000, 2_000_000)
        measures.append((uncached, uncached // rng.randrange(2, 9), uncached // rng.randrange(20, 90), 0,
                         uncached // rng.randrange(3, 20), rng.randrange(0, 50_000), 0, 0,
                         rng.randrange(1, 5_000), 0))
    pairs = sorted({(c[0], c[1], c[2]) for c in combos})
    cost_static = []
    for provider, model, project in pairs:
        connection_id, source, _, stream, token_types = PROVIDERS[provider]
        for token_type in token_types:
            line_item = f"{model}, {token_type}"
            record_key = natural_key((provider, model, project, None, line_item, token_type, "tokens", None, None,
                                      None, "USD"))
            cost_static.append((ORG_ID, connection_id, source, stream, "1d", record_key, provider, model, project,
                                line_item, token_type, "tokens", "USD", "reported"))
    cost_static.sort(key=lambda s: (s[1], s[5]))
    amounts = [rng.randrange(1_000_000, 40_000_000_000) for _ in range(4099)]  # $0.001 .. $40 in nanos
    return Dataset(usage_static, measures, cost_static, amounts, rows)


# --- loading ------------------------------------------------------------------------------------

def _insert_sql(table: str, columns: tuple[str, ...], mark: str) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join(mark for _ in columns)})"


def load_sqlite(engine: sa.Engine, data: Dataset) -> tuple[int, int]:
    """executemany on the raw sqlite3 connection, one transaction, in natural-key order."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA cache_size=-1000000")
        usage_sql = _insert_sql("usage_records", USAGE_COLUMNS, "?")
        cost_sql = _insert_sql("cost_records", COST_COLUMNS, "?")
        usage = costs = 0
        for d, (day, take) in enumerate(data.days()):
            text = day.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's storage format for DateTime
            rows = data.usage(d, text, take)
            cursor.executemany(usage_sql, rows)
            cost = data.costs(d, text)
            cursor.executemany(cost_sql, cost)
            usage, costs = usage + len(rows), costs + len(cost)
        raw.commit()
    finally:
        raw.close()
    return usage, costs


def load_postgres(engine: sa.Engine, data: Dataset) -> tuple[int, int]:
    """COPY FROM STDIN through psycopg, then ANALYZE (what autovacuum does on a live server)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        usage = costs = 0
        usage_copy = f"COPY usage_records ({', '.join(chr(34) + c + chr(34) for c in USAGE_COLUMNS)}) FROM STDIN"
        cost_copy = f"COPY cost_records ({', '.join(chr(34) + c + chr(34) for c in COST_COLUMNS)}) FROM STDIN"
        with cursor.copy(usage_copy) as copy:  # type: ignore[attr-defined]
            for d, (day, take) in enumerate(data.days()):
                for row in data.usage(d, day, take):
                    copy.write_row(row)
                usage += take
        with cursor.copy(cost_copy) as copy:  # type: ignore[attr-defined]
            for d, (day, _) in enumerate(data.days()):
                rows = data.costs(d, day)
                for row in rows:
                    copy.write_row(row)
                costs += len(rows)
        raw.commit()
        cursor.execute("ANALYZE usage_records")
        cursor.execute("ANALYZE cost_records")
        raw.commit()
    finally:
        raw.close()
    return usage, costs


# --- measurements -------------------------------------------------------------------------------

@dataclass
class Figure:
    label: str
    seconds: float
    note: str = ""


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    gc.collect()
    started = time.perf_counter()
    yield box
    box.append(time.perf_counter() - started)


def queries() -> list[tuple[str, Callable[[sa.Connection], object]]]:
    last30 = END - timedelta(days=30)
    return [
        ("rates provider,model 30d", lambda c: rates(c, ReportQuery(
            org_id=ORG_ID, start=last30, end=END, group_by=["provider", "model"]), list_pricer=list_pricer)),
        ("rates provider,model 365d", lambda c: rates(c, ReportQuery(
            org_id=ORG_ID, start=FIRST_DAY, end=END, group_by=["provider", "model"]), list_pricer=list_pricer)),
        ("trend month by provider 365d", lambda c: trend(c, ReportQuery(
            org_id=ORG_ID, start=FIRST_DAY, end=END, group_by=["provider"]), "month")),
        ("trend day by provider,model 30d", lambda c: trend(c, ReportQuery(
            org_id=ORG_ID, start=last30, end=END, group_by=["provider", "model"]), "day")),
    ]


def run_queries(engine: sa.Engine, tag: str, repeat: int) -> tuple[list[Figure], dict[str, object]]:
    """Each query `repeat` times on a fresh connection; the figure is the best run, the note the first."""
    figures, answers = [], {}
    for label, call in queries():
        runs = []
        for _ in range(repeat):
            with engine.connect() as conn, timed() as box:
                answers[label] = call(conn)
            runs.append(box[0])
        note = f"first {runs[0]:.3f} s" if repeat > 1 else ""
        figures.append(Figure(f"{label} ({tag})", min(runs), note))
    return figures, answers


def bench_engine(engine: sa.Engine, kind: str, data: Dataset, repeat: int, raw_too: bool) -> list[Figure]:
    with engine.begin() as conn:
        org_id = store.ensure_org(conn, "bench")
    assert org_id == ORG_ID
    with timed() as box:
        usage, costs = (load_sqlite if kind == "sqlite" else load_postgres)(engine, data)
    figures = [Figure(f"load {usage:,} usage + {costs:,} cost rows", box[0], f"{(usage + costs) / box[0]:,.0f} rows/s")]
    raw_answers: dict[str, object] = {}
    if raw_too:
        found, raw_answers = run_queries(engine, "raw tables", 1)
        figures += found
    if importlib.util.find_spec("tallybook.ledger.rollup") is None:
        return figures
    from tallybook.ledger import rollup

    with timed() as box, engine.begin() as conn:
        built = rollup.rebuild(conn)
    figures.append(Figure("rollup rebuild (all days)", box[0], f"{built:,} rollup rows"))
    found, answers = run_queries(engine, "daily rollup", repeat)
    figures += found
    for label, answer in raw_answers.items():
        if answers[label] != answer:
            raise SystemExit(f"{kind}: {label} differs between the raw tables and the rollup")
    return figures


def bench_sqlite(data: Dataset, repeat: int, raw_too: bool) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="tallybook-analytics-bench-") as folder:
        engine = connect(f"sqlite:///{Path(folder) / 'ledger.db'}")
        migrate(engine)
        try:
            return bench_engine(engine, "sqlite", data, repeat, raw_too)
        finally:
            engine.dispose()


def bench_postgres(url: str, data: Dataset, repeat: int, raw_too: bool) -> list[Figure] | str:
    admin = sa.create_engine(make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"tallybook_analytics_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        return f"PostgreSQL unavailable at {url}: {str(exc.orig).strip().splitlines()[0]}"
    engine = connect(make_url(url).set(database=name).render_as_string(hide_password=False))
    try:
        migrate(engine)
        return bench_engine(engine, "postgres", data, repeat, raw_too)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def machine() -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    import sqlite3

    return [("date", time.strftime("%Y-%m-%d %H:%M %Z")), ("cpu", f"{cpu} x {os.cpu_count()}"),
            ("memory", memory), ("python", platform.python_version()), ("sqlite", sqlite3.sqlite_version),
            ("os", platform.platform())]


def report(title: str, figures: list[Figure] | str) -> None:
    print(f"\n{title}")
    if isinstance(figures, str):
        print(f"  skipped: {figures}")
        return
    for f in figures:
        goal = "" if f.label.startswith(("load", "rollup")) else ("  ok" if f.seconds < 1 else "  OVER 1 s")
        print(f"  {f.label:<52} {f.seconds:>9.3f} s  {f.note}{goal}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="usage records to load (default 10,000,000)")
    parser.add_argument("--postgres-url", default=os.environ.get("TALLYBOOK_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-raw", action="store_true", help="time only the rollup path (skip the slow raw reads)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query on the rollup; the best is reported")
    args = parser.parse_args(argv)

    print("machine")
    for key, value in machine():
        print(f"  {key:<8} {value}")
    with timed() as box:
        data = make_dataset(args.rows)
    print(f"\ndata: {args.rows:,} usage rows ({len(data.usage_static):,} a day over {DAYS} days from "
          f"{FIRST_DAY:%Y-%m-%d}), {len(data.cost_static) * DAYS:,} cost rows; generated in {box[0]:.1f} s")
    if not args.skip_sqlite:
        report("SQLite", bench_sqlite(data, args.repeat, not args.skip_raw))
    if not args.skip_postgres:
        report("PostgreSQL", bench_postgres(args.postgres_url, data, args.repeat, not args.skip_raw))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
