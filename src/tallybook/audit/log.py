"""The append-only, hash-chained audit log: one entry per change or sensitive read.

    record(conn, org_id, actor, action, object_type, object_id, details) -> Entry
        in the caller's transaction, so the change and its entry commit (or roll back) together
    entries(conn, org_id=..., start=..., end=..., action=...) -> list[dict]    for `audit list`

Each entry holds `prev_hash`, the hash of the entry before it, and `hash` = SHA-256 over its
canonical form (`canonical`: seq, ts, org_id, actor, action, object_type, object_id, details and
prev_hash as sorted, compact JSON). `audit_head` keeps the last seq and hash, so removing the
newest entries shows too. Writers take the head row first, which serialises them on PostgreSQL
(a row lock) and SQLite (the write lock).

Personal data stays out of the hashed content: the actor (unless it is `system:...`), an object
id whose type is a person (customer, user, member), and detail values under PERSONAL_KEYS (or
wrapped in `subject(kind, value)`) are replaced by tokens (`psn_` + random hex) mapped in
`audit_subjects`. Erasure deletes the mapping rows, not entries, so the chain still verifies.
Detail keys that name a secret are withheld; string values pass through `redact`.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tallybook.ledger import schema_ops as ops
from tallybook.ledger.store import utcnow
from tallybook.security.redaction import redact

GENESIS = "0" * 64
HEAD_ID = 1
PERSON_TYPES = frozenset({"customer", "user", "member"})
# Detail keys whose values are personal identifiers: stored as tokens.
PERSONAL_KEYS = frozenset({"customer", "customers", "user", "users", "email", "emails", "member", "person",
                           "actor"})
SECRET_WORDS = ("secret", "password", "passwd", "private_key", "admin_key", "api_key_value", "authorization")
TOKEN = re.compile(r"^psn_[0-9a-f]{24}$")
WITHHELD = "[withheld]"


@dataclass(frozen=True)
class Subject:
    """A personal identifier inside `details`: stored as a token, erasable."""

    kind: str
    value: str


def subject(kind: str, value: str) -> Subject:
    return Subject(kind, value)


@dataclass(frozen=True)
class Entry:
    seq: int
    ts: datetime
    org_id: int | None
    actor: str
    action: str
    object_type: str
    object_id: str | None
    details: str  # canonical JSON text
    prev_hash: str
    hash: str


def cli_actor() -> str:
    """Who runs a command: `cli:<login name>` (a person, so it is stored as a token)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = os.environ.get("USER") or "unknown"
    return f"cli:{name}"


def canonical(seq: int, ts: datetime, org_id: int | None, actor: str, action: str, object_type: str,
              object_id: str | None, details: str, prev_hash: str) -> bytes:
    """The bytes an entry's hash covers. `details` is hashed as stored (canonical JSON text)."""
    body = {"seq": seq, "ts": ts.isoformat(timespec="microseconds"), "org_id": org_id, "actor": actor,
            "action": action, "object_type": object_type, "object_id": object_id, "details": details,
            "prev_hash": prev_hash}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(seq: int, ts: datetime, org_id: int | None, actor: str, action: str, object_type: str,
               object_id: str | None, details: str, prev_hash: str) -> str:
    return hashlib.sha256(canonical(seq, ts, org_id, actor, action, object_type, object_id, details,
                                    prev_hash)).hexdigest()


def pseudonym(conn: Connection, org_id: int | None, kind: str, value: str) -> str:
    """The token standing for `value` in the log: the same token each time, until it is erased."""
    org = org_id or 0
    c = ops.audit_subjects.c
    found = conn.execute(select(c.token).where(c.org_id == org, c.kind == kind, c.value == value)).scalar()
    if found:
        return str(found)
    token = "psn_" + secrets.token_hex(12)
    conn.execute(insert(ops.audit_subjects).values(token=token, org_id=org, kind=kind, value=value,
                                                 created_at=utcnow()))
    return token


def _clean(conn: Connection, org_id: int | None, value: Any, key: str | None) -> Any:
    if isinstance(value, Subject):
        return pseudonym(conn, org_id, value.kind, value.value)
    if isinstance(value, Mapping):
        cleaned = {}
        for k, v in value.items():
            k = str(k)
            if any(word in k.lower() for word in SECRET_WORDS):
                cleaned[k] = WITHHELD
            else:
                cleaned[k] = _clean(conn, org_id, v, k)
        return cleaned
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_clean(conn, org_id, v, key) for v in items]
    if isinstance(value, str):
        if key is not None and key.lower() in PERSONAL_KEYS and value:
            return pseudonym(conn, org_id, _kind(key.lower()), value)
        return redact(value)
    if value is None or isinstance(value, bool | int):
        return value
    return str(value)  # Decimal, datetime, ...: as text, never a float


def _kind(key: str) -> str:
    """The subject kind a detail key or object type names: customers -> customer, emails -> email."""
    return key[:-1] if key in ("customers", "users", "emails") else key


def record(conn: Connection, org_id: int | None, actor: str, action: str, object_type: str,
           object_id: str | None = None, details: Mapping[str, Any] | None = None, *,
           now: datetime | None = None) -> Entry:
    """Append one entry in the caller's transaction (commit the change and its entry together)."""
    if not action or not object_type:
        raise ValueError("An audit entry needs an action and an object type.")
    stored_actor = actor if actor.startswith("system") else pseudonym(conn, org_id, "actor", actor)
    stored_object = object_id
    if object_id is not None and object_type in PERSON_TYPES:
        stored_object = pseudonym(conn, org_id, _kind(object_type), object_id)
    text = json.dumps(_clean(conn, org_id, dict(details or {}), None), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    h = ops.audit_head.c
    # Take the head first: the row lock (PostgreSQL) or write lock (SQLite) orders concurrent writers.
    advance = update(ops.audit_head).where(h.id == HEAD_ID).values(seq=h.seq + 1)
    if not conn.execute(advance).rowcount:  # no head yet (the migration makes one; a truncation removes it)
        upsert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(upsert(ops.audit_head).values(id=HEAD_ID, seq=0, hash=GENESIS).on_conflict_do_nothing())
        conn.execute(advance)
    head = conn.execute(select(h.seq, h.hash).where(h.id == HEAD_ID)).one()
    seq, prev = int(head.seq), head.hash
    ts = (now or utcnow()).replace(tzinfo=None)
    digest = entry_hash(seq, ts, org_id, stored_actor, action, object_type, stored_object, text, prev)
    conn.execute(insert(ops.audit_log).values(
        seq=seq, ts=ts, org_id=org_id, actor=stored_actor, action=action, object_type=object_type,
        object_id=stored_object, details=text, prev_hash=prev, hash=digest))
    conn.execute(update(ops.audit_head).where(h.id == HEAD_ID).values(hash=digest))
    return Entry(seq, ts, org_id, stored_actor, action, object_type, stored_object, text, prev, digest)


def entries(conn: Connection, *, org_id: int | None = None, start: datetime | None = None,
            end: datetime | None = None, action: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Entries oldest first, with tokens shown as what they stand for (or `erased:` when erased)."""
    c = ops.audit_log.c
    stmt = select(ops.audit_log).order_by(c.seq)
    if org_id is not None:
        stmt = stmt.where(c.org_id == org_id)
    if start is not None:
        stmt = stmt.where(c.ts >= start)
    if end is not None:
        stmt = stmt.where(c.ts < end)
    if action:
        stmt = stmt.where(c.action == action) if "*" not in action else stmt.where(
            c.action.like(action.replace("*", "%")))
    rows = [dict(r) for r in conn.execute(stmt).mappings()]
    if limit is not None:
        rows = rows[-limit:]
    s = ops.audit_subjects.c
    names = {tok: val for tok, val in conn.execute(select(s.token, s.value))}

    def show(value: Any) -> Any:
        if isinstance(value, str) and TOKEN.match(value):
            return names.get(value, f"erased:{value}")
        if isinstance(value, dict):
            return {k: show(v) for k, v in value.items()}
        if isinstance(value, list):
            return [show(v) for v in value]
        return value

    for row in rows:
        row["actor"] = show(row["actor"])
        row["object_id"] = show(row["object_id"])
        row["details"] = show(json.loads(row["details"]))
    return rows
