"""Single sign-on with OpenID Connect (authlib), on when TALLYBOOK_OIDC_ISSUER, _CLIENT_ID and _CLIENT_SECRET
are set.

    GET /auth/oidc/login?next=/spend   -> the provider's authorize page (code flow, state + nonce + PKCE)
    GET /auth/oidc/callback            <- the provider; the ID token's signature, issuer, audience, expiry
                                          and nonce are checked by authlib, then a tallybook session starts

The user is found by the ID token's (issuer, subject), else by its verified email (and linked to that
subject); an unknown user joins TALLYBOOK_OIDC_DEFAULT_ORG with TALLYBOOK_OIDC_DEFAULT_ROLE when that is
set, and is refused otherwise. Refusals go back to /login?error=<code>: sso_failed, sso_email_unverified,
sso_unknown_user.
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.starlette_client import OAuth
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import Connection, select, update

from tallybook.config import Settings
from tallybook.ledger.schema_access import users
from tallybook.ledger.store import utcnow
from tallybook.web.auth.deps import engine_of, settings_of
from tallybook.web.auth.routes import back_to, safe_next, signed_in
from tallybook.web.auth.sessions import start_session
from tallybook.web.auth.users import add_member, create_user, org_id_for
from tallybook.web.errors import not_found

log = logging.getLogger("tallybook.web.sso")
router = APIRouter(include_in_schema=False)
CLIENT = "sso"


def oidc_enabled(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret)


def install(app: FastAPI, settings: Settings) -> None:
    """Register the provider on the app (create_app calls this); the routes answer 404 while SSO is off."""
    app.state.oauth = None
    if not oidc_enabled(settings):
        return
    oauth = OAuth()
    oauth.register(
        CLIENT, client_id=settings.oidc_client_id, client_secret=settings.oidc_client_secret,
        server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",  # type: ignore[union-attr]
        client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"})
    app.state.oauth = oauth


def _client(request: Request) -> Any:
    oauth = getattr(request.app.state, "oauth", None)
    if oauth is None:
        raise not_found("Single sign-on is not configured (TALLYBOOK_OIDC_ISSUER).")
    return oauth.create_client(CLIENT)


def _callback_url(request: Request) -> str:
    base = settings_of(request).web_base_url
    if base:
        return base.rstrip("/") + "/auth/oidc/callback"
    return str(request.url_for("oidc_callback"))


@router.get("/auth/oidc/login")
async def oidc_login(request: Request, next: str = "/") -> Response:
    client = _client(request)
    request.session["next"] = safe_next(next)
    try:
        return await client.authorize_redirect(request, _callback_url(request))
    except Exception as exc:  # noqa: BLE001  (authlib's HTTP client, httpx2, has its own exception tree)
        log.warning("SSO: cannot reach the provider: %s", type(exc).__name__)
        return back_to("login", "sso_failed")


@router.get("/auth/oidc/callback", name="oidc_callback")
async def oidc_callback(request: Request) -> Response:
    client = _client(request)
    try:
        token = await client.authorize_access_token(request)
    except (OAuthError, ValueError, KeyError) as exc:
        log.warning("SSO sign-in refused: %s", type(exc).__name__)
        return back_to("login", "sso_failed")
    claims = token.get("userinfo") or {}
    issuer, subject, email = claims.get("iss"), claims.get("sub"), (claims.get("email") or "").strip().lower()
    if not issuer or not subject:
        return back_to("login", "sso_failed")
    if email and claims.get("email_verified") is False:
        return back_to("login", "sso_email_unverified")
    settings = settings_of(request)
    with engine_of(request).begin() as conn:
        user_id = _user_for(conn, f"{issuer}|{subject}", email, settings)
        if user_id is None:
            return back_to("login", "sso_unknown_user")
        conn.execute(update(users).where(users.c.id == user_id).values(last_login_at=utcnow()))
        value = start_session(conn, user_id, days=settings.session_days)
    return signed_in(request, value, safe_next(request.session.pop("next", "/")))


def _user_for(conn: Connection, oidc_subject: str, email: str, settings: Settings) -> int | None:
    u = users.c
    found = conn.execute(select(u.id, u.status).where(u.oidc_subject == oidc_subject)).first()
    if found is None and email:
        found = conn.execute(select(u.id, u.status).where(u.email == email, u.oidc_subject.is_(None))).first()
        if found is not None:
            conn.execute(update(users).where(u.id == found.id).values(oidc_subject=oidc_subject))
    if found is not None:
        return int(found.id) if found.status == "active" else None
    if not settings.oidc_default_org or not email:
        return None
    user_id = create_user(conn, email, None)
    conn.execute(update(users).where(u.id == user_id).values(oidc_subject=oidc_subject))
    add_member(conn, org_id_for(conn, settings.oidc_default_org, create=True), user_id, settings.oidc_default_role,
               actor="system:sso")
    return user_id
