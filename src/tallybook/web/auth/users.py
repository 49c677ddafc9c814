"""Users, organisations and memberships: plain functions on a connection, shared by the CLI, API and pages.

Every function that reads or changes a member takes the organisation id first: a user of another
organisation is "not found", never "forbidden".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, update

from tallybook import audit
from tallybook.errors import AccessError
from tallybook.ledger import schema as t
from tallybook.ledger import store
from tallybook.ledger.schema_access import memberships, users
from tallybook.web.auth.passwords import hash_password
from tallybook.web.auth.roles import Role, check_role

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Member:
    user_id: int
    email: str
    role: Role
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class OrgMembership:
    org_id: int
    org_slug: str
    org_name: str
    role: Role


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise AccessError(f"{email!r} is not an email address.")
    return email


def setup_needed(conn: Connection) -> bool:
    """True until the first user exists: the web app then offers /setup to create the first admin."""
    return conn.execute(select(func.count()).select_from(users)).scalar_one() == 0


def create_first_admin(conn: Connection, email: str, password: str, org: str, *,
                       actor: str = "system:setup") -> tuple[int, int]:
    """Create the first user as admin of `org` (created if missing). Returns (user_id, org_id).

    Refused once any user exists, so /setup cannot be replayed to take over a deployment."""
    if not setup_needed(conn):
        raise AccessError("Setup is already done: sign in, or ask an admin for an account.", status=409)
    org_id = store.ensure_org(conn, _check_slug(org))
    user_id = create_user(conn, email, password)
    add_member(conn, org_id, user_id, "admin", actor=actor)
    return user_id, org_id


def create_user(conn: Connection, email: str, password: str | None) -> int:
    """A new user (password None: single sign-on only). Raises AccessError(409) if the email is taken."""
    email = normalise_email(email)
    if find_user_id(conn, email) is not None:
        raise AccessError(f"A user with email {email} already exists.", status=409)
    result = conn.execute(insert(users).values(
        email=email, password_hash=None if password is None else hash_password(password),
        status="active", created_at=store.utcnow()))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def set_password(conn: Connection, user_id: int, password: str) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(password_hash=hash_password(password)))


def find_user_id(conn: Connection, email: str) -> int | None:
    found = conn.execute(select(users.c.id).where(users.c.email == email.strip().lower())).scalar()
    return None if found is None else int(found)


def org_id_for(conn: Connection, slug: str, *, create: bool = False) -> int:
    if create:
        return store.ensure_org(conn, _check_slug(slug))
    found = conn.execute(select(t.organisations.c.id).where(t.organisations.c.slug == slug)).scalar()
    if found is None:
        raise AccessError(f"No organisation {slug!r}.", status=404)
    return int(found)


def add_member(conn: Connection, org_id: int, user_id: int, role: str, *, actor: str = "system") -> None:
    """Give the user `role` in the organisation (AccessError 409 if already a member). Audited."""
    check_role(role)
    if role_of(conn, org_id, user_id) is not None:
        raise AccessError("That user is already a member of this organisation; use set-role.", status=409)
    conn.execute(insert(memberships).values(org_id=org_id, user_id=user_id, role=role, created_at=store.utcnow()))
    audit.record(conn, org_id, actor, "member.added", "member", _email(conn, user_id), {"role": role})


def role_of(conn: Connection, org_id: int, user_id: int) -> Role | None:
    m = memberships.c
    found = conn.execute(select(m.role).where(m.org_id == org_id, m.user_id == user_id)).scalar()
    return None if found is None else check_role(found)


def set_role(conn: Connection, org_id: int, user_id: int, role: str, *, actor: str = "system") -> None:
    """Change a member's role; refuses to demote the organisation's last admin. Audited."""
    check_role(role)
    current = role_of(conn, org_id, user_id)
    if current is None:
        raise AccessError("No such member in this organisation.", status=404)
    if current == "admin" and role != "admin":
        _keep_an_admin(conn, org_id)
    m = memberships.c
    conn.execute(update(memberships).where(m.org_id == org_id, m.user_id == user_id).values(role=role))
    audit.record(conn, org_id, actor, "member.role_changed", "member", _email(conn, user_id),
                 {"from": current, "to": role})


def remove_member(conn: Connection, org_id: int, user_id: int, *, actor: str = "system") -> None:
    """Take the user out of the organisation: their sessions there end and their tokens there are revoked.
    Audited."""
    from tallybook.ledger.schema_access import api_tokens, web_sessions

    current = role_of(conn, org_id, user_id)
    if current is None:
        raise AccessError("No such member in this organisation.", status=404)
    if current == "admin":
        _keep_an_admin(conn, org_id)
    m = memberships.c
    conn.execute(delete(memberships).where(m.org_id == org_id, m.user_id == user_id))
    conn.execute(delete(web_sessions).where(web_sessions.c.org_id == org_id, web_sessions.c.user_id == user_id))
    k = api_tokens.c
    conn.execute(update(api_tokens).where(k.org_id == org_id, k.user_id == user_id, k.revoked_at.is_(None))
                 .values(revoked_at=store.utcnow()))
    audit.record(conn, org_id, actor, "member.removed", "member", _email(conn, user_id), {"role": current})


def list_members(conn: Connection, org_id: int) -> list[Member]:
    m, u = memberships.c, users.c
    rows = conn.execute(select(u.id, u.email, m.role, m.created_at, u.last_login_at)
                        .join_from(memberships, users, m.user_id == u.id)
                        .where(m.org_id == org_id).order_by(u.email))
    return [Member(r.id, r.email, check_role(r.role), r.created_at, r.last_login_at) for r in rows]


def user_orgs(conn: Connection, user_id: int) -> list[OrgMembership]:
    """Every organisation the user belongs to, with their role there (for the org switcher)."""
    m, o = memberships.c, t.organisations.c
    rows = conn.execute(select(o.id, o.slug, o.name, m.role).join_from(memberships, t.organisations, m.org_id == o.id)
                        .where(m.user_id == user_id).order_by(o.slug))
    return [OrgMembership(r.id, r.slug, r.name, check_role(r.role)) for r in rows]


def _email(conn: Connection, user_id: int) -> str:
    return str(conn.execute(select(users.c.email).where(users.c.id == user_id)).scalar_one())


def _keep_an_admin(conn: Connection, org_id: int) -> None:
    m = memberships.c
    admins = conn.execute(select(func.count()).where(m.org_id == org_id, m.role == "admin")).scalar_one()
    if admins <= 1:
        raise AccessError("An organisation keeps at least one admin: make another member admin first.", status=409)


def _check_slug(slug: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", slug):
        raise AccessError(f"{slug!r} is not an organisation slug: use lower-case letters, digits, - and _.")
    return slug
