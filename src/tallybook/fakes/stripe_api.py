"""A faithful fake of the Stripe endpoints tallybook's billing uses, for the official `stripe` SDK
pointed at it (`StripeClient(..., base_addresses={"api": fake.url})`).

Follows shared/reference/billing-finops.md section 2:

    POST /v1/customers                          create (name, email, metadata[...])
    GET  /v1/customers/{id}                     retrieve; 404 resource_missing
    POST /v1/billing/meters                     create (display_name, event_name, default_aggregation[formula], ...)
    GET  /v1/billing/meters                     list: {object: list, data, has_more, url}; limit, starting_after
    POST /v1/billing/meter_events               event_name (<= 100 chars, an active meter's), payload[stripe_customer_id]
                                                (an existing customer) and payload[value] (a number), identifier
                                                (<= 100 chars, unique over 24 h), timestamp (past 35 days .. 5 min ahead)
    POST /v1/billing/meter_event_adjustments    type=cancel, cancel[identifier] of an event received < 24 h ago

Requests are form-encoded with bracketed keys (`payload[value]=12`), authenticated with
`Authorization: Bearer sk_...`; errors are Stripe's `{"error": {"type", "code", "message", "param"}}`
with its status codes (400 invalid_request_error, 401 authentication, 404 resource_missing). A POST
repeated with the same `Idempotency-Key` gets the first answer back. Test hooks under `/_fake/`.
Meter events are summed per (event_name, customer) with cancelled ones left out: `totals()`.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DAY = 86_400
MAX_AGE = 35 * DAY
MAX_AHEAD = 5 * 60


class StripeError(Exception):
    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.code, self.param = status, type_, code, param

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "message": str(self)}
        if self.code:
            body["code"] = self.code
        if self.param:
            body["param"] = self.param
        return {"error": body}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def parse_form(text: str) -> dict[str, Any]:
    """`a=1&payload[value]=2&cancel[identifier]=x&expand[0]=y` -> nested dicts (lists as dicts by index)."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


@dataclass
class MeterEvent:
    event_name: str
    identifier: str
    customer: str
    value: Decimal
    timestamp: int
    received: float
    cancelled: bool = False


@dataclass
class StripeFake:
    api_key: str = "sk_test_tallybook_fake"
    now: float | None = None  # None: the real clock
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, MeterEvent] = field(default_factory=dict)
    adjustments: list[dict[str, Any]] = field(default_factory=list)
    down: int = 0  # >0: answer every API request with this status (e.g. 503)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _idempotent: dict[str, tuple[int, Any]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def clock(self) -> float:
        return self.now if self.now is not None else time.time()

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):08d}"

    # -- what tests read ---------------------------------------------------------------------------
    def totals(self) -> dict[tuple[str, str], Decimal]:
        """Summed value per (event_name, stripe customer id), cancelled events left out."""
        found: dict[tuple[str, str], Decimal] = {}
        for e in self.events.values():
            if not e.cancelled:
                found[(e.event_name, e.customer)] = found.get((e.event_name, e.customer), Decimal(0)) + e.value
        return found

    def identifiers_sent(self) -> list[str]:
        return [path.split(" ", 1)[1] for method, path in self.requests if method == "EVENT"]

    # -- handlers ----------------------------------------------------------------------------------
    def create_customer(self, form: dict[str, Any]) -> dict[str, Any]:
        customer = {"id": self._id("cus"), "object": "customer", "name": form.get("name"), "email": form.get("email"),
                    "metadata": form.get("metadata", {}), "created": int(self.clock()), "livemode": False}
        self.customers[customer["id"]] = customer
        return customer

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        if customer_id not in self.customers:
            raise StripeError(404, f"No such customer: '{customer_id}'", code="resource_missing", param="id")
        return self.customers[customer_id]

    def create_meter(self, form: dict[str, Any]) -> dict[str, Any]:
        name = form.get("event_name", "")
        if not name or len(name) > 100:
            raise StripeError(400, "event_name must be 1 to 100 characters.", param="event_name")
        if not form.get("display_name"):
            raise StripeError(400, "Missing required param: display_name.", code="parameter_missing",
                              param="display_name")
        if any(m["event_name"] == name and m["status"] == "active" for m in self.meters.values()):
            raise StripeError(400, f"An active meter with event_name '{name}' already exists.",
                              code="resource_already_exists", param="event_name")
        formula = form.get("default_aggregation", {}).get("formula", "")
        if formula not in ("count", "sum", "last"):
            raise StripeError(400, "default_aggregation[formula] must be one of count, sum, last.",
                              param="default_aggregation[formula]")
        meter = {"id": self._id("mtr"), "object": "billing.meter", "display_name": form["display_name"],
                 "event_name": name, "status": "active", "default_aggregation": {"formula": formula},
                 "customer_mapping": {"type": "by_id", "event_payload_key": form.get("customer_mapping", {}).get(
                     "event_payload_key", "stripe_customer_id")},
                 "value_settings": {"event_payload_key": form.get("value_settings", {}).get("event_payload_key", "value")},
                 "event_time_window": form.get("event_time_window"), "created": int(self.clock()), "livemode": False}
        self.meters[meter["id"]] = meter
        return meter

    def list_meters(self, params: dict[str, str]) -> dict[str, Any]:
        meters = sorted(self.meters.values(), key=lambda m: m["id"])
        if after := params.get("starting_after"):
            meters = [m for m in meters if m["id"] > after]
        limit = int(params.get("limit", 10))
        return {"object": "list", "url": "/v1/billing/meters", "has_more": len(meters) > limit,
                "data": meters[:limit]}

    def _meter(self, event_name: str) -> dict[str, Any]:
        meter = next((m for m in self.meters.values() if m["event_name"] == event_name and m["status"] == "active"), None)
        if meter is None:
            raise StripeError(400, f"No active meter was found with event_name '{event_name}'.",
                              code="resource_missing", param="event_name")
        return meter

    def create_meter_event(self, form: dict[str, Any]) -> dict[str, Any]:
        name = form.get("event_name", "")
        if not name:
            raise StripeError(400, "Missing required param: event_name.", code="parameter_missing", param="event_name")
        if len(name) > 100:
            raise StripeError(400, "event_name must be at most 100 characters.", param="event_name")
        meter = self._meter(name)
        payload = form.get("payload")
        if not isinstance(payload, dict):
            raise StripeError(400, "Missing required param: payload.", code="parameter_missing", param="payload")
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        customer = payload.get(customer_key)
        if not customer:
            raise StripeError(400, f"payload must contain '{customer_key}'.", param=f"payload[{customer_key}]")
        if customer not in self.customers:
            raise StripeError(400, f"No such customer: '{customer}'", code="resource_missing",
                              param=f"payload[{customer_key}]")
        try:
            value = Decimal(payload.get(value_key, ""))
        except InvalidOperation:
            raise StripeError(400, f"payload['{value_key}'] must be a number.", param=f"payload[{value_key}]") from None
        now = self.clock()
        identifier = form.get("identifier") or self._id("mev")
        if len(identifier) > 100:
            raise StripeError(400, "identifier must be at most 100 characters.", param="identifier")
        earlier = self.events.get(identifier)
        if earlier is not None and now - earlier.received < DAY:
            raise StripeError(400, f"An event with identifier '{identifier}' already exists.",
                              code="resource_already_exists", param="identifier")
        try:
            stamp = int(form.get("timestamp", int(now)))
        except ValueError:
            raise StripeError(400, "timestamp must be an integer.", param="timestamp") from None
        if stamp < now - MAX_AGE or stamp > now + MAX_AHEAD:
            raise StripeError(400, "timestamp must be within the past 35 calendar days or up to 5 minutes in "
                              "the future.", code="timestamp_out_of_range", param="timestamp")
        self.events[identifier] = MeterEvent(name, identifier, customer, value, stamp, now)
        self.requests.append(("EVENT", f"POST {identifier}"))
        return {"object": "billing.meter_event", "created": int(now), "event_name": name, "identifier": identifier,
                "livemode": False, "payload": {k: str(v) for k, v in payload.items()}, "timestamp": stamp}

    def create_adjustment(self, form: dict[str, Any]) -> dict[str, Any]:
        if form.get("type") != "cancel":
            raise StripeError(400, "type must be 'cancel'.", param="type")
        name = form.get("event_name", "")
        self._meter(name)
        identifier = form.get("cancel", {}).get("identifier")
        if not identifier:
            raise StripeError(400, "Missing required param: cancel[identifier].", code="parameter_missing",
                              param="cancel[identifier]")
        event = self.events.get(identifier)
        if event is None or event.event_name != name:
            raise StripeError(400, f"No meter event with identifier '{identifier}' was found.",
                              code="resource_missing", param="cancel[identifier]")
        if self.clock() - event.received > DAY:
            raise StripeError(400, "Meter events can only be cancelled within 24 hours of being received.",
                              param="cancel[identifier]")
        event.cancelled = True
        adjustment = {"id": self._id("mtradj"), "object": "billing.meter_event_adjustment", "event_name": name,
                      "type": "cancel", "cancel": {"identifier": identifier}, "status": "pending", "livemode": False}
        self.adjustments.append(adjustment)
        return adjustment

    # -- the ASGI app ------------------------------------------------------------------------------
    def app(self) -> Starlette:
        async def api(request: Request) -> Response:
            if self.down:
                return JSONResponse({"error": {"type": "api_error", "message": "The fake is down."}},
                                    status_code=self.down)
            auth = request.headers.get("authorization", "")
            if auth != f"Bearer {self.api_key}":
                shown = auth.removeprefix("Bearer ")[:8] + "*" * 4
                return StripeError(401, f"Invalid API Key provided: {shown}", type_="invalid_request_error").response()
            key = request.headers.get("idempotency-key")
            with self._lock:
                if request.method == "POST" and key and key in self._idempotent:
                    status, body = self._idempotent[key]
                    return JSONResponse(body, status_code=status, headers={"idempotent-replayed": "true"})
            form = parse_form((await request.body()).decode()) if request.method == "POST" else {}
            path = request.url.path
            try:
                with self._lock:
                    if path == "/v1/customers" and request.method == "POST":
                        body = self.create_customer(form)
                    elif path.startswith("/v1/customers/") and request.method == "GET":
                        body = self.get_customer(path.rsplit("/", 1)[1])
                    elif path == "/v1/billing/meters" and request.method == "POST":
                        body = self.create_meter(form)
                    elif path == "/v1/billing/meters" and request.method == "GET":
                        body = self.list_meters(dict(request.query_params))
                    elif path == "/v1/billing/meter_events" and request.method == "POST":
                        body = self.create_meter_event(form)
                    elif path == "/v1/billing/meter_event_adjustments" and request.method == "POST":
                        body = self.create_adjustment(form)
                    else:
                        raise StripeError(404, f"Unrecognized request URL ({request.method}: {path}).")
                    status = 200
            except StripeError as e:
                status, body = e.status, e.body()
            if request.method == "POST" and key and status < 500:
                with self._lock:
                    self._idempotent[key] = (status, body)
            return JSONResponse(body, status_code=status)

        async def set_down(request: Request) -> Response:
            self.down = int((await request.json()).get("status", 0))
            return JSONResponse({"down": self.down})

        return Starlette(routes=[
            Route("/_fake/down", set_down, methods=["POST"]),
            Route("/v1/{rest:path}", api, methods=["GET", "POST"]),
        ])

