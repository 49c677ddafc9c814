"""Tables: coding tools (Claude Code, Cursor) beside the usage and cost records they also write.

Per-day, per-actor activity (sessions, lines, commits, requests) and tokens go into `usage_records`
and the money into `cost_records` (source `claude_code` / `cursor`); what is not a time bucket lives
here:

    coding_members        a tool's team members as last listed (Cursor `GET /teams/members`): email,
                          role, and whether and since when the vendor lists them as removed
    coding_cycle_spend    the vendor's own spend per member for one billing cycle (Cursor
                          `POST /teams/spend`), a reference figure shown beside the ledger's sum;
                          never added to cost totals (the per-event costs already are)

They live on the ledger's one `metadata` (see schema.py, which imports this module last).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Integer, String, Table, UniqueConstraint

from tallybook.ledger.schema import RowId, metadata

coding_members = Table(
    "coding_members",
    metadata,
    Column("id", RowId, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("connection_id", Integer, nullable=False),
    Column("tool", String(40), nullable=False),  # cursor | claude_code
    Column("email", String(300), nullable=False),  # the member's identity across tools and the identity map
    Column("member_id", String(64)),  # the vendor's own id, when it gives one
    Column("name", String(300)),
    Column("role", String(40)),  # owner | member | free-owner | ...
    Column("removed", Boolean, nullable=False),
    Column("first_seen_at", DateTime, nullable=False),  # the sync that first listed the member
    Column("removed_at", DateTime),  # the sync that first saw the member removed; None while a member
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("org_id", "tool", "email"),
)

coding_cycle_spend = Table(
    "coding_cycle_spend",
    metadata,
    Column("id", RowId, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("connection_id", Integer, nullable=False),
    Column("tool", String(40), nullable=False),
    Column("cycle_start", DateTime, nullable=False),  # the billing cycle's start, UTC
    Column("email", String(300), nullable=False),
    Column("name", String(300)),
    Column("role", String(40)),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("spend_nanos", BigInteger, nullable=False),  # `spendCents`: on-demand spend this cycle
    Column("overall_spend_nanos", BigInteger),  # `overallSpendCents`, included usage too (newer shape)
    Column("included_spend_nanos", BigInteger),  # `includedSpendCents` (newer shape)
    Column("fast_premium_requests", BigInteger),
    Column("fetched_at", DateTime, nullable=False),
    UniqueConstraint("org_id", "tool", "cycle_start", "email"),
)
