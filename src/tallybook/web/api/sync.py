"""`/api/v1/sync`: start a sync in the background (admin), follow it, and read the history of runs."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy import Connection, select

from tallybook.ledger import schema as t
from tallybook.web.api.errors import ApiRoute
from tallybook.web.api.params import Analyst, Reading
from tallybook.web.api.schemas import Moment, Strict

router = APIRouter(route_class=ApiRoute, tags=["sync"])


class RunOut(Strict):
    id: int
    connection_id: int
    connection: str | None = Field(description="The connection's name (None once it was removed).")
    provider: str
    window_start: Moment
    window_end: Moment
    status: str = Field(description="running | succeeded | failed")
    started_at: Moment
    finished_at: Moment | None
    tasks_total: int
    tasks_done: int
    pages: int
    rows: int
    error: str | None


class Runs(Strict):
    runs: list[RunOut]


def runs(conn: Connection, org_id: int, *, limit: int = 50, connection_id: int | None = None) -> list[RunOut]:
    r, c = t.sync_runs.c, t.connections.c
    query = (select(t.sync_runs, c.name.label("connection_name"))
             .join_from(t.sync_runs, t.connections, r.connection_id == c.id, isouter=True)
             .where(r.org_id == org_id).order_by(r.started_at.desc(), r.id.desc()).limit(limit))
    if connection_id is not None:
        query = query.where(r.connection_id == connection_id)
    return [RunOut(id=x.id, connection_id=x.connection_id, connection=x.connection_name, provider=x.provider,
                   window_start=x.window_start, window_end=x.window_end, status=x.status, started_at=x.started_at,
                   finished_at=x.finished_at, tasks_total=x.tasks_total, tasks_done=x.tasks_done, pages=x.pages,
                   rows=x.rows, error=x.error) for x in conn.execute(query)]


@router.get("/sync/runs", response_model=Runs, summary="Sync history, newest first (analyst)")
def history(principal: Analyst, conn: Reading,
            limit: int = Query(50, ge=1, le=1000, description="How many runs, newest first."),
            connection_id: int | None = Query(None, description="Only this connection's runs.")) -> Runs:
    return Runs(runs=runs(conn, principal.org_id, limit=limit, connection_id=connection_id))
