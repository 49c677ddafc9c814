"""Settings › Alerts (admins only): alert rules and channels, forms to add them, a test send per channel, and
the recent deliveries with their status and last error. The same functions as `tallybook alerts ...` and
the API (tallybook.alerts.rules, .history), each change audited; CSRF-checked form posts answered by a
redirect back (a generated webhook secret is shown once instead, on the answer itself)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Connection

from tallybook import audit
from tallybook.alerts import rules as alert_rules
from tallybook.alerts.history import deliveries, send_test
from tallybook.alerts.message import DeliveryFailed
from tallybook.errors import AlertError
from tallybook.security.redaction import redact
from tallybook.security.vault import Vault
from tallybook.web.api.params import actor
from tallybook.web.auth import Principal, require_page, verify_csrf
from tallybook.web.pages.base import Column, PageError, Table, respond

router = APIRouter(include_in_schema=False)
admin_page = require_page("admin")
DONE = ("channel_added", "channel_removed", "rule_added", "rule_removed", "test_sent")
DELIVERY_COLUMNS = (
    Column("created_at", "when", "alerts.col_created_at"), Column("rule", label="alerts.col_rule"),
    Column("channel", label="alerts.col_channel"), Column("subject", label="alerts.col_subject"),
    Column("status"), Column("attempts", "int", "alerts.col_attempts"),
    Column("sent_at", "when", "alerts.col_sent_at"), Column("last_error"),
)


def _page(request: Request, principal: Principal, *, status: int = 200, error: str | None = None,
          new_secret: str | None = None) -> Response:
    with request.app.state.engine.connect() as conn:
        channels = list(alert_rules.channels(conn, None, principal.org_id).values())
        rules = alert_rules.rules(conn, principal.org_id)
        sent = deliveries(conn, principal.org_id, limit=50)
    table = Table("deliveries", "alerts.deliveries", DELIVERY_COLUMNS, sent, flag="failed", empty="alerts.no_deliveries")
    for row in sent:
        row["failed"] = row["status"] == "failed"
    done = request.query_params.get("done")
    response = respond(request, principal, "alerts.html", [table], title="alerts.title", channels=channels,
                       rules=rules, error=error, new_secret=new_secret, rule_kinds=alert_rules.RULE_KINDS,
                       channel_kinds=alert_rules.CHANNEL_KINDS,
                       done=f"alerts.done_{done}" if done in DONE else None)
    if status != 200:
        response.status_code = status
    return response


def _change(request: Request, principal: Principal, done: str, change: Callable[[Connection], object]) -> Response:
    """One change in a transaction with its audit entry; back to the page with `done`, or the refusal shown."""
    try:
        with request.app.state.engine.begin() as conn:
            change(conn)
    except AlertError as exc:
        return _page(request, principal, status=422, error=str(exc))
    return RedirectResponse(f"/settings/alerts?done={done}", status_code=303)


def _channel(conn: Connection, principal: Principal, channel_id: int) -> alert_rules.Channel:
    found = [c for c in alert_rules.channels(conn, None, principal.org_id).values() if c.id == channel_id]
    if not found:
        raise PageError(404, "error.not_found")
    return found[0]


@router.get("/settings/alerts")
def alerts_page(request: Request, principal: Principal = Depends(admin_page)) -> Response:
    return _page(request, principal)


@router.post("/settings/alerts/channels")
def add_channel(request: Request, principal: Principal = Depends(admin_page), csrf_token: str = Form(""),
                name: str = Form(""), kind: str = Form(""), url: str = Form(""), to: str = Form("")) -> Response:
    verify_csrf(request, csrf_token)
    vault = Vault.from_settings(request.app.state.settings)
    recipients = [a.strip() for a in to.split(",") if a.strip()] or None
    try:
        with request.app.state.engine.begin() as conn:
            if not name.strip():
                raise AlertError("A channel needs a name.")
            channel, shown = alert_rules.add_channel(conn, vault, principal.org_id, name.strip(), kind,
                                                     url=url.strip() or None, to=recipients)
            audit.record(conn, principal.org_id, actor(principal), "alert_channel.created", "alert_channel",
                         channel.name, {"kind": channel.kind, "target": channel.target_hint})
    except AlertError as exc:
        return _page(request, principal, status=422, error=str(exc))
    if shown:
        return _page(request, principal, new_secret=shown)
    return RedirectResponse("/settings/alerts?done=channel_added", status_code=303)


@router.post("/settings/alerts/channels/{channel_id}/remove")
def remove_channel(request: Request, channel_id: int, principal: Principal = Depends(admin_page),
                   csrf_token: str = Form("")) -> Response:
    verify_csrf(request, csrf_token)

    def remove(conn: Connection) -> None:
        found = _channel(conn, principal, channel_id)
        alert_rules.remove_channel(conn, principal.org_id, found.name)
        audit.record(conn, principal.org_id, actor(principal), "alert_channel.removed", "alert_channel", found.name)

    return _change(request, principal, "channel_removed", remove)


@router.post("/settings/alerts/channels/{channel_id}/test")
def test_channel(request: Request, channel_id: int, principal: Principal = Depends(admin_page),
                 csrf_token: str = Form("")) -> Response:
    verify_csrf(request, csrf_token)
    settings = request.app.state.settings
    with request.app.state.engine.connect() as conn:
        name = _channel(conn, principal, channel_id).name
        opened = alert_rules.channels(conn, Vault.from_settings(settings), principal.org_id)[name]
    try:
        send_test(opened, principal.org_slug, settings)
    except DeliveryFailed as exc:
        return _page(request, principal, status=502, error=redact(f"{name}: {exc}"))
    return RedirectResponse("/settings/alerts?done=test_sent", status_code=303)


@router.post("/settings/alerts/rules")
def add_rule(request: Request, principal: Principal = Depends(admin_page), csrf_token: str = Form(""),
             name: str = Form(""), kind: str = Form(""), channel: list[str] = Form([]), scope: str = Form("org"),
             period: str = Form("month"), amount: str = Form(""), currency: str = Form("USD"),
             thresholds: str = Form("100")) -> Response:
    verify_csrf(request, csrf_token)

    def add(conn: Connection) -> None:
        if not name.strip():
            raise AlertError("A rule needs a name.")
        rule = alert_rules.add_rule(conn, principal.org_id, name.strip(), kind, channel_names=channel,
                                    scope=scope.strip() or "org", period=period, amount=amount.strip() or None,
                                    currency=currency.strip() or "USD", thresholds=thresholds or "100")
        kind_of_scope, _, who = rule.scope.partition(":")
        where = {"scope": "customer", "customer": who} if kind_of_scope == "customer" else {"scope": rule.scope}
        audit.record(conn, principal.org_id, actor(principal), "alert_rule.created", "alert_rule", rule.name, {
            "kind": rule.kind, **where, "period": rule.period, "amount": str(rule.amount),
            "currency": rule.currency, "thresholds": list(rule.thresholds), "channels": list(rule.channels)})

    return _change(request, principal, "rule_added", add)


@router.post("/settings/alerts/rules/{rule_id}/remove")
def remove_rule(request: Request, rule_id: int, principal: Principal = Depends(admin_page),
                csrf_token: str = Form("")) -> Response:
    verify_csrf(request, csrf_token)

    def remove(conn: Connection) -> None:
        found = [r for r in alert_rules.rules(conn, principal.org_id) if r.id == rule_id]
        if not found:
            raise PageError(404, "error.not_found")
        alert_rules.remove_rule(conn, principal.org_id, found[0].name)
        audit.record(conn, principal.org_id, actor(principal), "alert_rule.removed", "alert_rule", found[0].name)

    return _change(request, principal, "rule_removed", remove)
