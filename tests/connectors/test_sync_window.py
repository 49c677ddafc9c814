"""Which window `tallybook sync` fetches when no dates are given."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from tallybook.connectors.sync import default_window
from tallybook.ledger import store

NOW = datetime(2026, 11, 20, 15, 30)


def test_first_sync_reads_the_default_number_of_days(engine: sa.Engine) -> None:
    assert default_window(engine, 1, now=NOW, first_days=30) == datetime(2026, 10, 22)


def test_later_syncs_start_on_the_day_the_last_success_ended(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        ok = store.start_run(conn, org_id=org, connection_id=1, provider="openai", start=datetime(2026, 10, 1),
                             end=datetime(2026, 11, 18, 9, 12), tasks_total=1)
        store.finish_run(conn, ok, status="succeeded")
        failed = store.start_run(conn, org_id=org, connection_id=1, provider="openai",
                                 start=datetime(2026, 10, 1), end=datetime(2026, 11, 19, 23), tasks_total=1)
        store.finish_run(conn, failed, status="failed", error="boom")
    # the partial day the last good run ended in is read again; the failed run does not count
    assert default_window(engine, 1, now=NOW, first_days=30) == datetime(2026, 11, 18)
