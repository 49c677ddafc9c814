"""API tokens for the REST API: shown once, stored as SHA-256 (32 random bytes: nothing to brute-force),
bound to one (user, organisation), scoped (read, write) and revocable.

A token acts with its user's current role in its organisation, capped at analyst when it lacks the
`write` scope; a token whose user left the organisation stops working at once.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update

from tallybook import audit
from tallybook.errors import AccessError, InvalidCredentials
from tallybook.ledger import schema as t
from tallybook.ledger.schema_access import api_tokens, memberships, users
from tallybook.ledger.store import utcnow
from tallybook.web.auth.roles import Principal, check_role, lower_of

PREFIX = "tbt_"
SCOPES = ("read", "write")
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most once a minute per token


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    user_id: int
    email: str
    hint: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_scopes(scopes: list[str] | tuple[str, ...] | str) -> tuple[str, ...]:
    items = scopes.replace(",", " ").split() if isinstance(scopes, str) else list(scopes)
    unknown = [s for s in items if s not in SCOPES]
    if unknown or not items:
        raise AccessError(f"Token scopes are read and/or write, not {' '.join(unknown) or '(none)'}.")
    return tuple(s for s in SCOPES if s in items)


def create_token(conn: Connection, org_id: int, user_id: int, name: str,
                 scopes: list[str] | tuple[str, ...] = ("read",), *, actor: str = "system") -> tuple[int, str]:
    """Create a token for a member; returns (token_id, plaintext). The plaintext is never stored or shown again."""
    chosen = check_scopes(scopes)
    m = memberships.c
    if conn.execute(select(m.role).where(m.org_id == org_id, m.user_id == user_id)).scalar() is None:
        raise AccessError("No such member in this organisation.", status=404)
    if not name.strip():
        raise AccessError("A token needs a name (what it is for).")
    token = PREFIX + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    hint = f"{PREFIX}...{token[-4:]}"
    result = conn.execute(api_tokens.insert().values(
        org_id=org_id, user_id=user_id, name=name.strip()[:200], token_hash=hash_token(token),
        token_hint=hint, scopes=" ".join(chosen), created_at=utcnow()))
    token_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    audit.record(conn, org_id, actor, "token.created", "api_token", str(token_id),
                 {"name": name.strip()[:200], "hint": hint, "scopes": list(chosen), "user": _email(conn, user_id)})
    return token_id, token


def list_tokens(conn: Connection, org_id: int, user_id: int | None = None) -> list[TokenInfo]:
    """The organisation's tokens (or one member's), newest first; never the secret."""
    k, u = api_tokens.c, users.c
    query = (select(k.id, k.name, k.user_id, u.email, k.token_hint, k.scopes, k.created_at, k.last_used_at,
                    k.revoked_at).join_from(api_tokens, users, k.user_id == u.id)
             .where(k.org_id == org_id).order_by(k.created_at.desc(), k.id.desc()))
    if user_id is not None:
        query = query.where(k.user_id == user_id)
    return [TokenInfo(r.id, r.name, r.user_id, r.email, r.token_hint, tuple(r.scopes.split()), r.created_at,
                      r.last_used_at, r.revoked_at) for r in conn.execute(query)]


def revoke_token(conn: Connection, org_id: int, token_id: int, *, user_id: int | None = None,
                 actor: str = "system") -> None:
    """Revoke at once (the next request with it gets 401). `user_id`: only if it is that user's token."""
    k = api_tokens.c
    query = select(k.revoked_at).where(k.org_id == org_id, k.id == token_id)
    if user_id is not None:
        query = query.where(k.user_id == user_id)
    found = conn.execute(query).first()
    if found is None:
        raise AccessError(f"No API token {token_id} in this organisation.", status=404)
    if found.revoked_at is None:
        conn.execute(update(api_tokens).where(k.id == token_id).values(revoked_at=utcnow()))
        audit.record(conn, org_id, actor, "token.revoked", "api_token", str(token_id))


def _email(conn: Connection, user_id: int) -> str:
    return str(conn.execute(select(users.c.email).where(users.c.id == user_id)).scalar_one())


def principal_for_token(conn: Connection, token: str) -> Principal:
    """The principal a bearer token acts as, or InvalidCredentials (unknown, revoked, or its user left)."""
    k, m, u, o = api_tokens.c, memberships.c, users.c, t.organisations.c
    row = conn.execute(
        select(k.id, k.org_id, k.user_id, k.scopes, k.last_used_at, u.email, u.status, m.role, o.slug)
        .join_from(api_tokens, users, k.user_id == u.id)
        .join(memberships, (m.user_id == k.user_id) & (m.org_id == k.org_id))
        .join(t.organisations, o.id == k.org_id)
        .where(k.token_hash == hash_token(token), k.revoked_at.is_(None))).first()
    if row is None or row.status != "active":
        raise InvalidCredentials("The API token is unknown or revoked.")
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
        conn.execute(update(api_tokens).where(k.id == row.id).values(last_used_at=now))
    scopes = frozenset(row.scopes.split())
    role = check_role(row.role)
    if "write" not in scopes:
        role = lower_of(role, "analyst")
    return Principal(row.user_id, row.email, row.org_id, row.slug, role, "token", scopes)
