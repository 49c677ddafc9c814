"""A small organisation written straight through the ledger's write door: three months of daily API
costs on four keys and a shared project, an identity map, seat plans and seats."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from tallybook.ledger import rollup, store
from tallybook.ledger.identities import Identity, IdentityRow, apply_identities
from tallybook.ledger.records import CostRecord, UsageRecord
from tallybook.ledger.seats import SeatAssignment, SeatPlan, put_assignment, set_plan

FIRST, END = datetime(2026, 9, 1), datetime(2026, 12, 1)
KEYS = ("key_ana", "key_bo", "key_ghost", None)  # None: spend on the shared project with no key


def amount(key: str | None, day: datetime) -> Decimal:
    """Odd amounts (nano-unit digits) so a rounding or a dropped row shows up."""
    base = {"key_ana": "3.141592653", "key_bo": "2.718281828", "key_ghost": "0.577215664", None: "1.414213562"}[key]
    return Decimal(base) * (1 + day.day % 7)


def seed(engine: sa.Engine, org: str = "default") -> int:
    costs, day = [], FIRST
    while day < END:
        for key in KEYS:
            costs.append(CostRecord(source="openai_admin", stream="costs", bucket_start=day, bucket_width="1d",
                                    provider="openai", amount=amount(key, day), currency="USD", api_key=key,
                                    project="proj_shared" if key is None else "proj_apps", line_item="completions"))
        day += timedelta(days=1)
    usage = [UsageRecord(source="cursor", stream="daily", bucket_start=datetime(2026, 11, 10), bucket_width="1d",
                         provider="cursor", user="cy@acme.com", unit="requests", requests=12),
             UsageRecord(source="cursor", stream="daily", bucket_start=datetime(2026, 10, 1), bucket_width="1d",
                         provider="cursor", user="eve@acme.com", unit="requests", requests=3)]
    with engine.begin() as conn:
        org_id = store.ensure_org(conn, org)
        store.upsert_costs(conn, store.cost_rows(org_id, 0, costs))
        store.upsert_usage(conn, store.usage_rows(org_id, 0, usage))
        rollup.refresh_daily(conn, org_id, FIRST, END)
        apply_identities(conn, org_id, [
            IdentityRow("api_key", "key_ana", Identity("Ana", "research", "RD-100"), None),
            IdentityRow("api_key", "key_bo", Identity("Bo", "platform", "OPS-200"), None),
            IdentityRow("project", "proj_shared", Identity(None, "platform", "OPS-200"), None),
            IdentityRow("email", "cy@acme.com", Identity("Cy", "research", "RD-100"), None),
            IdentityRow("email", "eve@acme.com", Identity("Eve", "design", "RD-100"), None),
        ])
        set_plan(conn, org_id, SeatPlan("cursor", "business", Decimal(40), "USD", "month"))
        set_plan(conn, org_id, SeatPlan("claude", "team", Decimal(300), "USD", "year"))
        for email, platform, plan, since in (("cy@acme.com", "cursor", "business", datetime(2026, 8, 1)),
                                             ("eve@acme.com", "cursor", "business", datetime(2026, 8, 1)),
                                             ("dee@acme.com", "claude", "team", datetime(2026, 9, 1))):
            put_assignment(conn, org_id, SeatAssignment(platform, plan, email, since, None, "import"))
    return org_id


def ledger_spend(engine: sa.Engine, start: datetime, end: datetime, **where: str) -> Decimal:
    """Cost records of [start, end) summed in SQL, straight from the table (not through analytics)."""
    from tallybook.ledger import schema as t

    c = t.cost_records.c
    query = sa.select(sa.func.sum(c.amount_nanos)).where(c.bucket_start >= start, c.bucket_start < end,
                                                         c.stream != "invoice", c.origin != "estimated",
                                                         *[c[k] == v for k, v in where.items()])
    with engine.connect() as conn:
        nanos = conn.execute(query).scalar() or 0
    return Decimal(nanos) / 10**9
