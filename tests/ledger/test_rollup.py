"""Daily rollups: reports read from them give exactly the answers the records give, and a re-synced
window leaves them consistent with the records."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from tallybook.analytics.pricers import list_pricer
from tallybook.analytics.rates import rates
from tallybook.analytics.rollups import ReportQuery, cost_report, reading_table, usage_report
from tallybook.analytics.trends import trend
from tallybook.ledger import rollup, store
from tallybook.ledger import schema as t
from tallybook.ledger.db import alembic_config, connect, migrate
from tallybook.ledger.records import ATTRIBUTION_DIMENSIONS, CostRecord, UsageRecord
from tests.cli.helpers import ok

START, END = datetime(2026, 8, 20), datetime(2026, 10, 25)  # spans the catalog's October price changes
MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4.1-mini"), ("openai", None),
          ("anthropic", "claude-sonnet-4-5"), ("anthropic", "made-up-model")]
SOURCES = {"openai": ("openai_admin", 1), "anthropic": ("anthropic_admin", 2)}


def records(seed: int, start: datetime = START, end: datetime = END) -> dict[str, list[Any]]:
    """Daily (and a few hourly) usage and cost records with every kind of dimension, NULLs included."""
    rng = random.Random(seed)
    out: dict[str, list[Any]] = {"usage": [], "hourly": [], "costs": []}
    day = start
    while day < end:
        for provider, model in MODELS:
            source, _ = SOURCES[provider]
            for project in ("proj_a", "proj_b", None):
                tier = rng.choice(("default", "flex", "priority", None) if provider == "openai"
                                  else ("standard", "priority"))
                window = rng.choice((None, "0-200k", "200k-1M")) if provider == "anthropic" else None
                for user in ("u1", "u2"):
                    out["usage"].append(UsageRecord(
                        source=source, stream="usage", bucket_start=day, bucket_width="1d", provider=provider,
                        model=model, project=project, api_key=f"key_{project}", user=user, service_tier=tier,
                        batch=rng.choice((True, False, None)), context_window=window,
                        input_tokens=rng.randrange(0, 10**7), cache_read_tokens=rng.randrange(0, 10**6),
                        cache_write_5m_tokens=rng.randrange(0, 10**5), output_tokens=rng.randrange(0, 10**6),
                        audio_input_tokens=rng.randrange(0, 10), requests=rng.randrange(1, 100)))
                out["usage"].append(UsageRecord(
                    source=source, stream="usage", bucket_start=day, bucket_width="1d", provider=provider,
                    model=model, project=project, unit="images", quantity=rng.randrange(1, 50)))
                out["hourly"].append(UsageRecord(
                    source=source, stream="usage", bucket_start=day + timedelta(hours=3), bucket_width="1h",
                    provider=provider, model=model, project=project, input_tokens=999, output_tokens=9))
                for token_type in ("input", "cached input", "output", "uncached_input_tokens", "web search"):
                    out["costs"].append(CostRecord(
                        source=source, stream="costs", bucket_start=day, bucket_width="1d", provider=provider,
                        model=model, project=project, line_item=f"{model} {token_type}",
                        token_type=token_type, cost_type="tokens",
                        amount=Decimal(rng.randrange(1, 10**9)) / 10**6,
                        currency="EUR" if model is None else "USD"))
        day += timedelta(days=1)
    return out


def write(engine: sa.Engine, org: int, data: dict[str, list[Any]], start: datetime = START,
          end: datetime = END, *, refresh: bool = True) -> None:
    for provider, (source, connection) in SOURCES.items():
        with engine.begin() as conn:
            for stream, width, kind, key in (
                ("usage", "1d", "usage", "usage"), ("costs", "1d", "costs", "costs"),
                ("usage", "1h", "usage", "hourly"),
            ):
                mine = [r for r in data[key] if r.provider == provider]
                store.replace_window(conn, org_id=org, connection_id=connection, source=source, stream=stream,
                                     bucket_width=width, start=start, end=end, **{kind: mine})
            if refresh:
                rollup.refresh_daily(conn, org, start, end, source=source)


QUERIES = [  # (group_by, filters)
    (("provider", "model"), {}),
    (("provider",), {}),
    (("model", "week"), {"provider": ["openai"]}),
    (("month",), {}),
    (("day", "provider"), {"model": ["gpt-4o", "claude-sonnet-4-5"]}),
    ((), {}),
]
TRENDS = [("day", ("provider", "model")), ("week", ("provider",)), ("month", ()), ("quarter", ("model",)),
          ("year", ("provider",))]


def answers(engine: sa.Engine, org: int, start: datetime = START, end: datetime = END) -> dict[str, Any]:
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        for groups, filters in QUERIES:
            q = ReportQuery(org_id=org, start=start, end=end, group_by=list(groups), filters=filters)
            found[f"rates {groups} {filters}"] = rates(conn, q, list_pricer=list_pricer)
            found[f"usage {groups} {filters}"] = usage_report(conn, q)
            found[f"costs {groups} {filters}"] = cost_report(conn, q)
        for period, groups in TRENDS:
            found[f"trend {period} {groups}"] = trend(
                conn, ReportQuery(org_id=org, start=start, end=end, group_by=list(groups)), period)
    return found


def from_rollup(engine: sa.Engine, org: int) -> bool:
    q = ReportQuery(org_id=org, start=START, end=END, group_by=["provider", "model"])
    with engine.connect() as conn:
        return (reading_table(conn, t.usage_records, q)[0] is t.usage_daily
                and reading_table(conn, t.cost_records, q)[0] is t.cost_daily)


def rollup_rows(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {table.name: sorted((tuple(r[1:]) for r in conn.execute(sa.select(table))), key=repr)
                for table in (t.usage_daily, t.cost_daily)}


@pytest.fixture
def org(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return store.ensure_org(conn, "acme")


def test_reports_from_the_rollup_equal_reports_from_the_records(engine: sa.Engine, org: int) -> None:
    data = records(seed=1)
    write(engine, org, data, refresh=False)
    assert not from_rollup(engine, org)  # never refreshed: the records answer
    raw = answers(engine, org)
    with engine.begin() as conn:
        rollup.rebuild(conn)
    assert from_rollup(engine, org)
    assert answers(engine, org) == raw
    # and a narrower window that starts and ends mid-week and mid-month
    narrow = (datetime(2026, 9, 3), datetime(2026, 10, 13))
    with engine.begin() as conn:
        conn.execute(sa.delete(t.usage_daily))
        conn.execute(sa.delete(t.cost_daily))
    raw = answers(engine, org, *narrow)
    with engine.begin() as conn:
        rollup.rebuild(conn, org)
    assert answers(engine, org, *narrow) == raw


def test_grouping_by_a_dimension_the_rollup_lacks_reads_the_records(engine: sa.Engine, org: int) -> None:
    write(engine, org, records(seed=2))
    q = ReportQuery(org_id=org, start=START, end=END, group_by=["project"])
    with engine.connect() as conn:
        assert reading_table(conn, t.usage_records, q)[0] is t.usage_records
        filtered = ReportQuery(org_id=org, start=START, end=END, group_by=["model"], filters={"user": ["u1"]})
        assert reading_table(conn, t.usage_records, filtered)[0] is t.usage_records
        hourly = ReportQuery(org_id=org, start=START, end=END, group_by=["hour"])
        assert reading_table(conn, t.usage_records, hourly)[0] is t.usage_records


def test_a_resynced_window_leaves_the_rollup_consistent(engine: sa.Engine, org: int) -> None:
    write(engine, org, records(seed=3))
    # Re-sync the middle of the window with different figures (and some keys gone).
    mid_start, mid_end = datetime(2026, 9, 10), datetime(2026, 10, 14)
    again = records(seed=4, start=mid_start, end=mid_end)
    again = {k: [r for i, r in enumerate(v) if i % 5] for k, v in again.items()}
    write(engine, org, again, mid_start, mid_end)
    maintained = rollup_rows(engine)
    with engine.begin() as conn:
        rollup.rebuild(conn)
    assert rollup_rows(engine) == maintained
    assert from_rollup(engine, org)
    via_rollup = answers(engine, org)
    with engine.begin() as conn:
        conn.execute(sa.delete(t.usage_daily))
        conn.execute(sa.delete(t.cost_daily))
    assert answers(engine, org) == via_rollup


def test_rates_priced_per_price_period_equal_rates_priced_per_day(engine: sa.Engine, org: int) -> None:
    """The catalog pricer prices a run of days between price changes at once; a plain pricer prices
    every day. The list cost, and so the discount, must not change."""
    write(engine, org, records(seed=5))

    def per_day(provider: str, model: str | None, day: datetime,
                measures: dict[str, Any]) -> Decimal | None:
        return list_pricer(provider, model, day, measures)

    with engine.connect() as conn:
        for groups, filters in QUERIES:
            q = ReportQuery(org_id=org, start=START, end=END, group_by=list(groups), filters=filters)
            assert rates(conn, q, list_pricer=list_pricer) == rates(conn, q, list_pricer=per_day)


def test_db_rebuild_rollups_fills_the_rollup_of_records_written_without_it(
    engine: sa.Engine, org: int, cli_env: dict[str, str],
) -> None:
    write(engine, org, records(seed=6), refresh=False)
    assert not from_rollup(engine, org)
    ok("db", "rebuild-rollups", env=cli_env)
    assert from_rollup(engine, org)
    built = rollup_rows(engine)
    with engine.begin() as conn:
        rollup.rebuild(conn)
    assert rollup_rows(engine) == built


def test_the_0003_upgrade_backfills_an_existing_ledger(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = connect(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0002")
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
    data = records(seed=7)
    with engine.begin() as conn:  # what today's write path stores, less the columns 0004 added
        for provider, (source, connection) in SOURCES.items():
            for key in ("usage", "hourly"):
                rows = store.usage_rows(org, connection, [r for r in data[key] if r.provider == provider])
                conn.execute(sa.insert(t.usage_records),
                             [{k: v for k, v in row.items() if k not in ATTRIBUTION_DIMENSIONS} for row in rows])
            store.replace_window(conn, org_id=org, connection_id=connection, source=source, stream="costs",
                                 bucket_width="1d", start=START, end=END,
                                 costs=[r for r in data["costs"] if r.provider == provider])
    migrate(engine)
    backfilled = rollup_rows(engine)
    assert backfilled["usage_daily"] and backfilled["cost_daily"]
    with engine.begin() as conn:
        rollup.rebuild(conn)
    assert rollup_rows(engine) == backfilled
    engine.dispose()
