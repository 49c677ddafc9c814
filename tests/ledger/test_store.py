"""The ledger's write door: idempotent upserts, window replacement, money exactness, migrations."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tallybook.analytics.rollups import ReportQuery, cost_report, usage_report
from tallybook.errors import LedgerError
from tallybook.ledger import schema as t
from tallybook.ledger import store
from tallybook.ledger.records import CostRecord, UsageRecord

DAY = datetime(2026, 10, 1)


def usage(day: int, model: str = "gpt-4o", tokens: int = 100, **dims: object) -> UsageRecord:
    return UsageRecord(source="openai_admin", stream="completions", bucket_start=DAY + timedelta(days=day),
                       bucket_width="1d", provider="openai", model=model, input_tokens=tokens,
                       output_tokens=tokens // 2, requests=1, **dims)  # type: ignore[arg-type]


def cost(day: int, amount: str, line_item: str = "gpt-4o, input") -> CostRecord:
    return CostRecord(source="openai_admin", stream="costs", bucket_start=DAY + timedelta(days=day),
                      bucket_width="1d", provider="openai", amount=Decimal(amount), currency="usd",
                      line_item=line_item)


def replace(conn: sa.Connection, org: int, start: int, end: int, *, records=(), costs=()) -> int:  # type: ignore[no-untyped-def]
    stream = "costs" if costs else "completions"
    return store.replace_window(conn, org_id=org, connection_id=1, source="openai_admin", stream=stream,
                                bucket_width="1d", start=DAY + timedelta(days=start), end=DAY + timedelta(days=end),
                                usage=records, costs=costs)


def totals(engine: sa.Engine, org: int) -> dict[str, int]:
    with engine.connect() as conn:
        rows = usage_report(conn, ReportQuery(org_id=org, start=DAY, end=DAY + timedelta(days=60)))
    return {"input": sum(r["input_tokens"] for r in rows), "output": sum(r["output_tokens"] for r in rows)}


def test_migrated_schema_matches_the_tables(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diff == []


def test_replacing_a_window_twice_never_double_counts(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        replace(conn, org, 0, 3, records=[usage(0), usage(1), usage(2, "gpt-4o-mini")])
    with engine.begin() as conn:
        replace(conn, org, 0, 3, records=[usage(0), usage(1), usage(2, "gpt-4o-mini")])
    assert totals(engine, org) == {"input": 300, "output": 150}


def test_replacement_drops_rows_the_provider_no_longer_returns(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        replace(conn, org, 0, 2, records=[usage(0), usage(1, "old-model")])
        replace(conn, org, 1, 2, records=[usage(1, "new-model", tokens=40)])
    with engine.connect() as conn:
        models = {r["model"]: r["input_tokens"] for r in usage_report(
            conn, ReportQuery(org_id=org, start=DAY, end=DAY + timedelta(days=5), group_by=["model"]))}
    assert models == {"gpt-4o": 100, "new-model": 40}


def test_upsert_on_the_natural_key_replaces_measures(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        store.upsert_usage(conn, store.usage_rows(org, 1, [usage(0, tokens=10)]))
        store.upsert_usage(conn, store.usage_rows(org, 1, [usage(0, tokens=70)]))
        count = conn.execute(sa.select(sa.func.count()).select_from(t.usage_records)).scalar()
    assert count == 1
    assert totals(engine, org)["input"] == 70


def test_rows_with_null_dimensions_are_still_one_natural_key(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        for _ in range(2):
            store.upsert_usage(conn, store.usage_rows(org, 1, [usage(0, project=None, user=None)]))
        count = conn.execute(sa.select(sa.func.count()).select_from(t.usage_records)).scalar()
    assert count == 1


def test_natural_keys_never_change(engine: sa.Engine) -> None:
    """Stored rows are found again by this digest: a new one would double-count every re-synced day."""
    record = usage(0, project="proj_1", user="user-1", service_tier="default", batch=True)
    assert record.key() == "040302d83a7fe041aee13ea651883f14"
    record.batch = None
    assert record.key() == "f2f9d528e4b9e47af435e513aa4aee60"
    assert cost(0, "1").key() == "85df2e77325f571b6d91b238aa914a0b"
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        replace(conn, org, 0, 1, records=[record])
        stored = conn.execute(sa.select(t.usage_records.c.record_key, t.usage_records.c.batch)).one()
    assert tuple(stored) == ("f2f9d528e4b9e47af435e513aa4aee60", None)


def test_duplicates_of_one_natural_key_are_summed_into_the_first(engine: sa.Engine) -> None:
    estimated = usage(0, tokens=5)
    estimated.origin = "estimated"
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        written = replace(conn, org, 0, 2, records=[usage(0, tokens=10), usage(1), estimated, usage(0, tokens=1)])
        rows = conn.execute(sa.select(t.usage_records.c.bucket_start, t.usage_records.c.input_tokens,
                                      t.usage_records.c.origin).order_by(t.usage_records.c.id)).all()
    assert written == 2
    assert [tuple(r) for r in rows] == [(DAY, 16, "reported"), (DAY + timedelta(days=1), 100, "reported")]


def test_equal_dimensions_that_print_apart_stay_apart(engine: sa.Engine) -> None:
    """batch=1 is not batch=True to the digest, so two rows, as before the key memo."""
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        written = replace(conn, org, 0, 1, records=[usage(0, batch=True), usage(0, batch=1)])
    assert written == 2


def test_a_dimension_set_on_some_rows_is_stored_on_those(engine: sa.Engine) -> None:
    """Dimensions no row of a write sets are left out of its INSERT; the others must still land."""
    c = t.usage_records.c
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        replace(conn, org, 0, 2, records=[usage(0), usage(1, customer="globex", detail="1024x1024")])
        store.upsert_usage(conn, store.usage_rows(org, 1, [usage(0, tokens=7), usage(1, feature="search")]))
        rows = conn.execute(sa.select(c.bucket_start, c.customer, c.detail, c.feature, c.input_tokens)
                            .order_by(c.bucket_start, c.id)).all()
    assert [tuple(r) for r in rows] == [
        (DAY, None, None, None, 7),
        (DAY + timedelta(days=1), "globex", "1024x1024", None, 100),
        (DAY + timedelta(days=1), None, None, "search", 100),
    ]


def test_a_record_outside_its_window_writes_nothing(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        replace(conn, org, 0, 1, records=[usage(0)])
    with pytest.raises(LedgerError, match="outside"), engine.begin() as conn:
        replace(conn, org, 0, 1, records=[usage(0, tokens=5), usage(3)])
    assert totals(engine, org)["input"] == 100  # the earlier data survived the failed write


def test_money_is_exact_to_the_nano(engine: sa.Engine) -> None:
    amounts = ["0.1", "0.2", "1.23789120", "0.000001", "12345.678901"]
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        replace(conn, org, 0, 5, costs=[cost(i, a, f"item {i}") for i, a in enumerate(amounts)])
    with engine.connect() as conn:
        rows = cost_report(conn, ReportQuery(org_id=org, start=DAY, end=DAY + timedelta(days=5)))
    assert rows == [{"amount": sum(Decimal(a) for a in amounts), "currency": "USD", "origin": "reported"}]
    assert isinstance(rows[0]["amount"], Decimal)


def test_organisations_are_isolated(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        a, b = store.ensure_org(conn, "a"), store.ensure_org(conn, "b")
        replace(conn, a, 0, 1, records=[usage(0, tokens=10)])
        replace(conn, b, 0, 1, records=[usage(0, tokens=99)])
    assert totals(engine, a)["input"] == 10
    assert totals(engine, b)["input"] == 99


def test_periods_group_by_day_week_and_month(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        replace(conn, org, 0, 40, records=[usage(d, tokens=1) for d in range(40)])
    with engine.connect() as conn:
        def by(period: str) -> dict[str, int]:
            q = ReportQuery(org_id=org, start=DAY, end=DAY + timedelta(days=40), group_by=[period])
            return {r[period]: r["input_tokens"] for r in usage_report(conn, q)}

        assert by("month") == {"2026-10": 31, "2026-11": 9}
        days = by("day")
        assert len(days) == 40 and days["2026-10-01"] == 1
        weeks = by("week")  # 2026-10-01 is a Thursday: its week starts Monday 2026-09-28
        assert next(iter(weeks)) == "2026-09-28" and weeks["2026-09-28"] == 4 and sum(weeks.values()) == 40


def test_resume_remembers_tasks_of_an_unfinished_run(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        run = store.start_run(conn, org_id=org, connection_id=1, provider="openai", start=DAY,
                              end=DAY + timedelta(days=3), tasks_total=3)
        store.record_task(conn, run, "completions/1d/a", rows=5, pages=1)
    with engine.begin() as conn:
        store.close_stale_runs(conn, 1)
        assert store.resumable_tasks(conn, 1) == {"completions/1d/a"}
        run2 = store.start_run(conn, org_id=org, connection_id=1, provider="openai", start=DAY,
                               end=DAY + timedelta(days=3), tasks_total=3)
        store.finish_run(conn, run2, status="succeeded")
    with engine.begin() as conn:
        assert store.resumable_tasks(conn, 1) == set()
        assert store.last_successful_end(conn, 1) == DAY + timedelta(days=3)
