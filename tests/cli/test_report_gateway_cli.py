"""`report usage --source gateway`: the gateway's metered usage by customer, feature and virtual key,
flushed from a real spool, read from the records (the daily rollup has no attribution columns)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tallybook.analytics.optimize import _usage_by_model
from tallybook.analytics.rates import rates
from tallybook.analytics.rollups import ReportQuery, reading_table
from tallybook.gateway.flusher import Flusher
from tallybook.gateway.spool import Spool
from tallybook.ledger import rollup, store
from tallybook.ledger import schema as t
from tallybook.ledger.db import connect
from tallybook.ledger.records import UsageRecord
from tests.cli.helpers import ok
from tests.gateway.test_spool import event

DAY = datetime(2026, 11, 24)
WINDOW = ("--from", "2026-11-24", "--to", "2026-11-24", "--format", "json")


def seed(env: dict[str, str], spool_dir: Path) -> int:
    engine = connect(env["TALLYBOOK_DATABASE_URL"])
    with engine.begin() as conn:
        org = store.ensure_org(conn, "default")
        vendor = UsageRecord(source="openai_admin", stream="usage", bucket_start=DAY, bucket_width="1d",
                             provider="openai", model="gpt-4o", input_tokens=5000, output_tokens=500, requests=40)
        store.replace_window(conn, org_id=org, connection_id=1, source="openai_admin", stream="usage",
                             bucket_width="1d", start=DAY, end=DAY.replace(day=25), usage=[vendor])
        rollup.refresh_daily(conn, org, DAY, DAY.replace(day=25), source="openai_admin")
    spool = Spool(spool_dir, fsync_interval=0)
    for n in range(12):
        e = event(n, org_id=org, customer=f"customer-{n % 2}", ts=DAY.replace(hour=9, minute=n))
        e.virtual_key = f"vk_{n % 3}"
        spool.append_sync(e)
    spool.close_sync()
    Flusher(engine, spool_dir).flush_once()
    engine.dispose()
    return org


def test_gateway_usage_by_customer_feature_model_and_key(cli_env: dict[str, str], tmp_path: Path) -> None:
    seed(cli_env, tmp_path / "spool")
    rows = ok("report", "usage", "--source", "gateway", "--group-by", "customer,feature,model,virtual_key",
              *WINDOW, env=cli_env).json()
    got = {(r["customer"], r["feature"], r["model"], r["virtual_key"]): (r["input_tokens"], r["requests"])
           for r in rows}
    want: dict[tuple[str, str, str, str], tuple[int, int]] = {}
    for n in range(12):
        key = (f"customer-{n % 2}", "search", "gpt-4o", f"vk_{n % 3}")
        tokens, requests = want.get(key, (0, 0))
        want[key] = (tokens + 100 + n, requests + 1)
    assert got == want


def test_source_filters_keep_vendor_and_gateway_usage_apart(cli_env: dict[str, str], tmp_path: Path) -> None:
    seed(cli_env, tmp_path / "spool")
    [vendor] = ok("report", "usage", "--source", "openai_admin", "--group-by", "source", *WINDOW, env=cli_env).json()
    assert (vendor["source"], vendor["requests"]) == ("openai_admin", 40)
    both = ok("report", "usage", "--source", "openai_admin", "--source", "gateway", "--group-by", "source",
              *WINDOW, env=cli_env).json()
    assert {r["source"]: r["requests"] for r in both} == {"gateway": 12, "openai_admin": 40}
    assert ok("report", "costs", "--source", "gateway", *WINDOW, env=cli_env).json() == []


def test_attribution_groups_are_read_from_the_records_not_the_rollup(cli_env: dict[str, str], tmp_path: Path) -> None:
    org = seed(cli_env, tmp_path / "spool")
    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    with engine.connect() as conn:
        def table(*group: str) -> str:
            query = ReportQuery(org_id=org, start=DAY, end=DAY.replace(day=25), group_by=group,
                                filters={"source": ["gateway"]})
            return reading_table(conn, t.usage_records, query)[0].name

        assert table("provider", "model") == "usage_daily"
        for group in ("virtual_key", "customer", "feature", "business_unit"):
            assert table(group, "model") == "usage_records"
    engine.dispose()


def test_rates_divide_reported_cost_by_the_vendor_usage_not_the_gateway_usage_too(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    """Regression: once the flusher wrote gateway usage, rates counted the same tokens twice."""
    org = seed(cli_env, tmp_path / "spool")
    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    with engine.connect() as conn:
        [row] = rates(conn, ReportQuery(org_id=org, start=DAY, end=DAY.replace(day=25), group_by=("provider",)))
    engine.dispose()
    assert (row.input_tokens, row.output_tokens) == (5000, 500)


def test_savings_read_a_provider_s_own_report_or_else_the_gateway_never_both(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    org = seed(cli_env, tmp_path / "spool")  # openai: vendor-reported and metered by the gateway
    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    spool = Spool(tmp_path / "more", fsync_interval=0)
    for n in range(3):  # anthropic: only through the gateway
        e = event(n, org_id=org, ts=DAY.replace(hour=12))
        e.provider, e.model = "anthropic", "claude-sonnet-4-5"
        spool.append_sync(e)
    spool.close_sync()
    Flusher(engine, tmp_path / "more").flush_once()
    with engine.connect() as conn:
        used = {(r["provider"], r["model"]): r["input"]
                for r in _usage_by_model(conn, ReportQuery(org_id=org, start=DAY, end=DAY.replace(day=25)))}
    engine.dispose()
    assert used == {("openai", "gpt-4o"): 5000, ("anthropic", "claude-sonnet-4-5"): 100 + 101 + 102}


def test_usage_without_source_counts_each_provider_once(cli_env: dict[str, str], tmp_path: Path) -> None:
    """Regression: `report usage` added the gateway's metered requests to the vendor's report of them."""
    org = seed(cli_env, tmp_path / "spool")  # openai: 40 vendor-reported requests, 12 also metered
    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    spool = Spool(tmp_path / "more", fsync_interval=0)
    for n in range(3):  # anthropic: only through the gateway
        e = event(n, org_id=org, ts=DAY.replace(hour=12))
        e.provider, e.model = "anthropic", "claude-sonnet-4-5"
        spool.append_sync(e)
    spool.close_sync()
    Flusher(engine, tmp_path / "more").flush_once()
    engine.dispose()
    for group in ("provider", "provider,customer"):  # the daily rollup, then the raw records
        rows = ok("report", "usage", "--group-by", group, *WINDOW, env=cli_env).json()
        totals: dict[str, int] = {}
        for r in rows:
            totals[r["provider"]] = totals.get(r["provider"], 0) + r["requests"]
        assert totals == {"openai": 40, "anthropic": 3}, group
