"""What the alerts did: deliveries newest first (`tallybook alerts history`, the API and the dashboard),
and a test message sent to a channel now (`tallybook alerts test`, the same from the web)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from sqlalchemy import Connection, select

from tallybook.alerts import channels as channel_kinds
from tallybook.alerts.message import Message
from tallybook.alerts.rules import Channel
from tallybook.alerts.runner import dashboard_link
from tallybook.config import Settings
from tallybook.ledger import schema_alerts as ta

STATUSES = ("pending", "sending", "sent", "failed")


def deliveries(conn: Connection, org_id: int, *, rule: str | None = None, status: str | None = None,
               limit: int = 50) -> list[dict[str, Any]]:
    """The organisation's deliveries, newest first: when, rule, channel, subject, status, attempts, last error."""
    d, r = ta.alert_deliveries.c, ta.alert_rules.c
    query = (select(d.id, d.created_at, d.sent_at, r.name.label("rule"), d.channel, d.subject, d.status, d.attempts,
                    d.last_error).join(ta.alert_rules, r.id == d.rule_id)
             .where(d.org_id == org_id).order_by(d.id.desc()).limit(limit))
    if rule:
        query = query.where(r.name == rule)
    if status:
        query = query.where(d.status == status)
    return [dict(row._mapping) for row in conn.execute(query)]


def send_test(channel: Channel, org_slug: str, settings: Settings) -> None:
    """Send a test message to `channel` now; raises DeliveryFailed when the channel does not take it."""
    message = Message("test", "test", "tallybook test alert", (
        f"This is a test of channel {channel.name!r} of organisation {org_slug!r}.",), {"Channel": channel.name},
        dashboard_link(settings), delivery_id=f"tbd_test_{int(time.time())}")
    with httpx.Client(timeout=settings.http_timeout) as client:
        channel_kinds.send(channel, message, settings, client)
