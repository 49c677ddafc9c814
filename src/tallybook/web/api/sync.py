"""`/api/v1/sync`: start a sync in the background (admin), follow its job, read the history of runs, and
read or set the organisation's daily sync schedule.

A job runs the real sync engine (`tallybook.web.jobs`, as `tallybook sync`) for one connection or all
of the organisation's; its progress is each connection's run: tasks done of tasks total, rows, pages.
"""

from __future__ import annotations

from datetime import date, timedelta

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select

from tallybook import audit
from tallybook.ledger import schema as t
from tallybook.web import jobs
from tallybook.web.api.errors import ApiRoute, invalid, not_found
from tallybook.web.api.params import (
    EARLIEST,
    LATEST,
    MAX_ID,
    Admin,
    Analyst,
    ObjectId,
    Reading,
    actor,
    checked,
    engine,
    midnight,
)
from tallybook.web.api.schemas import Moment, Strict
from tallybook.web.scheduler import effective_schedule, own_schedule, set_schedule

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


class RunProgress(Strict):
    connection_id: int
    connection: str
    provider: str
    status: str = Field(description="running | succeeded | failed")
    tasks_total: int
    tasks_done: int
    rows: int
    pages: int
    started_at: Moment
    finished_at: Moment | None
    error: str | None


class JobOut(Strict):
    id: int
    connection_id: int | None = Field(description="None: every connection of the organisation.")
    trigger: str = Field(description="manual | schedule")
    status: str = Field(description="queued | running | succeeded | failed | interrupted")
    created_at: Moment
    started_at: Moment | None
    finished_at: Moment | None
    error: str | None
    runs: list[RunProgress]


class Jobs(Strict):
    jobs: list[JobOut]


class SyncIn(BaseModel):
    """Which connection and which days; by default every connection, since each one's last sync."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    connection_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only this connection.")
    first_day: date | None = Field(None, alias="from", description="First UTC day, YYYY-MM-DD.")
    last_day: date | None = Field(None, alias="to", description="Last UTC day, inclusive.")


def job_out(status: jobs.JobStatus) -> JobOut:
    return JobOut(id=status.id, connection_id=status.connection_id, trigger=status.trigger, status=status.status,
                  created_at=status.created_at, started_at=status.started_at, finished_at=status.finished_at,
                  error=status.error, runs=[RunProgress(**vars(r)) for r in status.runs])


@router.post("/sync", response_model=JobOut, status_code=202, summary="Start a sync in the background (admin)")
def start(body: SyncIn, request: Request, principal: Admin) -> JobOut:
    """Returns at once with the job; follow it at GET /api/v1/sync/jobs/{id}. Asking again for a connection
    that is syncing returns the job already running it. Re-syncing days replaces them (never double-counts)."""
    for name, day in (("from", body.first_day), ("to", body.last_day)):
        if day is not None and not EARLIEST <= day <= LATEST:
            raise invalid(f"`{name}` must be a day between {EARLIEST} and {LATEST}, not {day}.")
    start = midnight(body.first_day) if body.first_day else None
    end = midnight(body.last_day) + timedelta(days=1) if body.last_day else None
    if start and end:
        checked(start, end)
    job_id = jobs.start_sync(engine(request), principal.org_id, body.connection_id, start, end,
                             settings=request.app.state.settings)
    with engine(request).begin() as conn:
        audit.record(conn, principal.org_id, actor(principal), "sync.started", "sync_job", str(job_id),
                     {"connection_id": body.connection_id, "from": start and f"{start:%Y-%m-%d}",
                      "to": body.last_day and f"{body.last_day:%Y-%m-%d}"})
        status = jobs.sync_status(conn, principal.org_id, job_id)
    assert status is not None
    return job_out(status)


@router.get("/sync/jobs", response_model=Jobs, summary="The latest sync jobs, newest first (analyst)")
def list_jobs(principal: Analyst, conn: Reading,
              limit: int = Query(20, ge=1, le=500, description="How many jobs.")) -> Jobs:
    return Jobs(jobs=[job_out(j) for j in jobs.list_jobs(conn, principal.org_id, limit)])


@router.get("/sync/jobs/{job_id}", response_model=JobOut, summary="A sync job and its progress (analyst)")
def job(job_id: ObjectId, principal: Analyst, conn: Reading) -> JobOut:
    status = jobs.sync_status(conn, principal.org_id, job_id)
    if status is None:
        raise not_found(f"No sync job {job_id} in this organisation.")
    return job_out(status)


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
            connection_id: int | None = Query(None, ge=1, le=MAX_ID, description="Only this connection's runs.")) -> Runs:
    return Runs(runs=runs(conn, principal.org_id, limit=limit, connection_id=connection_id))


class ScheduleOut(Strict):
    schedule: str | None = Field(description="The organisation's own schedule (daily@HH:MM UTC or off); "
                                             "None: it follows the deployment's.")
    deployment: str = Field(description="The deployment's schedule, TALLYBOOK_SYNC_SCHEDULE.")
    effective: str = Field(description="The schedule in force for this organisation: daily@HH:MM (UTC) or off.")


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schedule: str | None = Field(max_length=40, description="daily@HH:MM (UTC) or off; null: follow the "
                                                            "deployment's schedule.")


def _schedule(request: Request, conn: Connection, org_id: int) -> ScheduleOut:
    settings = request.app.state.settings
    own = own_schedule(conn, org_id)
    at = effective_schedule(org_id, own, settings)
    return ScheduleOut(schedule=own, deployment=settings.sync_schedule,
                       effective=f"daily@{at:%H:%M}" if at else "off")


@router.get("/sync/schedule", response_model=ScheduleOut, summary="The daily sync schedule (analyst)")
def get_schedule(request: Request, principal: Analyst, conn: Reading) -> ScheduleOut:
    return _schedule(request, conn, principal.org_id)


@router.put("/sync/schedule", response_model=ScheduleOut, summary="Set the organisation's sync schedule (admin)")
def put_schedule(body: ScheduleIn, request: Request, principal: Admin) -> ScheduleOut:
    """`tallybook serve` starts the organisation's sync once a day at this time (UTC); `off` stops it;
    null follows the deployment's TALLYBOOK_SYNC_SCHEDULE. Audited."""
    with engine(request).begin() as conn:
        try:
            set_schedule(conn, principal.org_id, body.schedule, actor=actor(principal))
        except ValueError as exc:
            raise invalid(f"`schedule`: {exc}") from None
        return _schedule(request, conn, principal.org_id)
