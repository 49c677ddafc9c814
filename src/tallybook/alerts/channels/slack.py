"""Slack incoming webhooks: a readable message (Block Kit with a plain-text fallback) with the figures
and a button to the dashboard. Slack answers 200 `ok`, or 4xx with a reason such as `invalid_payload`."""

from __future__ import annotations

from typing import Any

import httpx

from tallybook.alerts.message import DeliveryFailed, Message


def payload(message: Message) -> dict[str, Any]:
    fields = [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in message.figures.items()]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(message.lines) or message.subject}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields[:10]})
    if message.link:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open tallybook"}, "url": message.link}]})
    return {"text": message.plain_text(), "blocks": blocks}


def send(config: dict[str, Any], message: Message, client: httpx.Client) -> None:
    try:
        response = client.post(config["url"], json=payload(message))
    except httpx.HTTPError as e:
        raise DeliveryFailed(f"Slack webhook unreachable: {type(e).__name__}") from None
    if response.status_code != 200:
        raise DeliveryFailed(f"Slack answered {response.status_code}: {response.text[:120]}")
