"""`/api/v1/audit`: the organisation's audit entries, newest first, and `/api/v1/audit/verify`, the check of
the hash chain (`tallybook audit list|verify`), for analysts and admins.

Reading the log is itself a sensitive read: each read is recorded as an `audit.read` entry, as the
CLI records it. People show as what their tokens stand for, or `erased:psn_...` once erased. The
chain is the deployment's one chain, so `verify` walks every organisation's entries (it names only
sequence numbers and hashes, never another organisation's content)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from tallybook.audit import entries, record
from tallybook.audit.verify import verify
from tallybook.web.api.errors import ApiRoute
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, csv_response, wants_csv
from tallybook.web.api.params import Analyst, DaysOption, Reading, actor, engine
from tallybook.web.api.schemas import Moment, Strict

router = APIRouter(route_class=ApiRoute, tags=["audit"])
COLUMNS = ["seq", "ts", "actor", "action", "object_type", "object_id", "details"]
ActionFilter = Annotated[str | None, Query(max_length=100, pattern=r"^[a-z0-9_.*]+$", description=(
    "Only this action, e.g. `key.revoked`, or a pattern with `*`: `connection.*`."))]


class Entry(Strict):
    seq: int = Field(description="The entry's place in the deployment's one chain.")
    ts: Moment
    actor: str = Field(description="Who: `web:<email>`, `cli:<login>`, `system:...`, or `erased:psn_...`.")
    action: str
    object_type: str
    object_id: str | None
    details: dict[str, Any] = Field(description="What changed; secrets are withheld, never stored.")


class Entries(Strict):
    entries: list[Entry]


class Verdict(Strict):
    ok: bool = Field(description="True when every entry's hash and link hold.")
    entries: int = Field(description="Entries checked (the whole chain when ok).")
    head_hash: str = Field(description="The last good hash: keep it elsewhere to anchor the chain.")
    bad_seq: int | None = Field(description="The first entry that does not hold, if any.")
    problem: str | None


@router.get("/audit", response_model=Entries, responses=CSV_RESPONSE, summary="The audit log, newest first (analyst)")
def audit_log(request: Request, principal: Analyst, window: DaysOption, action: ActionFilter = None,
              limit: Annotated[int, Query(ge=1, le=5000, description="At most this many, the newest.")] = 200,
              fmt: FormatOption = None) -> Entries | Response:
    """The organisation's entries; the read is recorded. Same as `tallybook audit list` (which lists oldest first)."""
    start, end = window.bounds()
    with engine(request).begin() as conn:
        rows = entries(conn, org_id=principal.org_id, start=start, end=end, action=action, limit=limit)
        record(conn, principal.org_id, actor(principal), "audit.read", "audit_log", None, {
            "from": window.date_from, "to": window.date_to, "month": window.month, "action": action,
            "entries": len(rows)})
    rows.reverse()
    if wants_csv(request, fmt):
        return csv_response(principal, [{**r, "details": json.dumps(r["details"], sort_keys=True)} for r in rows],
                            COLUMNS, "audit-log.csv")
    return Entries(entries=[Entry(**{k: r[k] for k in COLUMNS}) for r in rows])


@router.get("/audit/verify", response_model=Verdict, summary="Verify the audit chain (analyst)")
def audit_verify(principal: Analyst, conn: Reading) -> Verdict:
    """Walks the chain and names the first altered, removed or reordered entry. Same as `tallybook audit verify`."""
    return Verdict(**verify(conn).as_dict())
