"""Sign-in and first-run pages (the forms post to the auth routes: POST /login, /setup), and the
language switch. Refusals come back as ?error=<code>, shown from the catalog's `login.error_<code>`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from tallybook.web import i18n
from tallybook.web.auth import setup_needed
from tallybook.web.auth.deps import current_session
from tallybook.web.auth.passwords import MIN_LENGTH
from tallybook.web.auth.routes import safe_next
from tallybook.web.pages.base import render, url

router = APIRouter(include_in_schema=False)

ERRORS = ("invalid", "password_too_short", "invalid_email", "invalid_org", "setup_done", "csrf", "throttled",
          "sso_failed", "sso_email_unverified", "sso_unknown_user")


def _error(request: Request) -> str | None:
    code = request.query_params.get("error")
    return f"login.error_{code}" if code in ERRORS else None


@router.get("/login")
def login_page(request: Request) -> Response:
    target = safe_next(request.query_params.get("next"))
    if current_session(request) is not None:
        return RedirectResponse(target, status_code=303)
    with request.app.state.engine.connect() as conn:
        if setup_needed(conn):
            return RedirectResponse("/setup", status_code=303)
    return render(request, None, "login.html", title="login.title", error=_error(request), next=target,
                  sso=url("/auth/oidc/login", {"next": target}) if request.app.state.settings.oidc_issuer else None)


@router.get("/setup")
def setup_page(request: Request) -> Response:
    with request.app.state.engine.connect() as conn:
        if not setup_needed(conn):
            return RedirectResponse("/login", status_code=303)
    return render(request, None, "setup.html", title="setup.title", error=_error(request), min_length=MIN_LENGTH)


@router.get("/lang")
def switch_language(request: Request) -> Response:
    """?set=fr&next=/spend: remember the language for a year (a preference, not a secret)."""
    lang = request.query_params.get("set", "")
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    if lang in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
    return response
