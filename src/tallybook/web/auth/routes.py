"""The sign-in routes behind W3's forms: POST /login, /logout, /setup (first run) and /orgs/switch.

Forms post `csrf_token`; on a refusal the browser is sent back to the form with `?error=<code>`
(codes: invalid, password_too_short, invalid_email, invalid_org, setup_done), except a throttled
login, which is answered 429 with Retry-After.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from tallybook.errors import AccessError, InvalidCredentials
from tallybook.web.auth.deps import (
    client_ip,
    cookie_secure,
    current_session,
    engine_of,
    settings_of,
    verify_csrf,
)
from tallybook.web.auth.login import authenticate
from tallybook.web.auth.passwords import MIN_LENGTH
from tallybook.web.auth.sessions import COOKIE, end_session, start_session, switch_org
from tallybook.web.auth.users import create_first_admin, normalise_email, org_id_for, setup_needed

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path on this site: never //host or a scheme, so ?next= cannot send a user elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def back_to(form: str, error: str, next_path: str | None = None) -> RedirectResponse:
    query = {"error": error} | ({"next": next_path} if next_path and next_path != "/" else {})
    return RedirectResponse(f"/{form}?{urlencode(query)}", status_code=303)


def signed_in(request: Request, cookie_value: str, target: str) -> RedirectResponse:
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, cookie_value, max_age=settings_of(request).session_days * 86400, httponly=True,
                        samesite="lax", secure=cookie_secure(request), path="/")
    return response


@router.post("/login")
def login(request: Request, email: str = Form(""), password: str = Form(""), csrf_token: str = Form(""),
          next: str = Form("/")) -> Response:
    verify_csrf(request, csrf_token)
    settings = settings_of(request)
    with engine_of(request).connect() as conn:
        try:
            user_id = authenticate(conn, email, password, client_ip(request),
                                   max_attempts=settings.login_max_attempts,
                                   window_seconds=settings.login_window_seconds)
        except InvalidCredentials:
            return back_to("login", "invalid", safe_next(next))
        finally:
            conn.commit()  # a failed attempt is counted even though authenticate raised
        value = start_session(conn, user_id, days=settings.session_days)
        conn.commit()
    return signed_in(request, value, safe_next(next))


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form("")) -> Response:
    verify_csrf(request, csrf_token)
    value = request.cookies.get(COOKIE)
    if value:
        with engine_of(request).begin() as conn:
            end_session(conn, value)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.post("/setup")
def setup(request: Request, email: str = Form(""), password: str = Form(""), org: str = Form("default"),
          csrf_token: str = Form("")) -> Response:
    """First run: create the first admin and sign them in. Refused once any user exists."""
    verify_csrf(request, csrf_token)
    with engine_of(request).begin() as conn:
        if not setup_needed(conn):
            return back_to("login", "setup_done")
        try:
            normalise_email(email)
        except AccessError:
            return back_to("setup", "invalid_email")
        if len(password) < MIN_LENGTH:
            return back_to("setup", "password_too_short")
        try:
            user_id, org_id = create_first_admin(conn, email, password, org.strip() or "default")
        except AccessError:
            return back_to("setup", "invalid_org")
        value = start_session(conn, user_id, org_id=org_id, days=settings_of(request).session_days)
    return signed_in(request, value, "/")


@router.post("/orgs/switch")
def orgs_switch(request: Request, org: str = Form(...), csrf_token: str = Form(""), next: str = Form("/")) -> Response:
    """Make another of the user's organisations the session's current one (404 if not a member)."""
    verify_csrf(request, csrf_token)
    value = request.cookies.get(COOKIE)
    if not value or current_session(request) is None:
        return RedirectResponse("/login", status_code=303)
    with engine_of(request).begin() as conn:
        switch_org(conn, value, org_id_for(conn, org))
    return RedirectResponse(safe_next(next), status_code=303)
