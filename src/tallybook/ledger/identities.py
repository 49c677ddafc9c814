"""The identity map: who (person, team, cost centre) is behind an API key, an e-mail address or a project.

    apply_identities(conn, org_id, rows, *, today) -> IdentityChanges   versioned upsert, idempotent
    load_identities(conn, org_id) -> IdentityMap                        every version, for lookups by day

Each (kind, value) has a timeline of versions, each in force over [effective_from, effective_to).
A row dated the 15th closes the version in force on the 15th and opens a new one, so spend before
the 15th stays where it was and only spend from the 15th moves. Importing the same row again changes
nothing. A row with no date starts "since always" for a key not yet mapped or when the file dates
other rows of the same key (it is then the start of the timeline the file states); otherwise it is
compared with the mapping in force today and, if it differs, applies from today.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from tallybook.ledger.schema_identity import identity_map
from tallybook.ledger.store import utcnow

KINDS = ("api_key", "email", "project")
SINCE_ALWAYS = datetime(2000, 1, 1)


@dataclass(frozen=True, slots=True)
class Identity:
    person: str | None
    team: str | None
    cost_centre: str | None


@dataclass(frozen=True, slots=True)
class IdentityRow:
    kind: str  # api_key | email | project
    value: str  # api key id or name, e-mail address, project or workspace id
    identity: Identity
    effective_from: datetime | None  # None: see the module docstring
    line: int = 0


@dataclass
class IdentityChanges:
    added: int = 0
    changed: int = 0
    unchanged: int = 0


def normal_value(kind: str, value: str) -> str:
    value = value.strip()
    return value.lower() if kind == "email" else value


def apply_identities(conn: Connection, org_id: int, rows: Iterable[IdentityRow], *, source_file: str | None = None,
                     today: datetime | None = None) -> IdentityChanges:
    """Write each row as a version of its (kind, value), in date order; returns what changed."""
    today = (today or utcnow()).replace(hour=0, minute=0, second=0, microsecond=0)
    changes = IdentityChanges()
    rows = list(rows)
    dated = {(r.kind, normal_value(r.kind, r.value)) for r in rows if r.effective_from is not None}
    # An undated row beside dated rows of the same key is that timeline's start: since always.
    rows = [dataclasses.replace(r, effective_from=SINCE_ALWAYS)
            if r.effective_from is None and (r.kind, normal_value(r.kind, r.value)) in dated else r for r in rows]
    ordered = sorted(rows, key=lambda r: (r.kind, normal_value(r.kind, r.value), r.effective_from or SINCE_ALWAYS))
    for row in ordered:
        _apply(conn, org_id, row, source_file, today, changes)
    return changes


def _apply(conn: Connection, org_id: int, row: IdentityRow, source_file: str | None, today: datetime,
           changes: IdentityChanges) -> None:
    c = identity_map.c
    value = normal_value(row.kind, row.value)
    versions = list(conn.execute(
        select(c.id, c.effective_from, c.effective_to, c.person, c.team, c.cost_centre)
        .where(c.org_id == org_id, c.kind == row.kind, c.match_value == value).order_by(c.effective_from)))
    start = row.effective_from or (today if versions else SINCE_ALWAYS)
    now = utcnow()
    covering = next((v for v in versions if v.effective_from <= start
                     and (v.effective_to is None or start < v.effective_to)), None)
    if covering is not None and Identity(covering.person, covering.team, covering.cost_centre) == row.identity:
        changes.unchanged += 1
        return
    values = {"person": row.identity.person, "team": row.identity.team, "cost_centre": row.identity.cost_centre,
              "source_file": source_file, "updated_at": now}
    if covering is not None and covering.effective_from == start:
        conn.execute(update(identity_map).where(c.id == covering.id).values(**values))
        changes.changed += 1
        return
    later = [v.effective_from for v in versions if v.effective_from > start]
    end = covering.effective_to if covering is not None else (later[0] if later else None)
    if covering is not None:
        conn.execute(update(identity_map).where(c.id == covering.id).values(effective_to=start, updated_at=now))
    conn.execute(insert(identity_map).values(org_id=org_id, kind=row.kind, match_value=value,
                                             effective_from=start, effective_to=end, **values))
    if covering is not None:
        changes.changed += 1
    else:
        changes.added += 1


@dataclass
class IdentityMap:
    """Every version of every mapping of one organisation, answering "who was this on that day"."""

    timelines: dict[tuple[str, str], list[tuple[datetime, datetime | None, Identity]]] = field(default_factory=dict)
    _starts: dict[tuple[str, str], list[datetime]] = field(default_factory=dict)

    def add(self, kind: str, value: str, start: datetime, end: datetime | None, identity: Identity) -> None:
        key = (kind, value)
        self.timelines.setdefault(key, []).append((start, end, identity))
        self._starts.setdefault(key, []).append(start)

    def lookup(self, kind: str, value: str | None, day: datetime) -> Identity | None:
        if not value:
            return None
        key = (kind, normal_value(kind, value))
        starts = self._starts.get(key)
        if not starts:
            return None
        at = bisect.bisect_right(starts, day) - 1
        if at < 0:
            return None
        _, end, identity = self.timelines[key][at]
        return identity if end is None or day < end else None

    def known(self, kind: str, value: str) -> bool:
        return (kind, normal_value(kind, value)) in self.timelines

    def rows(self) -> list[dict[str, object]]:
        return [{"kind": k, "value": v, "person": i.person, "team": i.team, "cost_centre": i.cost_centre,
                 "effective_from": s, "effective_to": e}
                for (k, v), versions in sorted(self.timelines.items()) for s, e, i in versions]


def load_identities(conn: Connection, org_id: int) -> IdentityMap:
    c = identity_map.c
    found = IdentityMap()
    for row in conn.execute(select(c.kind, c.match_value, c.effective_from, c.effective_to, c.person, c.team,
                                   c.cost_centre).where(c.org_id == org_id)
                            .order_by(c.kind, c.match_value, c.effective_from)):
        found.add(row.kind, row.match_value, row.effective_from, row.effective_to,
                  Identity(row.person, row.team, row.cost_centre))
    return found
