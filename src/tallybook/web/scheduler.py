"""The sync scheduler inside `tallybook serve`: once a day, at TALLYBOOK_SYNC_SCHEDULE (daily@HH:MM UTC,
or `off`), every organisation's connections are synced as one background job (web/jobs.py).

An organisation may set its own schedule in `org_settings` (key `sync_schedule`, same syntax). Several
`tallybook serve` processes may share a ledger: each day's run is claimed in `org_settings`
(key `sync_schedule.last_run`) by one atomic write, so exactly one process starts it. A server that
was down at the due time catches up when it starts, the same day.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import date, datetime, time, timedelta

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tallybook import audit
from tallybook.config import Settings
from tallybook.ledger import schema as t
from tallybook.ledger.schema_access import login_attempts, web_sessions
from tallybook.ledger.store import utcnow
from tallybook.web.jobs import start_sync

log = logging.getLogger("tallybook.web.scheduler")
SCHEDULE_KEY = "sync_schedule"
LAST_RUN_KEY = "sync_schedule.last_run"


def parse_schedule(text: str) -> time | None:
    """daily@HH:MM -> that time of day (UTC); off -> None. ValueError on anything else."""
    text = text.strip()
    if text == "off":
        return None
    found = re.fullmatch(r"daily@(\d{1,2}):(\d{2})", text)
    try:
        if found is None:
            raise ValueError
        return time(int(found[1]), int(found[2]))
    except ValueError:
        raise ValueError(f"{text!r} is not a sync schedule: use daily@HH:MM (UTC) or off.") from None


def own_schedule(conn: Connection, org_id: int) -> str | None:
    """The organisation's own schedule as it wrote it; None when it follows the deployment's."""
    s = t.org_settings.c
    value = conn.execute(select(s.value).where(s.org_id == org_id, s.key == SCHEDULE_KEY)).scalar()
    return None if value is None else str(value)


def schedule_for(conn: Connection, org_id: int, settings: Settings) -> time | None:
    return effective_schedule(org_id, own_schedule(conn, org_id), settings)


def effective_schedule(org_id: int, own: str | None, settings: Settings) -> time | None:
    """The time of day in force: the organisation's own schedule, else (or when unreadable) the deployment's."""
    try:
        return parse_schedule(own if own is not None else settings.sync_schedule)
    except ValueError:
        log.warning("organisation %s: unreadable sync_schedule %r; using %s", org_id, own, settings.sync_schedule)
        return parse_schedule(settings.sync_schedule)


def set_schedule(conn: Connection, org_id: int, text: str | None, *, actor: str) -> time | None:
    """Give the organisation its own schedule (`daily@HH:MM` UTC or `off`), or with None or "" follow the
    deployment's TALLYBOOK_SYNC_SCHEDULE again. Raises ValueError for anything else. Audited."""
    s = t.org_settings.c
    text = (text or "").strip().lower() or None
    at = parse_schedule(text) if text is not None else None  # ValueError: nothing is changed
    if text is not None:
        text = f"daily@{at:%H:%M}" if at is not None else "off"
    before = own_schedule(conn, org_id)
    if text == before:
        return at
    conn.execute(delete(t.org_settings).where(s.org_id == org_id, s.key == SCHEDULE_KEY))
    if text is not None:
        conn.execute(insert(t.org_settings).values(org_id=org_id, key=SCHEDULE_KEY, value=text))
    audit.record(conn, org_id, actor, "sync_schedule.changed", "org_setting", SCHEDULE_KEY,
                 {"from": before or "deployment default", "to": text or "deployment default"})
    return at


def claim(engine: Engine, org_id: int, day: date) -> bool:
    """True for exactly one caller per organisation and day, across processes."""
    s = t.org_settings.c
    with engine.begin() as conn:
        moved = conn.execute(update(t.org_settings).where(
            s.org_id == org_id, s.key == LAST_RUN_KEY, s.value < day.isoformat()).values(value=day.isoformat()))
        if moved.rowcount:
            return True
        if conn.execute(select(s.value).where(s.org_id == org_id, s.key == LAST_RUN_KEY)).first() is not None:
            return False
    try:
        with engine.begin() as conn:
            conn.execute(insert(t.org_settings).values(org_id=org_id, key=LAST_RUN_KEY, value=day.isoformat()))
        return True
    except IntegrityError:  # another process claimed it first
        return False


class Scheduler:
    """Checks every `interval` seconds whether an organisation's daily sync is due, and starts it."""

    def __init__(self, engine: Engine, settings: Settings, *, interval: float = 30.0) -> None:
        self.engine, self.settings, self.interval = engine, settings, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: datetime | None = None) -> list[int]:
        """Start every sync that is due at `now`; returns the job ids started. Also drops expired sessions
        and sign-in attempts older than a day."""
        now = now or utcnow()
        with self.engine.begin() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))
            conn.execute(delete(login_attempts).where(login_attempts.c.at < now - timedelta(days=1)))
        with self.engine.connect() as conn:
            org_ids = sorted({r[0] for r in conn.execute(select(t.connections.c.org_id).distinct())})
            due = [(org_id, at) for org_id in org_ids if (at := schedule_for(conn, org_id, self.settings))]
        started = []
        for org_id, at in due:
            if now >= datetime.combine(now.date(), at) and claim(self.engine, org_id, now.date()):
                job_id = start_sync(self.engine, org_id, settings=self.settings, trigger="schedule")
                log.info("scheduled sync of organisation %s started: job %s", org_id, job_id)
                started.append(job_id)
        return started

    def start(self) -> None:
        if parse_schedule(self.settings.sync_schedule) is None and not self._any_org_schedule():
            log.info("sync schedule is off")
            return
        self._thread = threading.Thread(target=self._run, name="tallybook-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # never let one bad tick end the schedule
                log.exception("sync scheduler tick failed")
            if self._stop.wait(self.interval):
                return

    def _any_org_schedule(self) -> bool:
        s = t.org_settings.c
        with self.engine.connect() as conn:
            return any(v != "off" for (v,) in conn.execute(select(s.value).where(s.key == SCHEDULE_KEY)))
