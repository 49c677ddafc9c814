"""FastAPI dependencies: who is asking (`api_principal`, `page_principal`), may they (`require`,
`require_page`), and CSRF for HTML forms (`csrf_token`, `verify_csrf`).

API requests authenticate with `Authorization: Bearer tbt_...` or the session cookie; a session's
unsafe request (POST, PUT, PATCH, DELETE) must also send its CSRF token in `X-CSRF-Token`. Pages
authenticate with the session cookie only. Before any session exists (sign-in and setup forms) the
CSRF token is a double-submit cookie.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable

from fastapi import Request
from sqlalchemy import Engine

from tallybook.config import Settings
from tallybook.errors import InvalidCredentials
from tallybook.web.auth.roles import Principal, Role
from tallybook.web.auth.sessions import COOKIE, Session, load_session
from tallybook.web.auth.tokens import principal_for_token
from tallybook.web.errors import ApiError, LoginRequired, forbidden, unauthenticated

CSRF_COOKIE = "tallybook_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def current_session(request: Request) -> Session | None:
    """The request's live session (looked up once per request), or None."""
    if not hasattr(request.state, "tallybook_session"):
        value = request.cookies.get(COOKIE)
        found = None
        if value:
            with engine_of(request).begin() as conn:
                found = load_session(conn, value, days=settings_of(request).session_days)
        request.state.tallybook_session = found
    return request.state.tallybook_session


def api_principal(request: Request) -> Principal:
    """Bearer API token or session cookie; 401 `unauthenticated` otherwise."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated("The Authorization header must be: Bearer tbt_...")
        try:
            with engine_of(request).begin() as conn:
                principal = principal_for_token(conn, token.strip())
        except InvalidCredentials as exc:
            raise unauthenticated(str(exc)) from None
        if request.method not in SAFE_METHODS and "write" not in principal.scopes:
            raise ApiError(403, "insufficient_scope", "This API token is read-only; create one with the write scope.")
        return principal
    session = current_session(request)
    if session is None:
        raise unauthenticated()
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise ApiError(403, "csrf", f"A signed-in browser request must send its CSRF token in {CSRF_HEADER}.")
    return session.principal


def require(role: Role) -> Callable[[Request], Principal]:
    """Dependency: the API principal, with at least `role` (403 `forbidden` otherwise)."""

    def dependency(request: Request) -> Principal:
        principal = api_principal(request)
        if not principal.can(role):
            raise forbidden(f"This needs the {role} role; you are {principal.role} in {principal.org_slug}.")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


def page_principal(request: Request) -> Principal:
    """The signed-in user of a page (session only); redirects to /login?next=... (or /setup before any user)."""
    session = current_session(request)
    if session is None:
        from tallybook.web.auth.users import setup_needed

        with engine_of(request).connect() as conn:
            first_run = setup_needed(conn)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target, setup=first_run)
    return session.principal


def require_page(role: Role) -> Callable[[Request], Principal]:
    """Dependency for pages: the signed-in user with at least `role` (403 page otherwise)."""

    def dependency(request: Request) -> Principal:
        principal = page_principal(request)
        if not principal.can(role):
            raise forbidden(f"This page needs the {role} role; you are {principal.role} in {principal.org_slug}.")
        return principal

    dependency.__name__ = f"require_page_{role}"
    return dependency


def csrf_token(request: Request) -> str:
    """The token an HTML form carries in `<input type="hidden" name="csrf_token">`."""
    session = current_session(request)
    if session is not None:
        return session.csrf_token
    value = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf_cookie", None)
    if not value:
        value = secrets.token_urlsafe(32)
        request.state.new_csrf_cookie = value  # set on the response by the app's middleware
    return value


def verify_csrf(request: Request, form_token: str | None) -> None:
    """403 `csrf` unless the form's token is the session's (or, before sign-in, the CSRF cookie's)."""
    session = current_session(request)
    expected = session.csrf_token if session is not None else request.cookies.get(CSRF_COOKIE, "")
    if not expected or not form_token or not hmac.compare_digest(form_token.encode(), expected.encode()):
        raise ApiError(403, "csrf", "The form has expired or came from another site; reload the page and try again.")


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def cookie_secure(request: Request) -> bool:
    return settings_of(request).cookie_secure or request.url.scheme == "https"
