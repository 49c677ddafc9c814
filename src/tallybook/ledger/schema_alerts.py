"""Tables: alert channels and rules, and every delivery, deduplicated per rule, channel and period.

They live on the ledger's one `metadata` (see schema.py, which imports this module last)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from tallybook.ledger.schema import RowId, metadata

alert_channels = Table(
    "alert_channels",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("org_id", Integer, nullable=False),
    Column("name", String(100), nullable=False),
    Column("kind", String(20), nullable=False),  # slack | webhook | email
    Column("config_sealed", Text, nullable=False),  # vault-sealed JSON: URLs and secrets are credentials
    Column("target_hint", String(200), nullable=False),  # "hooks.slack.com/...f3a9", "ops@example.com"
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("org_id", "name"),
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("org_id", Integer, nullable=False),
    Column("name", String(100), nullable=False),
    # budget | forecast | anomaly | sync_failed | sync_stale | key_failing | reconcile
    Column("kind", String(20), nullable=False),
    Column("scope", String(240), nullable=False, server_default="org"),  # org | key:<id> | customer:<name> | ...
    Column("period", String(10), nullable=False, server_default="month"),  # day | month
    Column("amount", String(40)),  # decimal text: the budget, or the reconcile delta threshold
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("thresholds", String(100), nullable=False, server_default="100"),  # percents, "50,80,100"
    Column("channels", String(400), nullable=False),  # channel names, comma separated
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("org_id", "name"),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("org_id", Integer, nullable=False),
    Column("rule_id", BigInteger, nullable=False),
    Column("channel", String(100), nullable=False),
    # What makes this alert one alert: "budget:2026-11-01:80", "sync_failed:run:412", ...
    Column("dedup_key", String(240), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("payload", Text, nullable=False),  # JSON: the figures, never a secret
    Column("status", String(20), nullable=False, server_default="pending"),  # pending | sending | sent | failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(500)),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("sent_at", DateTime),
    UniqueConstraint("org_id", "rule_id", "channel", "dedup_key"),
    Index(None, "status", "next_attempt_at"),
)
