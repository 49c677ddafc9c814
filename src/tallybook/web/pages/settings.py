"""Settings (admins only; others get 403): members and roles, API tokens, pricing rules, the sync
schedule and the benchmark opt-in. Every change is a CSRF-checked form post to an auth service function,
answered by a redirect back (a new token's secret is shown once instead, on the answer itself)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Connection

from tallybook.analytics import benchmark as bm
from tallybook.errors import AccessError, PricingError
from tallybook.ledger.store import utcnow
from tallybook.pricing.rulefile import build_rule, parse_pairs
from tallybook.pricing.rules import dec, load_rules, save_audited
from tallybook.web import auth
from tallybook.web.auth import Principal, require_page, verify_csrf
from tallybook.web.auth.users import find_user_id
from tallybook.web.pages.base import render, translator
from tallybook.web.scheduler import effective_schedule, own_schedule, set_schedule

router = APIRouter(include_in_schema=False)
admin_page = require_page("admin")
DONE = ("member_added", "role_changed", "member_removed", "token_revoked", "schedule_changed", "rule_saved",
        "rule_unchanged")
RULE_KINDS = ("discount", "markup", "negotiated", "commitment")


def _rule_row(rule: Any) -> dict[str, Any]:
    terms = ", ".join(f"{k} {dec(v)}" for k, v in rule.rates.items()) if rule.rates else (
        dec(rule.fraction) if rule.fraction is not None else
        "; ".join(f"{dec(tier.min_spend)}:{dec(tier.discount)}" for tier in rule.tiers))
    return {"rule_id": rule.rule_id, "version": rule.version, "kind": rule.kind, "provider": rule.provider or "*",
            "model": rule.model_pattern, "terms": terms, "currency": rule.currency,
            "effective_from": f"{rule.effective_from:%Y-%m-%d}",
            "effective_to": f"{rule.effective_to:%Y-%m-%d}" if rule.effective_to else "", "note": rule.note}


def _page(request: Request, principal: Principal, *, status: int = 200, error: str | None = None,
          new_token: str | None = None) -> Response:
    with request.app.state.engine.connect() as conn:
        members = auth.list_members(conn, principal.org_id)
        tokens = auth.list_tokens(conn, principal.org_id)
        rules = [_rule_row(r) for r in load_rules(conn, principal.org_id, current_only=True)]
        opted_in = bm.is_opted_in(conn, principal.org_id)
        own = own_schedule(conn, principal.org_id)
    at = effective_schedule(principal.org_id, own, request.app.state.settings)
    done = request.query_params.get("done")
    return render(request, principal, "settings.html", status=status, title="settings.title", members=members,
                  tokens=tokens, rules=rules, opted_in=opted_in, roles=auth.ROLES, error=error,
                  new_token=new_token, done=f"settings.done_{done}" if done in DONE else None,
                  schedule=f"{at:%H:%M}" if at else None, own_schedule=own, rule_kinds=RULE_KINDS,
                  today=f"{utcnow():%Y-%m-%d}",
                  default_schedule=request.app.state.settings.sync_schedule)


def _change(request: Request, principal: Principal, done: str, change: Callable[[Connection], object]) -> Response:
    """Run one auth service call in a transaction; back to the page with `done`, or the refusal shown."""
    try:
        with request.app.state.engine.begin() as conn:
            change(conn)
    except AccessError as exc:
        return _page(request, principal, status=exc.status, error=str(exc))
    return RedirectResponse(f"/settings?done={done}", status_code=303)


@router.get("/settings")
def settings_page(request: Request, principal: Principal = Depends(admin_page)) -> Response:
    return _page(request, principal)


@router.post("/settings/members")
def add_member(request: Request, principal: Principal = Depends(admin_page), csrf_token: str = Form(""),
               email: str = Form(""), role: str = Form("viewer"), password: str = Form("")) -> Response:
    verify_csrf(request, csrf_token)

    def add(conn: Connection) -> None:
        auth.add_member(conn, principal.org_id, find_user_id(conn, email) or auth.create_user(
            conn, email, password or None), role)

    return _change(request, principal, "member_added", add)


@router.post("/settings/members/{user_id}/role")
def change_role(request: Request, user_id: int, principal: Principal = Depends(admin_page),
                csrf_token: str = Form(""), role: str = Form("")) -> Response:
    verify_csrf(request, csrf_token)
    return _change(request, principal, "role_changed", lambda c: auth.set_role(c, principal.org_id, user_id, role))


@router.post("/settings/members/{user_id}/remove")
def remove_member(request: Request, user_id: int, principal: Principal = Depends(admin_page),
                  csrf_token: str = Form("")) -> Response:
    verify_csrf(request, csrf_token)
    return _change(request, principal, "member_removed", lambda c: auth.remove_member(c, principal.org_id, user_id))


@router.post("/settings/tokens")
def create_token(request: Request, principal: Principal = Depends(admin_page), csrf_token: str = Form(""),
                 name: str = Form(""), write: str = Form("")) -> Response:
    verify_csrf(request, csrf_token)
    scopes = ("read", "write") if write == "1" else ("read",)
    try:
        with request.app.state.engine.begin() as conn:
            _, plaintext = auth.create_token(conn, principal.org_id, principal.user_id, name, scopes)
    except AccessError as exc:
        return _page(request, principal, status=exc.status, error=str(exc))
    return _page(request, principal, new_token=plaintext)


@router.post("/settings/schedule")
def change_schedule(request: Request, principal: Principal = Depends(admin_page), csrf_token: str = Form(""),
                    schedule: str = Form("", max_length=40)) -> Response:
    """The organisation's own sync schedule (daily@HH:MM UTC or off); empty: the deployment's again."""
    verify_csrf(request, csrf_token)
    try:
        with request.app.state.engine.begin() as conn:
            set_schedule(conn, principal.org_id, schedule, actor=principal.actor)
    except ValueError:
        return _page(request, principal, status=400, error=translator(request)("settings.bad_schedule"))
    return RedirectResponse("/settings?done=schedule_changed", status_code=303)


@router.post("/settings/rules")
def save_rule(request: Request, principal: Principal = Depends(admin_page), csrf_token: str = Form(""),
              rule_id: str = Form("", max_length=100), provider: str = Form("", max_length=40),
              model: str = Form("*", max_length=200), kind: str = Form("discount"),
              figure: str = Form("", max_length=400), currency: str = Form("USD", max_length=3),
              effective_from: str = Form("", max_length=10), note: str = Form("", max_length=1000)) -> Response:
    """A pricing rule, or a new version of one, as `tallybook pricing set` makes it: a discount or markup
    ("10%" or "0.10"), negotiated rates per 1M tokens ("input_mtok=2.4, output_mtok=9.6"), or commitment
    tiers, a discount from a monthly spend on ("10000:5%, 50000:8%")."""
    verify_csrf(request, csrf_token)
    values: dict[str, Any] = {"provider": provider.strip() or None, "model": model.strip() or "*",
                              "currency": currency.strip().upper() or "USD", "effective_from": effective_from,
                              "note": note.strip() or None}
    try:
        if kind not in RULE_KINDS:
            raise PricingError(f"Choose a kind of rule: {', '.join(RULE_KINDS)}.")
        if kind == "negotiated":
            values["rates"] = dict(parse_pairs(figure, "=", "input_mtok=2.4, output_mtok=9.6"))
        elif kind == "commitment":
            values["tiers"] = [{"min_spend": spend, "discount": off}
                               for spend, off in parse_pairs(figure, ":", "10000:5%, 50000:8%")]
        else:
            values[kind] = figure.strip()
        rule = build_rule(rule_id.strip(), values)
        with request.app.state.engine.begin() as conn:
            changes = save_audited(conn, principal.org_id, [rule], source="web", actor=principal.actor)
    except PricingError as exc:
        return _page(request, principal, status=400, error=str(exc))
    done = "rule_unchanged" if all(c.action == "unchanged" for c in changes) else "rule_saved"
    return RedirectResponse(f"/settings?done={done}", status_code=303)


@router.post("/settings/tokens/{token_id}/revoke")
def revoke_token(request: Request, token_id: int, principal: Principal = Depends(admin_page),
                 csrf_token: str = Form("")) -> Response:
    verify_csrf(request, csrf_token)
    return _change(request, principal, "token_revoked", lambda c: auth.revoke_token(c, principal.org_id, token_id))
