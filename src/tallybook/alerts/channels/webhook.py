"""Generic webhooks: the alert as JSON, signed so the receiver can tell it came from us.

Headers sent with every POST:

    X-Tallybook-Delivery:  the delivery's id (the same on every retry of it: deduplicate on it)
    X-Tallybook-Timestamp: Unix seconds when this attempt was signed
    X-Tallybook-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

To verify: recompute the HMAC over the timestamp, a dot and the raw body bytes with the channel's
secret, compare in constant time, and refuse timestamps more than 5 minutes old (replays).
A 2xx answer is success; anything else is retried with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import httpx

from tallybook.alerts.message import DeliveryFailed, Message


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance: int = 300, now: float | None = None) -> bool:
    """The receiver's check (used by our tests, and a reference for yours)."""
    stamp = headers.get("x-tallybook-timestamp", "")
    if not stamp.isdigit() or abs((now or time.time()) - int(stamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, stamp, body), headers.get("x-tallybook-signature", ""))


def send(config: dict[str, Any], message: Message, client: httpx.Client) -> None:
    body = message.to_json().encode()
    stamp = str(int(time.time()))
    headers = {"content-type": "application/json", "x-tallybook-delivery": message.delivery_id,
               "x-tallybook-timestamp": stamp, "x-tallybook-signature": signature(config["secret"], stamp, body)}
    try:
        response = client.post(config["url"], content=body, headers=headers)
    except httpx.HTTPError as e:
        raise DeliveryFailed(f"webhook unreachable: {type(e).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"webhook answered {response.status_code}")
