"""Deliveries: each firing becomes one row per channel, once (the unique key is rule, channel and the
firing's dedup key, so two processes checking at once write it once); then rows that are due are
claimed, sent, and marked sent, or retried with backoff (30 s, doubling) until
TALLYBOOK_ALERTS_MAX_ATTEMPTS, then marked failed with the last error.

A claim is a conditional UPDATE (pending, or a `sending` whose claimer died and whose lease ran
out), so exactly one process sends a row at a time; a process killed mid-send leaves the row to be
re-sent after its lease, which is why webhook receivers get `X-Tallybook-Delivery` to deduplicate on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import Engine, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tallybook.alerts import channels as channel_kinds
from tallybook.alerts.evaluate import Firing
from tallybook.alerts.message import DeliveryFailed, Message
from tallybook.alerts.reports import render_attachment
from tallybook.alerts.rules import channels
from tallybook.config import Settings
from tallybook.ledger import schema_alerts as ta
from tallybook.security.vault import Vault

BACKOFF = timedelta(seconds=30)
LEASE = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: int
    rule: str
    channel: str
    status: str  # sent | pending (will retry) | failed
    error: str | None


def enqueue(engine: Engine, firings: Iterable[Firing], now: datetime) -> int:
    """Record each firing once per channel; returns how many rows were new."""
    new = 0
    with engine.begin() as conn:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        for f in firings:
            for name in f.rule.channels:
                result = conn.execute(insert(ta.alert_deliveries).values(
                    org_id=f.rule.org_id, rule_id=f.rule.id, channel=name, dedup_key=f.dedup_key[:240],
                    subject=f.message.subject[:400], payload=f.message.to_json(), status="pending", attempts=0,
                    next_attempt_at=now, created_at=now).on_conflict_do_nothing())
                new += result.rowcount
    return new


def _claim(engine: Engine, row_id: int, now: datetime) -> bool:
    d = ta.alert_deliveries.c
    with engine.begin() as conn:
        claimed = conn.execute(update(ta.alert_deliveries).where(
            d.id == row_id, d.status.in_(("pending", "sending")), d.next_attempt_at <= now,
        ).values(status="sending", attempts=d.attempts + 1, next_attempt_at=now + LEASE))
        return claimed.rowcount == 1


def _render(engine: Engine, reference: str) -> tuple[str, bytes, str]:
    try:
        with engine.connect() as conn:
            return render_attachment(conn, reference)
    except Exception as e:  # noqa: BLE001 - a report that cannot be rendered is a failed delivery, retried
        raise DeliveryFailed(f"could not render {reference}: {type(e).__name__}: {e}") from None


def deliver_due(engine: Engine, settings: Settings, vault: Vault, now: datetime,
                client: httpx.Client | None = None, *, org_id: int | None = None) -> list[Outcome]:
    """Send every delivery that is due now; returns what happened to each."""
    d = ta.alert_deliveries.c
    query = select(ta.alert_deliveries, ta.alert_rules.c.name.label("rule_name")).join(
        ta.alert_rules, ta.alert_rules.c.id == d.rule_id).where(
        d.status.in_(("pending", "sending")), d.next_attempt_at <= now).order_by(d.id)
    if org_id is not None:
        query = query.where(d.org_id == org_id)
    with engine.connect() as conn:
        due = list(conn.execute(query))
        by_org = {org: channels(conn, vault, org) for org in {r.org_id for r in due}}
    own_client = client is None
    client = client or httpx.Client(timeout=settings.http_timeout)
    outcomes = []
    try:
        for row in due:
            if not _claim(engine, row.id, now):
                continue  # another process has it
            error: str | None = None
            channel = by_org[row.org_id].get(row.channel)
            try:
                if channel is None:
                    raise DeliveryFailed(f"channel {row.channel!r} no longer exists")
                message = Message.from_json(row.payload, delivery_id=f"tbd_{row.id}")
                files: tuple[tuple[str, bytes, str], ...] = ()
                if message.attachment and channel.kind == "email":
                    files = (_render(engine, message.attachment),)
                channel_kinds.send(channel, message, settings, client, files)
            except DeliveryFailed as e:
                error = str(e)[:500]
            attempts = row.attempts + 1
            if error is None:
                values = {"status": "sent", "sent_at": now, "last_error": None}
            elif attempts >= settings.alerts_max_attempts:
                values = {"status": "failed", "last_error": error}
            else:
                values = {"status": "pending", "last_error": error,
                          "next_attempt_at": now + BACKOFF * 2 ** (attempts - 1)}
            with engine.begin() as conn:
                conn.execute(update(ta.alert_deliveries).where(d.id == row.id).values(**values))
            outcomes.append(Outcome(row.id, row.rule_name, row.channel, str(values["status"]), error))
    finally:
        if own_client:
            client.close()
    return outcomes
