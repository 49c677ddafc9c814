"""The ledger's tables (SQLAlchemy Core). Alembic migrations in `migrations/` create exactly these;
a test compares the two so they cannot drift.

Money is stored as integer nano-units of the currency's main unit (`amount_nanos`,
1e-9 dollars), so sums in SQL are exact on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
RowId = BigInteger().with_variant(Integer(), "sqlite")

organisations = Table(
    "organisations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("created_at", DateTime, nullable=False),
)

connections = Table(
    "connections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("provider", String(40), nullable=False),
    Column("base_url", String(500), nullable=False),
    Column("secret_sealed", Text, nullable=False),  # vault ciphertext, never the key
    Column("key_fingerprint", String(40), nullable=False),
    Column("status", String(20), nullable=False, server_default="active"),
    Column("created_at", DateTime, nullable=False),
    Column("rotated_at", DateTime),
    Column("last_sync_at", DateTime),
    Column("last_error", Text),
    UniqueConstraint("org_id", "name"),
)

_usage_dimensions: list[Column[Any]] = [
    Column("provider", String(40), nullable=False),
    Column("model", String(200)),
    Column("project", String(200)),
    Column("api_key", String(200)),
    Column("user", String(200)),
    Column("service_tier", String(40)),
    Column("batch", Boolean),
    Column("context_window", String(20)),
    Column("inference_geo", String(40)),
    Column("detail", String(200)),
    Column("unit", String(40)),
    # attribution, set by the gateway (and CSV imports): who and what caused the usage
    Column("virtual_key", String(64)),
    Column("customer", String(200)),
    Column("feature", String(200)),
    Column("business_unit", String(200)),
]

usage_records = Table(
    "usage_records",
    metadata,
    Column("id", RowId, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("connection_id", Integer, nullable=False, server_default="0"),  # 0: no connection (gateway, csv)
    Column("source", String(60), nullable=False),
    Column("stream", String(60), nullable=False),
    Column("bucket_start", DateTime, nullable=False),
    Column("bucket_width", String(4), nullable=False),
    Column("record_key", String(32), nullable=False),
    *_usage_dimensions,
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_5m_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_1h_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("reasoning_tokens", BigInteger, nullable=False, server_default="0"),
    Column("audio_input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("audio_output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("requests", BigInteger, nullable=False, server_default="0"),
    Column("quantity", BigInteger, nullable=False, server_default="0"),
    Column("origin", String(12), nullable=False, server_default="reported"),
    UniqueConstraint(
        # bucket_start second: the key also serves every date-range read, so no second index
        # slows the writes (schema 0005; 20 % more rows/s on SQLite)
        "org_id", "bucket_start", "bucket_width", "connection_id", "source", "stream", "record_key",
        name="uq_usage_records_natural_key",
    ),
)

cost_records = Table(
    "cost_records",
    metadata,
    Column("id", RowId, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("connection_id", Integer, nullable=False, server_default="0"),
    Column("source", String(60), nullable=False),
    Column("stream", String(60), nullable=False),
    Column("bucket_start", DateTime, nullable=False),
    Column("bucket_width", String(4), nullable=False),
    Column("record_key", String(32), nullable=False),
    Column("provider", String(40), nullable=False),
    Column("model", String(200)),
    Column("project", String(200)),
    Column("api_key", String(200)),
    Column("line_item", String(300)),
    Column("token_type", String(80)),
    Column("cost_type", String(40)),
    Column("service_tier", String(40)),
    Column("context_window", String(20)),
    Column("inference_geo", String(40)),
    Column("currency", String(3), nullable=False),
    Column("amount_nanos", BigInteger, nullable=False),
    Column("quantity", String(40)),  # decimal text: informational, never summed in SQL
    Column("quantity_unit", String(40)),
    Column("origin", String(12), nullable=False, server_default="reported"),
    Column("user", String(200)),  # who was charged, where the vendor says (coding tools; schema 0007)
    UniqueConstraint(
        # bucket_start second: the key also serves every date-range read, so no second index
        # slows the writes (schema 0005; 20 % more rows/s on SQLite)
        "org_id", "bucket_start", "bucket_width", "connection_id", "source", "stream", "record_key",
        name="uq_cost_records_natural_key",
    ),
)

provider_objects = Table(
    "provider_objects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("connection_id", Integer, nullable=False, server_default="0"),
    Column("provider", String(40), nullable=False),
    Column("kind", String(20), nullable=False),  # project | workspace | api_key | user
    Column("object_id", String(200), nullable=False),
    Column("name", String(300)),
    Column("email", String(300)),
    Column("parent_id", String(200)),
    Column("status", String(40)),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("org_id", "provider", "kind", "object_id"),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("connection_id", Integer, nullable=False),
    Column("provider", String(40), nullable=False),
    Column("window_start", DateTime, nullable=False),
    Column("window_end", DateTime, nullable=False),
    Column("status", String(20), nullable=False),  # running | succeeded | failed
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("tasks_total", Integer, nullable=False, server_default="0"),
    Column("tasks_done", Integer, nullable=False, server_default="0"),
    Column("pages", Integer, nullable=False, server_default="0"),
    Column("rows", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    Index(None, "connection_id", "started_at"),
)

# Tasks a run committed, so an interrupted run's successor skips them.
sync_tasks = Table(
    "sync_tasks",
    metadata,
    Column("run_id", Integer, ForeignKey("sync_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("task_id", String(200), primary_key=True),
    Column("rows", Integer, nullable=False),
    Column("pages", Integer, nullable=False),
    Column("finished_at", DateTime, nullable=False),
)

# --- pricing: organisation rules over the list-price catalog -------------------------------------

pricing_rules = Table(
    "pricing_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("rule_id", String(100), nullable=False),  # the team's own name for the rule
    Column("version", Integer, nullable=False),  # 1, 2, ...: a changed rule is a new version
    Column("kind", String(20), nullable=False),  # negotiated | discount | markup | commitment
    Column("provider", String(40)),  # None: every provider
    Column("model_pattern", String(200), nullable=False, server_default="*"),  # fnmatch pattern
    Column("spec", Text, nullable=False),  # JSON: the rule's figures as decimal strings
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("effective_from", DateTime, nullable=False),
    Column("effective_to", DateTime),  # exclusive; None: open-ended
    Column("content_hash", String(64), nullable=False),
    Column("source", String(200)),  # file it was applied from, or "cli"
    Column("created_at", DateTime, nullable=False),
    Column("retired_at", DateTime),  # set when a newer version supersedes this one
    UniqueConstraint("org_id", "rule_id", "version"),
)

fx_rates = Table(
    "fx_rates",
    metadata,
    Column("day", DateTime, primary_key=True),  # the rate's date (midnight UTC)
    Column("base", String(3), primary_key=True),  # EUR for ECB reference rates
    Column("currency", String(3), primary_key=True),
    Column("rate", String(40), nullable=False),  # decimal text: units of `currency` per 1 `base`
    Column("source", String(40), nullable=False, server_default="ecb"),
)

# --- benchmark: opted-in organisations share one monthly blended rate per tier ------------------

benchmark_shares = Table(
    "benchmark_shares",
    metadata,
    Column("org_id", Integer, primary_key=True),
    Column("month", String(7), primary_key=True),  # YYYY-MM
    Column("tier", String(20), primary_key=True),  # frontier | mid | small
    Column("blended_rate", String(40), nullable=False),  # decimal text, USD per 1M tokens (3:1)
    Column("shared_at", DateTime, nullable=False),
)

org_settings = Table(
    "org_settings",
    metadata,
    Column("org_id", Integer, primary_key=True),
    Column("key", String(100), primary_key=True),  # e.g. benchmark_opt_in, currency
    Column("value", Text, nullable=False),
)

# --- daily rollups: the ledger's daily buckets summed over the dimensions reports group by most -------
# Maintained by `ledger.rollup.refresh_daily` in the transaction that replaces a window of daily
# buckets, so a report grouped by provider/model/tier/period reads thousands of rows, not millions.

usage_daily = Table(
    "usage_daily",
    metadata,
    Column("id", RowId, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("day", DateTime, nullable=False),  # the daily bucket's bucket_start
    Column("source", String(60), nullable=False),
    Column("provider", String(40), nullable=False),
    Column("model", String(200)),
    Column("service_tier", String(40)),
    Column("batch", Boolean),
    Column("context_window", String(20)),
    Column("unit", String(40)),
    Column("input_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_5m_tokens", BigInteger, nullable=False),
    Column("cache_write_1h_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("audio_input_tokens", BigInteger, nullable=False),
    Column("audio_output_tokens", BigInteger, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Index("ix_usage_daily_org_day", "org_id", "day"),
)

cost_daily = Table(
    "cost_daily",
    metadata,
    Column("id", RowId, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("day", DateTime, nullable=False),
    Column("source", String(60), nullable=False),
    Column("provider", String(40), nullable=False),
    Column("model", String(200)),
    Column("service_tier", String(40)),
    Column("token_type", String(80)),
    Column("cost_type", String(40)),
    Column("currency", String(3), nullable=False),
    Column("amount_nanos", BigInteger, nullable=False),
    Index("ix_cost_daily_org_day", "org_id", "day"),
)

# --- the gateway: virtual keys, upstream credentials, per-request events, budget counters ------------

virtual_keys = Table(
    "virtual_keys",
    metadata,
    Column("id", String(32), primary_key=True),  # public id, e.g. "vk_01J..."; the secret is never stored
    Column("org_id", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),  # HMAC-SHA256 of the secret
    Column("key_hint", String(40), nullable=False),  # "tb-...a1b2"
    Column("customer", String(200)),  # default attribution for requests made with the key
    Column("feature", String(200)),
    Column("business_unit", String(200)),
    Column("budget", String(40)),  # decimal text in `budget_currency`; None: no budget
    Column("budget_currency", String(3), nullable=False, server_default="USD"),
    Column("budget_period", String(10)),  # day | month
    Column("rpm", Integer),  # requests per minute; None: unlimited
    Column("tpm", Integer),  # tokens per minute
    Column("status", String(20), nullable=False, server_default="active"),  # active | revoked
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
)

provider_credentials = Table(
    "provider_credentials",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("provider", String(40), nullable=False),  # openai | anthropic | cohere | ollama | a configured name
    Column("base_url", String(500), nullable=False),
    Column("secret_sealed", Text),  # vault ciphertext; None for keyless upstreams (Ollama)
    Column("key_fingerprint", String(40)),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("org_id", "provider"),
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("event_id", String(36), primary_key=True),  # UUIDv7, or derived from the idempotency key
    Column("org_id", Integer, nullable=False),
    Column("ts", DateTime, nullable=False),
    Column("virtual_key", String(32)),
    Column("customer", String(200)),
    Column("feature", String(200)),
    Column("business_unit", String(200)),
    Column("tags", Text),  # JSON object
    Column("provider", String(40), nullable=False),
    Column("model", String(200)),
    Column("endpoint", String(60), nullable=False),  # chat.completions | responses | embeddings | messages ...
    Column("streamed", Boolean, nullable=False),
    Column("status", Integer, nullable=False),  # HTTP status returned to the client
    Column("outcome", String(20), nullable=False),  # ok | cancelled | upstream_error | rejected
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),  # uncached
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_5m_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_1h_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("reasoning_tokens", BigInteger, nullable=False, server_default="0"),
    Column("audio_input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("audio_output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("gpu_seconds", String(40)),  # decimal text, local models
    Column("latency_ms", Integer, nullable=False),
    Column("usage_origin", String(12), nullable=False),  # metered | estimated
    Column("list_cost_nanos", BigInteger),  # None: unpriced
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("price_version", String(120)),
    Column("idempotency_key", String(200)),
    Column("upstream_request_id", String(200)),
    Index(None, "org_id", "ts"),
)

budget_spend = Table(
    "budget_spend",
    metadata,
    Column("org_id", Integer, primary_key=True),
    Column("scope", String(240), primary_key=True),  # "key:<id>" | "customer:<name>"
    Column("period_start", DateTime, primary_key=True),
    Column("spent_nanos", BigInteger, nullable=False, server_default="0"),  # settled
    Column("reserved_nanos", BigInteger, nullable=False, server_default="0"),  # in flight
)


# The tables of later parts live in their own modules on this same `metadata`, one module per
# migration, so parts built side by side never edit one file. Imported last: they need the names above.
from tallybook.ledger import (  # noqa: F401
    schema_access,
    schema_alerts,
    schema_billing,
    schema_coding,
    schema_identity,
    schema_ops,
)
