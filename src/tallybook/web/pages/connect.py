"""Connect provider: choose a provider, paste its admin key, see the key checked and the permissions
found, then watch the first sync (a background job of `tallybook.web.jobs`) until it finishes.

The key travels once, in the POST body; it is sealed by the vault before it is stored, and no page,
log line or redirect ever carries it (the redirect after a successful check names the connection).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from tallybook.cli.connect import secret_context
from tallybook.connectors.registry import PROVIDERS, build_connector
from tallybook.connectors.sync import midnight
from tallybook.errors import AccessError, TallybookError
from tallybook.ledger import store
from tallybook.security.redaction import fingerprint, redact
from tallybook.security.vault import Vault
from tallybook.web import i18n, jobs
from tallybook.web.auth import Principal, require_page, verify_csrf
from tallybook.web.pages.base import PageError, lang_of, render, translator

router = APIRouter(include_in_schema=False)
admin_page = require_page("admin")


def _form(request: Request, principal: Principal, *, status: int = 200, error: str | None = None,
          values: dict[str, str] | None = None) -> Response:
    with request.app.state.engine.connect() as conn:
        connections = store.list_connections(conn, principal.org_id)
    return render(request, principal, "connect.html", status=status, title="connect.title", error=error,
                  providers=PROVIDERS, values=values or {}, connections=connections,
                  default_days=request.app.state.settings.sync_default_days)


@router.get("/connect")
def connect_page(request: Request, principal: Principal = Depends(admin_page)) -> Response:
    return _form(request, principal)


@router.post("/connect")
def connect_provider(request: Request, principal: Principal = Depends(admin_page), csrf_token: str = Form(""),
                     provider: str = Form(""), admin_key: str = Form(""), name: str = Form(""),
                     base_url: str = Form(""), days: int = Form(30)) -> Response:
    verify_csrf(request, csrf_token)
    settings = request.app.state.settings
    values = {"provider": provider, "name": name, "base_url": base_url, "days": str(days)}
    info = PROVIDERS.get(provider)
    key = admin_key.strip()
    if info is None:
        return _form(request, principal, status=400, error=translator(request)("connect.error_provider"), values=values)
    if not key:
        return _form(request, principal, status=400, error=translator(request)("connect.error_key"), values=values)
    if not 1 <= days <= 366:
        return _form(request, principal, status=400, error=translator(request)("connect.error_days"), values=values)
    hint, url = fingerprint(key), (base_url.strip() or info.base_url).rstrip("/")
    try:
        connector = build_connector(provider, key, base_url=url, key_hint=hint, settings=settings)
        try:
            check = connector.check_key()
        finally:
            connector.close()
    except TallybookError as exc:  # the connector's one-line message, with any secret redacted
        message = translator(request)("connect.error_check", detail=redact(str(exc)))
        return _form(request, principal, status=400, error=message, values=values)
    conn_name = name.strip() or provider
    with request.app.state.engine.begin() as conn:
        sealed = Vault.from_settings(settings).seal(key, context=secret_context(principal.org_id, conn_name))
        connection_id, rotated = store.save_connection(
            conn, org_id=principal.org_id, name=conn_name, provider=provider, base_url=url, secret_sealed=sealed,
            key_fingerprint=hint)
    now = store.utcnow()
    run_id = jobs.start_sync(request.app.state.engine, principal.org_id, connection_id,
                             midnight(now) - timedelta(days=days - 1), now, settings=settings)
    query = urlencode({"connection": conn_name, "key": hint, "permissions": ",".join(check.permissions),
                       "rotated": "1" if rotated else ""})
    return RedirectResponse(f"/connect/runs/{run_id}?{query}", status_code=303)


@router.post("/connect/sync")
def sync_now(request: Request, principal: Principal = Depends(admin_page), csrf_token: str = Form("")) -> Response:
    """Sync every connection of the organisation now, each from where its last sync ended."""
    verify_csrf(request, csrf_token)
    try:
        job_id = jobs.start_sync(request.app.state.engine, principal.org_id, settings=request.app.state.settings)
    except AccessError:
        return _form(request, principal, status=400, error=translator(request)("connect.error_nothing"))
    return RedirectResponse(f"/connect/runs/{job_id}?sync=all", status_code=303)


def _status(request: Request, principal: Principal, job_id: int) -> dict[str, object]:
    """The job's progress for the page and its poll: steps done of all its runs, rows written, a message."""
    with request.app.state.engine.connect() as conn:
        job = jobs.sync_status(conn, principal.org_id, job_id)
    if job is None:
        raise PageError(404, "error.not_found")
    tr, lang = translator(request), lang_of(request)
    done = sum(r.tasks_done for r in job.runs)
    total = sum(r.tasks_total for r in job.runs)
    rows = sum(r.rows for r in job.runs)
    finished = job.status not in ("queued", "running")
    if job.status == "succeeded":
        message = tr("connect.sync_done", rows=i18n.number(rows, lang))
    elif finished:
        message = tr("connect.sync_failed", detail=redact(job.error or job.status))
    else:
        message = tr("connect.sync_running", done=done, total=total or "?", rows=i18n.number(rows, lang))
    return {"run_id": job_id, "state": job.status, "finished": finished, "done": done, "total": total,
            "rows": rows, "message": message}


@router.get("/connect/runs/{run_id}")
def sync_progress(request: Request, run_id: int, principal: Principal = Depends(admin_page)) -> Response:
    q = request.query_params
    return render(request, principal, "connect_progress.html", title="connect.progress_title",
                  run=_status(request, principal, run_id), connection=q.get("connection", ""),
                  key_hint=q.get("key", ""), permissions=[p for p in q.get("permissions", "").split(",") if p],
                  rotated=bool(q.get("rotated")), sync_all=q.get("sync") == "all")


@router.get("/connect/runs/{run_id}/status")
def sync_progress_json(request: Request, run_id: int, principal: Principal = Depends(admin_page)) -> Response:
    return JSONResponse(_status(request, principal, run_id))


