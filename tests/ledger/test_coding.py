"""ledger/coding.py: a sync's members and cycle spend, idempotent, removal kept from the first sighting."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from tallybook.ledger import coding, store
from tallybook.ledger.records import CycleSpend, ToolDirectory, ToolMember
from tallybook.ledger.schema_coding import coding_cycle_spend, coding_members

T0 = datetime(2026, 11, 1, 9)
CYCLE = datetime(2026, 11, 3)


def members(engine: sa.Engine) -> dict[str, tuple[bool, datetime | None, str | None]]:
    with engine.connect() as conn:
        return {r.email: (r.removed, r.removed_at, r.role) for r in conn.execute(sa.select(coding_members))}


def save(engine: sa.Engine, org: int, directory: ToolDirectory, at: datetime) -> None:
    with engine.begin() as conn:
        coding.save_directory(conn, org, 1, directory, now=at)


def test_removal_is_dated_once_and_a_return_clears_it(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
    team = [ToolMember("cursor", "Ada@Example.com", "1", "Ada", "owner"), ToolMember("cursor", "bo@example.com")]
    save(engine, org, ToolDirectory("cursor", members=team, listed_members=True), T0)
    assert members(engine) == {"ada@example.com": (False, None, "owner"), "bo@example.com": (False, None, None)}
    team[1].removed = True
    for hours in (1, 2):  # the second sighting keeps the first date
        save(engine, org, ToolDirectory("cursor", members=team, listed_members=True), T0 + timedelta(hours=hours))
    assert members(engine)["bo@example.com"] == (True, T0 + timedelta(hours=1), None)
    team[1].removed = False
    save(engine, org, ToolDirectory("cursor", members=team, listed_members=True), T0 + timedelta(hours=3))
    assert members(engine)["bo@example.com"] == (False, None, None)
    save(engine, org, ToolDirectory("cursor", listed_members=False), T0 + timedelta(hours=4))
    assert len(members(engine)) == 2  # a sync that did not list members leaves them


def test_a_cycles_spend_is_replaced_whole(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
    first = [CycleSpend("cursor", CYCLE, "a@x", Decimal("12.34")), CycleSpend("cursor", CYCLE, "b@x", Decimal(1))]
    save(engine, org, ToolDirectory("cursor", spend=first), T0)
    save(engine, org, ToolDirectory("cursor", spend=first), T0)
    later = [CycleSpend("cursor", CYCLE, "a@x", Decimal("20.5"), overall_spend=Decimal("25.5"))]
    save(engine, org, ToolDirectory("cursor", spend=later), T0 + timedelta(days=1))
    with engine.connect() as conn:
        rows = [(r.email, r.spend_nanos, r.overall_spend_nanos) for r in conn.execute(sa.select(coding_cycle_spend))]
    assert rows == [("a@x", 20_500_000_000, 25_500_000_000)]
