"""The audit log (admins and analysts; viewers get 403): the organisation's entries newest first, filtered by
action, and, on request (`?verify=1`: it reads the whole chain, about 40 µs an entry), whether the hash
chain verifies (`tallybook audit list|verify`, the same functions). Reading the log is a sensitive read,
recorded like the CLI's and the API's."""

from __future__ import annotations

import json
import re

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from tallybook.audit import entries, record
from tallybook.audit.verify import verify
from tallybook.ledger import schema_ops as ops
from tallybook.web.api.params import actor
from tallybook.web.auth import Principal, require_page
from tallybook.web.pages.base import Column, PageError, Table, respond

router = APIRouter(include_in_schema=False)
analyst_page = require_page("analyst")
LIMIT = 500
ACTION = re.compile(r"^[a-z0-9_.*]{1,100}$")
COLUMNS = (
    Column("seq", "int", "audit.col_seq"), Column("ts", "when", "audit.col_ts"), Column("actor", label="audit.col_actor"),
    Column("action", label="audit.col_action"), Column("object_type", label="audit.col_object_type"),
    Column("object_id", label="audit.col_object_id"), Column("details", label="audit.col_details"),
)


@router.get("/audit")
def audit_page(request: Request, principal: Principal = Depends(analyst_page)) -> Response:
    action = (request.query_params.get("action") or "").strip() or None
    if action is not None and not ACTION.match(action):
        raise PageError(400, "error.bad_action")
    with request.app.state.engine.begin() as conn:
        rows = entries(conn, org_id=principal.org_id, action=action, limit=LIMIT)
        record(conn, principal.org_id, actor(principal), "audit.read", "audit_log", None,
               {"action": action, "entries": len(rows)})
        verdict = verify(conn) if request.query_params.get("verify") == "1" else None
        c = ops.audit_log.c
        actions = sorted(conn.execute(select(c.action).where(c.org_id == principal.org_id).distinct()).scalars())
    rows.reverse()
    for row in rows:
        row["details"] = json.dumps(row["details"], sort_keys=True, ensure_ascii=False)
    table = Table("entries", "audit.entries", COLUMNS, rows, note="audit.note", empty="audit.none")
    return respond(request, principal, "audit.html", [table], title="audit.title", action=action or "",
                   actions=actions, verdict=verdict, limit=LIMIT)
