"""The web app factory: REST API, dashboard pages, sign-in routes, static files, error rendering.

    uvicorn --factory tallybook.web.app:create_app      (what `tallybook serve` runs)
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from tallybook.config import Settings, get_settings
from tallybook.errors import AccessError, LoginThrottled
from tallybook.ledger.db import open_ledger
from tallybook.security.vault import Vault
from tallybook.web.auth.deps import CSRF_COOKIE, cookie_secure
from tallybook.web.auth.sessions import COOKIE
from tallybook.web.errors import ApiError, LoginRequired

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("tallybook.web")


def create_app(settings: Settings | None = None, *, engine: sa.Engine | None = None) -> FastAPI:
    """The dashboard + REST API app; opens (and migrates) the ledger of `settings` unless given `engine`."""
    settings = settings or get_settings()
    app = FastAPI(title="tallybook", summary="The ledger of your organisation's AI spend.",
                  openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs", redoc_url=None)
    owns_engine = engine is None
    app.state.settings = settings
    app.state.engine = engine if engine is not None else open_ledger(settings.database_url)
    if owns_engine:
        app.router.add_event_handler("shutdown", app.state.engine.dispose)

    from tallybook.billing import routes as billing_routes
    from tallybook.web import api, pages
    from tallybook.web.auth import oidc
    from tallybook.web.auth import routes as auth_routes

    app.include_router(api.router)
    app.include_router(billing_routes.router)  # POST /webhooks/stripe: the signature is its auth
    app.include_router(auth_routes.router)
    app.include_router(oidc.router)
    oidc.install(app, settings)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Only the SSO round trip keeps state in this signed cookie (state, nonce); sessions live in the ledger.
    app.add_middleware(SessionMiddleware, secret_key=Vault.from_settings(settings).derive_key("web-oidc").hex(),
                       session_cookie="tallybook_sso", max_age=600, same_site="lax",
                       https_only=settings.cookie_secure)
    _install_error_handlers(app)

    @app.middleware("http")
    async def set_cookies(request: Request, call_next: Any) -> Response:
        """The pre-sign-in CSRF cookie when a form needed one; a used session's cookie lives on as it does."""
        response: Response = await call_next(request)
        value = getattr(request.state, "new_csrf_cookie", None)
        if value:
            response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="lax", secure=cookie_secure(request),
                                path="/")
        session = getattr(request.state, "tallybook_session", None)
        already = any(h.startswith(f"{COOKIE}=") for h in response.headers.getlist("set-cookie"))
        if session is not None and session.extended and not already:
            response.set_cookie(COOKIE, request.cookies[COOKIE], max_age=settings.session_days * 86400,
                                httponly=True, samesite="lax", secure=cookie_secure(request), path="/")
        return response

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        with app.state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"status": "ok"}

    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def error_response(request: Request, status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    """JSON `{"error": {...}}` for the API; for pages W3's `pages.render_error` when it exists, else plain HTML."""
    if _wants_json(request):
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
    from tallybook.web import pages

    render = getattr(pages, "render_error", None)
    if render is not None:
        response: Response = render(request, status=status, code=code, message=message)
        response.headers.update(headers or {})
        return response
    body = f"<!doctype html><html lang=en><title>{status}</title><main><h1>{status}</h1><p>{html.escape(message)}</p>" \
           f"<p><a href=\"/\">tallybook</a></p></main></html>"
    return HTMLResponse(body, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(exc.location, status_code=303)

    @app.exception_handler(AccessError)
    async def access_error(request: Request, exc: AccessError) -> Response:
        codes = {400: "invalid", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 409: "conflict",
                 429: "throttled"}
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, LoginThrottled) else None
        return error_response(request, exc.status, codes.get(exc.status, "error"), str(exc), headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(request, exc.status_code, codes.get(exc.status_code, "error"), str(exc.detail),
                              dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(request, 422, "invalid_request", problems)
