"""The demo organisation's finance side: identity map, seat plans, seats and Claude Team invoices.

`tallybook demo` calls `load_demo_finance` after its syncs. The files are the package's own samples
(`tallybook/fakes/data/`), read through the same parsers and write doors as `tallybook identities
import`, `seats set --file`, `seats assign --file` and `import csv`, so every figure of `tallybook
report finance` shows up: teams and cost centres, a person who changed team on the 15th of last month
(Katherine Johnson, research -> platform), unmapped keys and projects (unallocated), an idle Claude
seat (Edsger Dijkstra never uses Claude Code) beside Cursor's own idle member, and a vendor invoice
per month beside our seat figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection

from tallybook.analytics.trends import next_period
from tallybook.connectors.csv_import import import_csv, parse_csv
from tallybook.connectors.csv_mapping import load_mapping
from tallybook.connectors.identity_file import parse_assignments, parse_identities, parse_plans
from tallybook.ledger.identities import Identity, IdentityRow, apply_identities
from tallybook.ledger.seats import assign, set_plan

DATA = Path(__file__).resolve().parent.parent / "fakes" / "data"
MOVER = IdentityRow("email", "katherine.johnson@example.com",
                    Identity("Katherine Johnson", "platform", "CC-100 Engineering"), None)
INVOICE_SOURCE = "claude-team-invoices"


@dataclass(frozen=True)
class DemoFinance:
    identities: int
    seats: int
    invoices: int
    moved_on: date


def _read(name: str) -> tuple[bytes, str]:
    path = DATA / name
    return path.read_bytes(), str(path)


def load_demo_finance(conn: Connection, org_id: int, today: datetime) -> DemoFinance:
    """Write the demo's identity map, seat plans, seats and invoices (idempotent: a second demo run
    changes nothing)."""
    first_of_month = today.date().replace(day=1)
    moved_on = (first_of_month - timedelta(days=1)).replace(day=15)
    identities = parse_identities(*_read("demo_identity_map.csv"))
    apply_identities(conn, org_id, [*identities, _dated(MOVER, moved_on)], source_file="demo_identity_map.csv")
    for plan in parse_plans(*_read("demo_seat_plans.csv")):
        set_plan(conn, org_id, plan)
    months = [first_of_month]
    for _ in range(3):
        months.insert(0, (months[0] - timedelta(days=1)).replace(day=1))
    # The file's seats have no start: held since the first invoiced month (not since always), and a
    # seat already held stays as it is, so a demo run next month adds no second seat.
    since = datetime.combine(months[0], datetime.min.time())
    seats = parse_assignments(*_read("demo_seats.csv"))
    for seat in seats:
        assign(conn, org_id, seat.platform, seat.plan, seat.email, since=since, origin="import")
    mapping = load_mapping("claude-team-invoice")
    parsed = parse_csv(_invoice(months, len([s for s in seats if s.platform == "claude"])), mapping,
                       source=INVOICE_SOURCE, path="demo-claude-team-invoices.csv")
    import_csv(conn, org_id, parsed)
    return DemoFinance(len(identities) + 1, len(seats), len(months), moved_on)


def _dated(row: IdentityRow, day: date) -> IdentityRow:
    return IdentityRow(row.kind, row.value, row.identity, datetime.combine(day, datetime.min.time()))


def _invoice(months: list[date], seats: int) -> bytes:
    """Claude Team invoices as the billing portal exports them: the seats at 30.00, and in the last
    month a seat added mid-cycle, prorated (a difference the finance report shows)."""
    lines = ["invoice_id,invoice_date,period_start,period_end,description,quantity,unit_price,amount,currency"]
    for i, first in enumerate(months):
        end = next_period(first, "month") - timedelta(days=1)
        invoice = f"in_demo{first:%Y%m}"
        lines.append(f"{invoice},{first},{first},{end},Claude Team - Standard seat (monthly),{seats},30.00,"
                     f"{seats * 30}.00,USD")
        if i == len(months) - 2:
            lines.append(f"{invoice},{first},{first},{end},Claude Team - seat added mid-cycle (prorated),1,15.00,"
                         "15.00,USD")
    return ("\n".join(lines) + "\n").encode()
