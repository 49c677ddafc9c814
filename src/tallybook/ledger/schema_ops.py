"""Tables: Alerts, deliveries, Stripe billing queue and customer map, the hash-chained audit log (the alerts/billing/audit issue).

They live on the ledger's one `metadata` (see schema.py, which imports this module last)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, String, Table, Text, UniqueConstraint

from tallybook.ledger.schema import RowId, metadata  # noqa: F401  (used as tables are added)

# --- audit: the hash-chained log (tallybook.audit) ----------------------------------------------
# One chain for the whole deployment. Each entry's `hash` is SHA-256 over its canonical form,
# which includes `prev_hash`; `audit_head` holds the last seq and hash, so a removed tail shows.
# Personal identifiers never enter the hashed columns: they are `audit_subjects` tokens, and
# deleting a subject's row (erasure) leaves a chain that still verifies. See docs/audit.md.

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False),
    Column("ts", DateTime, nullable=False),
    Column("org_id", Integer),  # None: deployment-wide
    Column("actor", String(120), nullable=False),  # "system:..." or a subject token
    Column("action", String(60), nullable=False),  # e.g. connection.created, key.revoked, customer.erased
    Column("object_type", String(40), nullable=False),
    Column("object_id", String(200)),
    Column("details", Text, nullable=False),  # canonical JSON, no secrets, personal data as tokens
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_org_ts", "org_id", "ts"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_subjects = Table(
    "audit_subjects",
    metadata,
    Column("token", String(40), primary_key=True),  # psn_<random hex>: what the chain holds
    Column("org_id", Integer, nullable=False),
    Column("kind", String(20), nullable=False),  # customer | user | email | actor | member
    Column("value", String(300), nullable=False),  # the personal identifier; deleted on erasure
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("org_id", "kind", "value"),
)
# --- end audit ----------------------------------------------------------------------------------
