"""Alert channels: one module per kind, each with `send(config, message, ...)` raising DeliveryFailed."""

from __future__ import annotations

import httpx

from tallybook.alerts.channels import email, slack, webhook
from tallybook.alerts.message import Message
from tallybook.alerts.rules import Channel
from tallybook.config import Settings


def send(channel: Channel, message: Message, settings: Settings, client: httpx.Client,
         attachments: tuple[tuple[str, bytes, str], ...] = ()) -> None:
    """Send `message`; `attachments` (filename, bytes, MIME type) go with emails, others carry the link."""
    if channel.kind == "slack":
        slack.send(channel.config, message, client)
    elif channel.kind == "webhook":
        webhook.send(channel.config, message, client)
    else:
        email.send(channel.config, message, settings, attachments)
