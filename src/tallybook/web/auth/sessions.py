"""Dashboard sessions: a random cookie value, stored only as its SHA-256, with the session's current
organisation and its CSRF token. Sessions slide: each use within `session_days` extends them."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, delete, insert, select, update

from tallybook.errors import AccessError
from tallybook.ledger import schema as t
from tallybook.ledger.schema_access import memberships, users, web_sessions
from tallybook.ledger.store import utcnow
from tallybook.web.auth.roles import Principal, check_role

COOKIE = "tallybook_session"
_TOUCH_EVERY = timedelta(minutes=5)  # a session's expiry is pushed back at most this often


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf_token: str
    extended: bool = False  # its expiry moved on: the cookie's lifetime should follow


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def start_session(conn: Connection, user_id: int, *, org_id: int | None = None, days: int = 14) -> str:
    """A new session for the user in `org_id` (default: their first organisation); returns the cookie value."""
    if org_id is None:
        m = memberships.c
        org_id = conn.execute(select(m.org_id).where(m.user_id == user_id).order_by(m.org_id).limit(1)).scalar()
        if org_id is None:
            raise AccessError("This account belongs to no organisation yet; ask an admin to add you.", status=403)
    value = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    now = utcnow()
    conn.execute(insert(web_sessions).values(
        id_hash=_hash(value), user_id=user_id, org_id=org_id, csrf_token=secrets.token_urlsafe(32),
        created_at=now, last_seen_at=now, expires_at=now + timedelta(days=days)))
    return value


def end_session(conn: Connection, value: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.id_hash == _hash(value)))


def end_user_sessions(conn: Connection, user_id: int) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id))


def load_session(conn: Connection, value: str, *, days: int = 14) -> Session | None:
    """The live session of this cookie value, or None (unknown, expired, or its user left the org)."""
    s, m, u, o = web_sessions.c, memberships.c, users.c, t.organisations.c
    row = conn.execute(
        select(s.id_hash, s.user_id, s.org_id, s.csrf_token, s.last_seen_at, s.expires_at, u.email, u.status,
               m.role, o.slug)
        .join_from(web_sessions, users, s.user_id == u.id)
        .join(memberships, (m.user_id == s.user_id) & (m.org_id == s.org_id))
        .join(t.organisations, o.id == s.org_id)
        .where(s.id_hash == _hash(value))).first()
    now = utcnow()
    if row is None or row.status != "active" or row.expires_at <= now:
        return None
    extended = now - row.last_seen_at > _TOUCH_EVERY
    if extended:
        conn.execute(update(web_sessions).where(s.id_hash == row.id_hash).values(
            last_seen_at=now, expires_at=now + timedelta(days=days)))
    principal = Principal(row.user_id, row.email, row.org_id, row.slug, check_role(row.role), "session")
    return Session(principal, row.csrf_token, extended)


def switch_org(conn: Connection, value: str, org_id: int) -> None:
    """Make `org_id` the session's organisation; 404 unless the user is a member there."""
    s, m = web_sessions.c, memberships.c
    row = conn.execute(select(s.user_id).where(s.id_hash == _hash(value))).first()
    if row is None or conn.execute(select(m.role).where(m.user_id == row.user_id, m.org_id == org_id)).first() is None:
        raise AccessError("No such organisation.", status=404)
    conn.execute(update(web_sessions).where(s.id_hash == _hash(value)).values(org_id=org_id))


def purge_expired(conn: Connection) -> int:
    return int(conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= utcnow())).rowcount)
