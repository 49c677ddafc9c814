"""`/api/v1/alerts/...`: alert channels, rules and deliveries (`tallybook alerts ...`), through the same
functions as the CLI (tallybook.alerts.rules, .history), each change audited as the API's caller.

A channel's address is a credential: the URL and the webhook secret are sealed by the vault and no
answer carries them (`target_hint` shows the host and last four characters). A webhook secret that
tallybook generates is in the answer to the channel's creation, once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tallybook import audit
from tallybook.alerts import rules as alert_rules
from tallybook.alerts.history import deliveries, send_test
from tallybook.alerts.message import DeliveryFailed
from tallybook.security.redaction import redact
from tallybook.security.vault import Vault
from tallybook.web.api.errors import ApiRoute, ErrorBody, conflict, not_found
from tallybook.web.api.params import Admin, Analyst, ObjectId, Reading, actor, engine
from tallybook.web.api.schemas import Moment, Number, Strict, number
from tallybook.web.errors import ApiError

router = APIRouter(route_class=ApiRoute, tags=["alerts"])
ChannelKind = Literal["slack", "webhook", "email"]
RuleKind = Literal["budget", "forecast", "anomaly", "sync_failed", "sync_stale", "key_failing", "reconcile",
                   "monthly_report"]
Status = Literal["pending", "sending", "sent", "failed"]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^,\s][^,]*$")]
DELIVERY_FAILED: dict[int | str, dict[str, Any]] = {
    502: {"model": ErrorBody, "description": "The channel did not take the test message (`delivery_failed`)."},
}


class ChannelOut(Strict):
    id: int
    name: str
    kind: ChannelKind
    target_hint: str = Field(description="Host and last four characters of the URL, or the email addresses.")


class CreatedChannel(ChannelOut):
    secret: str | None = Field(description="A generated webhook signing secret, shown once, in this answer only; "
                                           "null when you gave one or for Slack and email.")


class Channels(Strict):
    channels: list[ChannelOut]


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = Field(description="A name rules refer to, e.g. ops-slack.")
    kind: ChannelKind
    url: str | None = Field(None, max_length=2000, description="Slack incoming-webhook URL or your webhook's URL.")
    to: list[Annotated[str, Field(min_length=3, max_length=320)]] | None = Field(
        None, max_length=50, description="Email recipients.")
    secret: str | None = Field(None, min_length=16, max_length=200, description=(
        "Webhook signing secret; without one, tallybook generates it and returns it once."))


class TestSent(Strict):
    channel: str
    target_hint: str
    sent: bool


class RuleOut(Strict):
    id: int
    name: str
    kind: RuleKind
    scope: str = Field(description="org, key:<id>, customer:<name>, provider:<name>, team:<name>, cost_centre:<name>.")
    period: Literal["day", "month"]
    amount: Number | None = Field(description="Budget or forecast amount, reconcile delta percent, or stale hours.")
    currency: str
    thresholds: list[int] = Field(description="Budget levels in percent.")
    channels: list[str]
    enabled: bool
    created_at: Moment


class Rules(Strict):
    rules: list[RuleOut]


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    kind: RuleKind
    channels: list[Name] = Field(min_length=1, max_length=20, description="Channel names.")
    scope: str = Field("org", min_length=1, max_length=240)
    period: Literal["day", "month"] = "month"
    amount: str | None = Field(None, pattern=r"^\d{1,12}(\.\d{1,9})?$", description="e.g. 250 or 99.50.")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    thresholds: list[Annotated[int, Field(ge=1, le=1000)]] = Field([100], min_length=1, max_length=10)


class Delivery(Strict):
    id: int
    created_at: Moment
    sent_at: Moment | None
    rule: str
    channel: str
    subject: str
    status: Status
    attempts: int
    last_error: str | None


class Deliveries(Strict):
    deliveries: list[Delivery]


def _channel_out(c: alert_rules.Channel) -> ChannelOut:
    return ChannelOut(id=c.id, name=c.name, kind=c.kind, target_hint=c.target_hint)


def _rule_out(r: alert_rules.Rule) -> RuleOut:
    return RuleOut(id=r.id, name=r.name, kind=r.kind, scope=r.scope, period=r.period,
                   amount=number(r.amount), currency=r.currency, thresholds=list(r.thresholds),
                   channels=list(r.channels), enabled=r.enabled, created_at=r.created_at)


def _channel_by_id(found: dict[str, alert_rules.Channel], channel_id: int) -> alert_rules.Channel:
    for c in found.values():
        if c.id == channel_id:
            return c
    raise not_found(f"No alert channel {channel_id} in this organisation.")


def _rule_by_id(found: list[alert_rules.Rule], rule_id: int) -> alert_rules.Rule:
    for r in found:
        if r.id == rule_id:
            return r
    raise not_found(f"No alert rule {rule_id} in this organisation.")


@router.get("/alerts/channels", response_model=Channels, summary="Alert channels (analyst)")
def list_channels(principal: Analyst, conn: Reading) -> Channels:
    """Kind and a hint of the address; never the URL or secret. Same as `tallybook alerts channels list`."""
    return Channels(channels=[_channel_out(c) for c in alert_rules.channels(conn, None, principal.org_id).values()])


@router.post("/alerts/channels", response_model=CreatedChannel, status_code=201,
             summary="Add an alert channel (admin)")
def add_channel(body: ChannelIn, request: Request, principal: Admin) -> CreatedChannel:
    """The URL and secret are sealed and never shown again. Same as `tallybook alerts channels add`."""
    vault = Vault.from_settings(request.app.state.settings)
    with engine(request).begin() as conn:
        if body.name in alert_rules.channels(conn, None, principal.org_id):
            raise conflict(f"There is already a channel named {body.name!r}; remove it first or pick another name.")
        channel, shown = alert_rules.add_channel(conn, vault, principal.org_id, body.name, body.kind,
                                                 url=body.url, to=body.to, secret=body.secret)
        audit.record(conn, principal.org_id, actor(principal), "alert_channel.created", "alert_channel",
                     channel.name, {"kind": channel.kind, "target": channel.target_hint})
    return CreatedChannel(**_channel_out(channel).model_dump(), secret=shown)


@router.delete("/alerts/channels/{channel_id}", response_model=ChannelOut, summary="Remove an alert channel (admin)")
def remove_channel(channel_id: ObjectId, request: Request, principal: Admin) -> ChannelOut:
    """Only a channel no rule uses (409 otherwise). Same as `tallybook alerts channels remove`."""
    with engine(request).begin() as conn:
        found = _channel_by_id(alert_rules.channels(conn, None, principal.org_id), channel_id)
        users = [r.name for r in alert_rules.rules(conn, principal.org_id) if found.name in r.channels]
        if users:
            raise conflict(f"Channel {found.name!r} is used by rule(s) {', '.join(users)}; remove them first.")
        alert_rules.remove_channel(conn, principal.org_id, found.name)
        audit.record(conn, principal.org_id, actor(principal), "alert_channel.removed", "alert_channel", found.name)
    return _channel_out(found)


@router.post("/alerts/channels/{channel_id}/test", response_model=TestSent, responses=DELIVERY_FAILED,
             summary="Send a test message to a channel now (admin)")
def test_channel(channel_id: ObjectId, request: Request, principal: Admin) -> TestSent:
    """Sends at once and says whether the channel took it (502 with its error if not). Same as `tallybook alerts test`."""
    settings = request.app.state.settings
    with engine(request).connect() as conn:
        found = _channel_by_id(alert_rules.channels(conn, None, principal.org_id), channel_id)
        opened = alert_rules.channels(conn, Vault.from_settings(settings), principal.org_id)[found.name]
    try:
        send_test(opened, principal.org_slug, settings)
    except DeliveryFailed as e:
        raise ApiError(502, "delivery_failed",
                       redact(f"Channel {found.name!r} did not take the test message: {e}")) from None
    return TestSent(channel=found.name, target_hint=found.target_hint, sent=True)


@router.get("/alerts/rules", response_model=Rules, summary="Alert rules (analyst)")
def list_rules(principal: Analyst, conn: Reading) -> Rules:
    """Same as `tallybook alerts list`."""
    return Rules(rules=[_rule_out(r) for r in alert_rules.rules(conn, principal.org_id)])


@router.post("/alerts/rules", response_model=RuleOut, status_code=201, summary="Add an alert rule (admin)")
def add_rule(body: RuleIn, request: Request, principal: Admin) -> RuleOut:
    """Budget and forecast rules need `amount`. Same as `tallybook alerts add`."""
    with engine(request).begin() as conn:
        if any(r.name == body.name for r in alert_rules.rules(conn, principal.org_id)):
            raise conflict(f"There is already a rule named {body.name!r}.")
        rule = alert_rules.add_rule(conn, principal.org_id, body.name, body.kind, channel_names=body.channels,
                                    scope=body.scope, period=body.period, amount=body.amount,
                                    currency=body.currency, thresholds=",".join(map(str, body.thresholds)))
        kind_of_scope, _, who = rule.scope.partition(":")
        scope = {"scope": "customer", "customer": who} if kind_of_scope == "customer" else {"scope": rule.scope}
        audit.record(conn, principal.org_id, actor(principal), "alert_rule.created", "alert_rule", rule.name, {
            "kind": rule.kind, **scope, "period": rule.period, "amount": str(rule.amount),
            "currency": rule.currency, "thresholds": list(rule.thresholds), "channels": list(rule.channels)})
    return _rule_out(rule)


@router.delete("/alerts/rules/{alert_rule_id}", response_model=RuleOut, summary="Remove an alert rule (admin)")
def remove_rule(alert_rule_id: ObjectId, request: Request, principal: Admin) -> RuleOut:
    """Its delivery history stays. Same as `tallybook alerts remove`."""
    with engine(request).begin() as conn:
        found = _rule_by_id(alert_rules.rules(conn, principal.org_id), alert_rule_id)
        alert_rules.remove_rule(conn, principal.org_id, found.name)
        audit.record(conn, principal.org_id, actor(principal), "alert_rule.removed", "alert_rule", found.name)
    return _rule_out(found)


@router.get("/alerts/deliveries", response_model=Deliveries, summary="Alert deliveries, newest first (analyst)")
def list_deliveries(
    principal: Analyst, conn: Reading,
    rule: Annotated[str | None, Query(max_length=100, description="Only this rule's deliveries (its name).")] = None,
    status: Annotated[Status | None, Query(description="Only deliveries in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Deliveries:
    """When, which rule and channel, status, attempts and the last error. Same as `tallybook alerts history`."""
    rows = deliveries(conn, principal.org_id, rule=rule, status=status, limit=limit)
    return Deliveries(deliveries=[Delivery(**row) for row in rows])
