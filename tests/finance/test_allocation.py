"""Allocation: every month's teams plus unallocated equal the month's spend to the cent, a team change
on the 15th moves only spend from the 15th, unmapped keys are listed, idle seats are found."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tallybook.analytics.allocation import UNALLOCATED, allocate, charges, months, unknown_identities
from tallybook.analytics.seats import idle_seats
from tallybook.ledger.identities import Identity, IdentityRow, apply_identities
from tests.finance.seed import END, FIRST, amount, ledger_spend, seed

CENT = Decimal("0.01")
# Seats held every month of the seed: cy and eve on Cursor at 40, dee on Claude at 300 a year.
SEATS_A_MONTH = Decimal(40) + Decimal(40) + Decimal(300) / 12


@pytest.mark.parametrize("month_start,month_end", months(FIRST, END))
def test_teams_plus_unallocated_equal_total_spend_to_the_cent(engine: sa.Engine, month_start, month_end) -> None:
    org = seed(engine)
    with engine.connect() as conn:
        items = charges(conn, org, month_start, month_end, "USD")
    expected = ledger_spend(engine, month_start, month_end) + SEATS_A_MONTH
    for by in ("team", "cost_centre", "person"):
        shares = allocate(items, by)
        assert sum(s.amount for s in shares).quantize(CENT) == expected.quantize(CENT)
        assert sum(s.amount for s in shares) == expected  # and in fact exactly, to the nano-unit
        assert any(s.name == UNALLOCATED for s in shares)
    unallocated = next(s for s in allocate(items, "team") if s.name == UNALLOCATED)
    # key_ghost has no mapping and dee@acme.com's Claude seat neither: both unallocated, nothing dropped
    assert unallocated.amount == ledger_spend(engine, month_start, month_end, api_key="key_ghost") + Decimal(25)


def test_a_team_change_on_the_15th_moves_only_spend_from_the_15th(engine: sa.Engine) -> None:
    org = seed(engine)
    with engine.begin() as conn:
        apply_identities(conn, org, [IdentityRow("api_key", "key_ana", Identity("Ana", "platform", "OPS-200"),
                                                 datetime(2026, 10, 15))])
    october = (datetime(2026, 10, 1), datetime(2026, 11, 1))
    with engine.connect() as conn:
        teams = {s.name: s.amount for s in allocate(charges(conn, org, *october, "USD"), "team")}
        september = {s.name: s.amount for s in allocate(charges(conn, org, datetime(2026, 9, 1),
                                                                datetime(2026, 10, 1), "USD"), "team")}
    days = [october[0] + timedelta(days=i) for i in range(31)]
    ana_before = sum((amount("key_ana", d) for d in days if d.day < 15), Decimal(0))
    ana_after = sum((amount("key_ana", d) for d in days if d.day >= 15), Decimal(0))
    bo_and_shared = sum((amount("key_bo", d) + amount(None, d) for d in days), Decimal(0))
    # research keeps Ana's first 14 days and Cy's seat; platform gains Ana from the 15th
    assert teams["research"] == ana_before + 40
    assert teams["platform"] == bo_and_shared + ana_after
    # September is untouched by a change dated in October
    sept_days = [datetime(2026, 9, 1) + timedelta(days=i) for i in range(30)]
    assert september["research"] == sum((amount("key_ana", d) for d in sept_days), Decimal(0)) + 40


def test_importing_the_same_identity_rows_again_changes_nothing(engine: sa.Engine) -> None:
    org = seed(engine)
    row = IdentityRow("api_key", "key_ana", Identity("Ana", "platform", "OPS-200"), datetime(2026, 10, 15))
    with engine.begin() as conn:
        first = apply_identities(conn, org, [row])
        second = apply_identities(conn, org, [row])
    assert (first.changed, second.unchanged, second.changed, second.added) == (1, 1, 0, 0)


def test_unmapped_keys_and_emails_are_listed_with_their_spend(engine: sa.Engine) -> None:
    org = seed(engine)
    with engine.connect() as conn:
        unknown = {(u["kind"], u["value"]): u for u in unknown_identities(conn, org, datetime(2026, 10, 1),
                                                                           datetime(2026, 11, 1))}
    assert set(unknown) == {("api_key", "key_ghost"), ("email", "dee@acme.com"), ("project", "proj_apps")}
    assert unknown[("api_key", "key_ghost")]["spend"]["USD"] == ledger_spend(
        engine, datetime(2026, 10, 1), datetime(2026, 11, 1), api_key="key_ghost")


def test_an_idle_seat_appears_with_its_monthly_cost_and_an_active_one_does_not(engine: sa.Engine) -> None:
    org = seed(engine)
    with engine.connect() as conn:
        idle = {s.email: s for s in idle_seats(conn, org, datetime(2026, 11, 20))}
    # cy used Cursor on 2026-11-10: active. eve last on 2026-10-01 (50 days): idle. dee never: idle.
    assert set(idle) == {"eve@acme.com", "dee@acme.com"}
    assert (idle["eve@acme.com"].monthly_cost, idle["eve@acme.com"].currency) == (Decimal(40), "USD")
    assert idle["eve@acme.com"].last_active == datetime(2026, 10, 1)
    assert idle["dee@acme.com"].monthly_cost == Decimal(25) and idle["dee@acme.com"].last_active is None
    with engine.connect() as conn:
        # on 2026-10-20, eve's activity of 2026-10-01 is within 30 days: not idle then
        assert "eve@acme.com" not in {s.email for s in idle_seats(conn, org, datetime(2026, 10, 20))}


def test_cursor_members_hold_seats_and_a_silent_member_is_idle(engine: sa.Engine) -> None:
    from tallybook.ledger.coding import save_directory
    from tallybook.ledger.records import ToolDirectory, ToolMember
    from tallybook.ledger.seats import load_assignments

    org = seed(engine)
    synced = datetime(2026, 11, 20, 9, 30)
    with engine.begin() as conn:
        save_directory(conn, org, 0, ToolDirectory("cursor", [
            ToolMember("cursor", "cy@acme.com"),  # stated seat already: not a second one
            ToolMember("cursor", "gus@acme.com"),  # listed, never active
            ToolMember("cursor", "hal@acme.com", removed=True),
        ], listed_members=True), now=synced)
    with engine.connect() as conn:
        seats = {(s.email, s.origin): s for s in load_assignments(conn, org)}
        idle = {s.email for s in idle_seats(conn, org, datetime(2026, 11, 21))}
        october = charges(conn, org, datetime(2026, 10, 1), datetime(2026, 11, 1), "USD")
    assert ("cy@acme.com", "members") not in seats
    gus = seats[("gus@acme.com", "members")]
    # the tool's history in the ledger starts 2026-10-01 (eve's first Cursor day): gus held a seat since
    assert gus.assigned_from == datetime(2026, 10, 1) and gus.assigned_to is None
    assert seats[("hal@acme.com", "members")].assigned_to == datetime(2026, 11, 20)
    assert "gus@acme.com" in idle and "hal@acme.com" not in idle
    cursor_seats = [c for c in october if c.kind == "seat" and c.platform == "cursor"]
    assert sorted(c.subject for c in cursor_seats) == ["cy@acme.com", "eve@acme.com", "gus@acme.com", "hal@acme.com"]
