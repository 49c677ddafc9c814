"""The write door for the coding-tool tables (`schema_coding`): members and cycle spend.

    save_directory(conn, org_id, connection_id, directory, now=...)   one sync's members and spend

Called by the sync engine in the transaction that finishes a run. Idempotent: saving the same
directory twice changes nothing but `updated_at` / `fetched_at`. A member the vendor lists as removed
keeps the time the ledger first saw it so (`removed_at`), which a re-sync never moves; a member who
comes back loses it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, insert, select, update

from tallybook.ledger.records import ToolDirectory
from tallybook.ledger.schema_coding import coding_cycle_spend, coding_members
from tallybook.money import to_nanos


def save_directory(conn: Connection, org_id: int, connection_id: int, directory: ToolDirectory, *,
                   now: datetime) -> int:
    """Store the members and the cycle spend of one sync. Returns the rows written."""
    written = 0
    if directory.listed_members:
        written += _save_members(conn, org_id, connection_id, directory, now)
    cycles = {s.cycle_start for s in directory.spend}
    s = coding_cycle_spend.c
    for cycle in cycles:  # a cycle's spend is replaced whole: members gone from it go from the table
        conn.execute(delete(coding_cycle_spend).where(s.org_id == org_id, s.tool == directory.tool,
                                                      s.cycle_start == cycle))
    rows = [
        {"org_id": org_id, "connection_id": connection_id, "tool": x.tool, "cycle_start": x.cycle_start,
         "email": x.email, "name": x.name, "role": x.role, "currency": x.currency.upper(),
         "spend_nanos": to_nanos(x.spend),
         "overall_spend_nanos": None if x.overall_spend is None else to_nanos(x.overall_spend),
         "included_spend_nanos": None if x.included_spend is None else to_nanos(x.included_spend),
         "fast_premium_requests": x.fast_premium_requests, "fetched_at": now}
        for x in _unique(directory.spend, lambda x: (x.cycle_start, x.email.lower()))
    ]
    if rows:
        conn.execute(insert(coding_cycle_spend), rows)
    return written + len(rows)


def _save_members(conn: Connection, org_id: int, connection_id: int, directory: ToolDirectory,
                  now: datetime) -> int:
    m = coding_members.c
    stored = {row.email: row for row in conn.execute(
        select(m.email, m.removed, m.removed_at).where(m.org_id == org_id, m.tool == directory.tool))}
    for member in _unique(directory.members, lambda x: x.email.lower()):
        email = member.email.lower()
        values: dict[str, Any] = {"connection_id": connection_id, "member_id": member.member_id,
                                  "name": member.name, "role": member.role, "removed": member.removed,
                                  "updated_at": now}
        before = stored.get(email)
        if before is None:
            conn.execute(insert(coding_members).values(
                org_id=org_id, tool=directory.tool, email=email, first_seen_at=now,
                removed_at=now if member.removed else None, **values))
            continue
        if member.removed:
            values["removed_at"] = before.removed_at or now
        else:
            values["removed_at"] = None
        conn.execute(update(coding_members).where(m.org_id == org_id, m.tool == directory.tool,
                                                  m.email == email).values(**values))
    return len(directory.members)


T = TypeVar("T")


def _unique(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """The last of each key: a vendor listing one person twice must not break the unique index."""
    found: dict[Hashable, T] = {}
    for item in items:
        found[key(item)] = item
    return list(found.values())
