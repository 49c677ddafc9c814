"""The server-rendered dashboard: one module per page, Jinja templates in ../templates, strings in ../i18n.

Pages read their figures from `tallybook.analytics` (the functions the CLI calls) and never recompute
them; every table is also a CSV download (?download=<table>) and the page's tables are JSON (?format=json).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import SQLAlchemyError

from tallybook.web import i18n
from tallybook.web.auth.deps import current_session
from tallybook.web.pages import (
    alerts,
    audit,
    benchmark,
    billing,
    connect,
    login,
    optimise,
    overview,
    reconcile,
    report,
    settings,
    spend,
)
from tallybook.web.pages.base import lang_of, render

router = APIRouter(include_in_schema=False)
for page in (login, overview, spend, optimise, benchmark, reconcile, connect, settings, report, alerts, audit,
             billing):
    router.include_router(page.router)


def render_error(request: Request, *, status: int, code: str, message: str) -> HTMLResponse:
    """The app's error page: the catalog's `error.<code>` in the user's language, else the message."""
    try:
        session = current_session(request)
    except SQLAlchemyError:  # an error page must render even when the ledger cannot be read
        session = None
    key = f"error.{code}"
    text = i18n.t(key, lang_of(request)) if i18n.has(key) else message
    return render(request, session.principal if session else None, "error.html", status=status,
                  title=f"error.title_{status}" if i18n.has(f"error.title_{status}") else "error.title",
                  message=text)
