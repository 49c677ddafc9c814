"""Virtual keys: shown once, stored as a SHA-256 hash, looked up from an in-memory cache on the hot path.

A virtual key is 32 random bytes (`tb-` + URL-safe base64), so a fast unsalted hash is safe to
store: there is nothing to brute-force. The cache is refreshed in the background, so a request
never waits on the database, and a revoked key stops working within `refresh_seconds`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, Engine, insert, select, update

from tallybook.ledger import schema as t
from tallybook.ledger.store import utcnow

PREFIX = "tb-"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    org_id: int
    name: str
    customer: str | None = None
    feature: str | None = None
    business_unit: str | None = None
    budget: Decimal | None = None
    budget_currency: str = "USD"
    budget_period: str | None = None  # day | month
    rpm: int | None = None
    tpm: int | None = None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_hint(secret: str) -> str:
    return f"{PREFIX}...{secret[-4:]}"


def create_key(
    conn: Connection, *, org_id: int, name: str, customer: str | None = None, feature: str | None = None,
    business_unit: str | None = None, budget: Decimal | None = None, budget_currency: str = "USD",
    budget_period: str | None = None, rpm: int | None = None, tpm: int | None = None,
) -> tuple[KeyInfo, str]:
    """Create a key; returns its info and the secret, which is never stored or shown again."""
    if budget is not None and budget_period not in ("day", "month"):
        raise ValueError("A budget needs a period: day or month.")
    secret = PREFIX + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    key_id = "vk_" + base64.b32encode(os.urandom(10)).decode().lower()
    conn.execute(insert(t.virtual_keys).values(
        id=key_id, org_id=org_id, name=name, key_hash=hash_secret(secret), key_hint=key_hint(secret),
        customer=customer, feature=feature, business_unit=business_unit,
        budget=None if budget is None else str(budget), budget_currency=budget_currency,
        budget_period=budget_period, rpm=rpm, tpm=tpm, status="active", created_at=utcnow()))
    info = KeyInfo(key_id, org_id, name, customer, feature, business_unit, budget, budget_currency, budget_period,
                   rpm, tpm)
    return info, secret


def revoke_key(conn: Connection, org_id: int, key_id: str) -> bool:
    c = t.virtual_keys.c
    result = conn.execute(update(t.virtual_keys).where(c.org_id == org_id, c.id == key_id, c.status == "active")
                          .values(status="revoked", revoked_at=utcnow()))
    return bool(result.rowcount)


def active_keys(conn: Connection) -> dict[str, KeyInfo]:
    """Every active key of every organisation, by hash."""
    c = t.virtual_keys.c
    found = {}
    for r in conn.execute(select(t.virtual_keys).where(c.status == "active")):
        found[r.key_hash] = KeyInfo(r.id, r.org_id, r.name, r.customer, r.feature, r.business_unit,
                                    None if r.budget is None else Decimal(r.budget), r.budget_currency,
                                    r.budget_period, r.rpm, r.tpm)
    return found


class KeyCache:
    """Authenticates secrets against a snapshot of the active keys, refreshed every `refresh_seconds`."""

    def __init__(self, engine: Engine, *, refresh_seconds: float = 5.0) -> None:
        self.engine = engine
        self.refresh_seconds = refresh_seconds
        self._keys: dict[str, KeyInfo] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        with self.engine.connect() as conn:
            keys = active_keys(conn)
        with self._lock:
            self._keys = keys
            self._loaded_at = time.monotonic()

    def stale(self) -> bool:
        return time.monotonic() - self._loaded_at > self.refresh_seconds

    def authenticate(self, secret: str) -> KeyInfo | None:
        return self._keys.get(hash_secret(secret)) if secret.startswith(PREFIX) else None
