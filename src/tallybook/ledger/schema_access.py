"""Tables: Users, organisation memberships and roles, web sessions, API tokens, login attempts (the web issue),
and the web's background sync jobs with their per-connection locks.

They live on the ledger's one `metadata` (see schema.py, which imports this module last).
Secrets are never stored: a session or API token is kept as the SHA-256 of its 32 random bytes,
a password as its argon2id hash.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, String, Table, Text

from tallybook.ledger.schema import RowId, metadata

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),  # lower-cased
    Column("password_hash", String(200)),  # argon2id; None: single sign-on only
    Column("oidc_subject", String(400), unique=True),  # "<issuer>|<sub>" once the user signed in by SSO
    Column("status", String(20), nullable=False, server_default="active"),  # active | disabled
    Column("created_at", DateTime, nullable=False),
    Column("last_login_at", DateTime),
)

memberships = Table(
    "memberships",
    metadata,
    Column("org_id", Integer, ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(20), nullable=False),  # admin | analyst | viewer
    Column("created_at", DateTime, nullable=False),
    Index(None, "user_id"),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # SHA-256 of the cookie's value
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("org_id", Integer, nullable=False),  # the organisation the session acts on now
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Index(None, "user_id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256 of the token
    Column("token_hint", String(40), nullable=False),  # "tbt_...a1b2"
    Column("scopes", String(200), nullable=False),  # space-separated: read, write
    Column("created_at", DateTime, nullable=False),
    Column("last_used_at", DateTime),
    Column("revoked_at", DateTime),
    Index(None, "org_id"),
)

login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", RowId, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("client_ip", String(64), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("succeeded", Integer, nullable=False),  # 0 | 1
    Index(None, "email", "client_ip", "at"),
)

sync_jobs = Table(
    "sync_jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, nullable=False),
    Column("connection_id", Integer),  # None: every connection of the organisation
    Column("window_start", DateTime),  # None: from where each connection's last sync ended
    Column("window_end", DateTime),
    Column("trigger", String(20), nullable=False),  # manual | schedule
    Column("status", String(20), nullable=False),  # queued | running | succeeded | failed
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Column("heartbeat_at", DateTime),  # refreshed while it runs: a stale one belonged to a process that died
    Column("error", Text),
    Index(None, "org_id", "created_at"),
)

# One row while a connection syncs, so two processes never sync one connection at once.
sync_locks = Table(
    "sync_locks",
    metadata,
    Column("connection_id", Integer, primary_key=True),
    Column("job_id", Integer, nullable=False),
    Column("holder", String(100), nullable=False),  # host:pid
    Column("expires_at", DateTime, nullable=False),  # refreshed after each task; a dead holder's lock lapses
)
