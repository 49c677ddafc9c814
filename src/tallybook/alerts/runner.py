"""Check every enabled rule, record what fired, send what is due: once (`run_once`, after a sync or
from `tallybook alerts run`) or every TALLYBOOK_ALERTS_INTERVAL seconds in a background thread of
`tallybook gateway` and `tallybook serve` (`AlertLoop`). Several processes may run it at once:
deliveries are deduplicated and claimed in the database."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine

from tallybook.alerts.deliver import Outcome, deliver_due, enqueue
from tallybook.alerts.evaluate import evaluate
from tallybook.alerts.rules import rules
from tallybook.config import Settings
from tallybook.security.vault import Vault

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunResult:
    fired: int  # firings found (new or already recorded)
    new: int  # deliveries recorded for the first time
    outcomes: list[Outcome]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def dashboard_link(settings: Settings) -> str | None:
    return settings.web_base_url.rstrip("/") + "/" if settings.web_base_url else None


def run_once(engine: Engine, settings: Settings, vault: Vault, *, now: datetime | None = None,
             org_id: int | None = None, client: httpx.Client | None = None) -> RunResult:
    now = now or utcnow()
    with engine.connect() as conn:
        firings = evaluate(conn, rules(conn, org_id, enabled_only=True), now, dashboard_link(settings))
    new = enqueue(engine, firings, now)
    return RunResult(len(firings), new, deliver_due(engine, settings, vault, now, client, org_id=org_id))


class AlertLoop:
    """`run_once` every `interval` seconds on a daemon thread until `stop()`; errors are logged, never raised."""

    def __init__(self, engine: Engine, settings: Settings, vault: Vault, interval: float | None = None) -> None:
        self.engine, self.settings, self.vault = engine, settings, vault
        self.interval = interval or settings.alerts_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tallybook-alerts", daemon=True)

    def start(self) -> AlertLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=self.settings.http_timeout) as client:
            while not self._stop.is_set():
                try:
                    result = run_once(self.engine, self.settings, self.vault, client=client)
                    for o in result.outcomes:
                        log.info("alert %s -> %s: %s%s", o.rule, o.channel, o.status,
                                 f" ({o.error})" if o.error else "")
                except Exception:
                    log.exception("alert check failed; retrying in %.0f s", self.interval)
                self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
