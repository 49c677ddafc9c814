"""Erasure on request: a customer's personal data and usage attribution leave the ledger; the chain stays whole.

    erase_customer(conn, org_id, customer, *, actor) -> Erasure

In one transaction:
  - the customer's gateway events, usage records and virtual keys are attributed to an anonymous
    token (`erased-<hex>`) instead: totals and per-period figures are unchanged, the name is gone
    (usage records get the natural key of their new dimensions, so a later rebuild from the events
    lands on the same rows);
  - tag values equal to the customer are dropped from the events' tags; budget counters (and the
    lease rows named by a digest of the scope) move to the token; a row in any other table of the organisation whose text column equals the customer
    exactly (tables later parts add, e.g. a billing customer map) gets the token too;
  - `ERASERS` registered by other parts run (e.g. to delete a Stripe customer mapping);
  - the erasure is recorded in the audit chain, then the customer's `audit_subjects` rows are
    deleted: every entry that mentions the customer holds only a token that now resolves to nothing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, Text, delete, select, update

from tallybook.audit.log import record
from tallybook.ledger import budgets
from tallybook.ledger import schema as t
from tallybook.ledger import schema_ops as ops
from tallybook.ledger.records import USAGE_DIMENSIONS, usage_key

# Other parts add `fn(conn, org_id, customer, token) -> rows changed` here at import time.
Eraser = Callable[[Connection, int, str, str], int]
ERASERS: dict[str, Eraser] = {}
# Handled explicitly, or never holding customer data (the audit log holds tokens only).
_SKIP = {"usage_events", "usage_records", "virtual_keys", "budget_spend", "audit_log", "audit_head",
         "audit_subjects", "organisations"}


@dataclass
class Erasure:
    customer_token: str  # the token usage is now attributed to
    changed: dict[str, int] = field(default_factory=dict)  # table -> rows changed

    @property
    def total(self) -> int:
        return sum(self.changed.values())


def register_eraser(name: str, fn: Eraser) -> None:
    ERASERS[name] = fn


def erase_customer(conn: Connection, org_id: int, customer: str, *, actor: str) -> Erasure:
    """Remove `customer` from the organisation's data (call inside a transaction)."""
    if not customer.strip():
        raise ValueError("Name the customer to erase.")
    token = "erased-" + secrets.token_hex(8)
    result = Erasure(token)
    e = t.usage_events.c
    result.changed["usage_events"] = conn.execute(update(t.usage_events).where(
        e.org_id == org_id, e.customer == customer).values(customer=token)).rowcount
    result.changed["usage_events.tags"] = _scrub_tags(conn, org_id, customer)
    result.changed["usage_records"] = _rekey_usage(conn, org_id, customer, token)
    k = t.virtual_keys.c
    result.changed["virtual_keys"] = conn.execute(update(t.virtual_keys).where(
        k.org_id == org_id, k.customer == customer).values(customer=token)).rowcount
    b = t.budget_spend.c
    result.changed["budget_spend"] = conn.execute(update(t.budget_spend).where(
        b.org_id == org_id, b.scope == f"customer:{customer}").values(scope=f"customer:{token}")).rowcount
    result.changed["budget_spend.leases"] = _move_leases(conn, org_id, customer, token)
    for table in t.metadata.sorted_tables:
        if table.name in _SKIP or "org_id" not in table.c:
            continue
        for column in table.c:
            length = getattr(column.type, "length", None)
            if not isinstance(column.type, String | Text) or column.primary_key or (
                    length is not None and length < len(customer)):
                continue  # not text, or too short to hold the customer's name
            changed = conn.execute(update(table).where(table.c.org_id == org_id, column == customer)
                                   .values({column.name: token[:length] if length else token})).rowcount
            if changed:
                result.changed[f"{table.name}.{column.name}"] = changed
    for name, fn in ERASERS.items():
        result.changed[name] = fn(conn, org_id, customer, token)
    result.changed = {k: v for k, v in result.changed.items() if v}
    record(conn, org_id, actor, "customer.erased", "customer", customer,
           {"anonymous_token": token, "rows_changed": result.changed})
    s = ops.audit_subjects.c
    conn.execute(delete(ops.audit_subjects).where(s.org_id == org_id, s.value == customer,
                                                s.kind.in_(("customer", "user", "email", "member"))))
    return result


def _move_leases(conn: Connection, org_id: int, customer: str, token: str) -> int:
    """Budget lease rows name their scope by a digest of it (`budgets.lease_scope`): a guessable link, so
    they move to the token's digest too, reservations intact."""
    def prefix(scope: str) -> str:
        return budgets.lease_scope(scope, datetime(2000, 1, 1)).rsplit(":", 1)[0] + ":"

    old, new = prefix(f"customer:{customer}"), prefix(f"customer:{token}")
    b = t.budget_spend.c
    rows = conn.execute(select(b.scope, b.period_start).where(b.org_id == org_id, b.scope.startswith(old))).all()
    for scope, period_start in rows:
        conn.execute(update(t.budget_spend).where(b.org_id == org_id, b.scope == scope,
                                                  b.period_start == period_start)
                     .values(scope=new + scope[len(old):]))
    return len(rows)


def _scrub_tags(conn: Connection, org_id: int, customer: str) -> int:
    e = t.usage_events.c
    changed = 0
    rows = conn.execute(select(e.event_id, e.tags).where(
        e.org_id == org_id, e.tags.is_not(None), e.tags.contains(customer, autoescape=True))).all()
    for event_id, text in rows:
        try:
            tags = json.loads(text)
        except ValueError:
            tags = None
        if isinstance(tags, dict):
            kept = {k: v for k, v in tags.items() if customer not in (k, v)}
            new = json.dumps(kept, separators=(",", ":")) if kept else None
        else:
            new = None
        conn.execute(update(t.usage_events).where(e.event_id == event_id).values(tags=new))
        changed += 1
    return changed


def _rekey_usage(conn: Connection, org_id: int, customer: str, token: str) -> int:
    u = t.usage_records.c
    rows = conn.execute(select(t.usage_records).where(u.org_id == org_id, u.customer == customer)).mappings().all()
    for row in rows:
        dims: dict[str, Any] = {d: row[d] for d in USAGE_DIMENSIONS}
        dims["customer"] = token
        conn.execute(update(t.usage_records).where(u.id == row["id"]).values(
            customer=token, record_key=usage_key(tuple(dims[d] for d in USAGE_DIMENSIONS))))
    return len(rows)
