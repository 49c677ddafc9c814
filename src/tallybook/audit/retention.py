"""Retention and closing an organisation: data leaves the ledger on schedule or on request, audited.

    prune(conn, org_id, *, events_days, objects_days, actor, now=None) -> dict[str, int]
        gateway events older than `events_days` (their hourly and daily usage records stay, so
        reports are unchanged), and provider objects (names, emails of provider users, projects,
        keys) that no sync has seen for `objects_days`. 0 keeps them forever.
    close_org(conn, org_id, *, actor) -> dict[str, int]
        every row of every table that belongs to the organisation, and the organisation itself.
        Its audit entries stay (the chain must), but its `audit_subjects` go, so they name nobody.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Table, delete, select

from tallybook.audit.log import record
from tallybook.ledger import schema as t
from tallybook.ledger import schema_ops as ops
from tallybook.ledger.store import utcnow

_KEEP = {"audit_log", "audit_head"}  # the chain outlives the organisation


def prune(conn: Connection, org_id: int, *, events_days: int, objects_days: int, actor: str,
          now: datetime | None = None) -> dict[str, int]:
    now = now or utcnow()
    removed: dict[str, int] = {}
    if events_days > 0:
        e = t.usage_events.c
        removed["usage_events"] = conn.execute(delete(t.usage_events).where(
            e.org_id == org_id, e.ts < now - timedelta(days=events_days))).rowcount
    if objects_days > 0:
        o = t.provider_objects.c
        removed["provider_objects"] = conn.execute(delete(t.provider_objects).where(
            o.org_id == org_id, o.updated_at < now - timedelta(days=objects_days))).rowcount
    record(conn, org_id, actor, "retention.pruned", "organisation", str(org_id),
           {"removed": removed, "events_days": events_days, "objects_days": objects_days})
    return removed


def close_org(conn: Connection, org_id: int, *, actor: str) -> dict[str, int]:
    slug = conn.execute(select(t.organisations.c.slug).where(t.organisations.c.id == org_id)).scalar()
    removed: dict[str, int] = {}
    owned = [table for table in t.metadata.sorted_tables if "org_id" in table.c and table.name not in _KEEP]
    for table in reversed(t.metadata.sorted_tables):  # children before parents
        if table in owned:
            count = conn.execute(delete(table).where(table.c.org_id == org_id)).rowcount
        elif table.name not in _KEEP and table.name != "organisations":
            count = _delete_children(conn, table, owned, org_id)
        else:
            continue
        if count:
            removed[table.name] = count
    removed["organisations"] = conn.execute(delete(t.organisations).where(t.organisations.c.id == org_id)).rowcount
    record(conn, org_id, actor, "organisation.closed", "organisation", str(org_id),
           {"slug": slug, "removed": removed})
    s = ops.audit_subjects.c
    conn.execute(delete(ops.audit_subjects).where(s.org_id == org_id))  # after the record: it made one for actor
    return removed


def _delete_children(conn: Connection, table: Table, owned: list[Table], org_id: int) -> int:
    """Rows of a table without org_id whose foreign key points at a row the organisation owns."""
    count = 0
    for fk in table.foreign_keys:
        parent = fk.column.table
        if parent in owned:
            ids = select(fk.column).where(parent.c.org_id == org_id)
            count += conn.execute(delete(table).where(fk.parent.in_(ids))).rowcount
        elif parent.name == "organisations":
            count += conn.execute(delete(table).where(fk.parent == org_id)).rowcount
    return count
