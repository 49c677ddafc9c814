"""Benchmark: the organisation's blended rate per tier against the market index, and its percentile
among opted-in peers (or "not enough peers"); admins switch the anonymous opt-in here."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from tallybook.analytics import benchmark as bm
from tallybook.analytics.pricers import blended_list_price
from tallybook.web.auth import Principal, page_principal, verify_csrf
from tallybook.web.pages.base import Column, PageError, Table, month_window, respond, today, translator

router = APIRouter()

COLUMNS = (
    Column("tier"), Column("org_blended_rate_mtok", "rate"), Column("index_blended_mtok", "rate"),
    Column("vs_index_pct", "pct"), Column("peers_label", label="col.peers"), Column("peer_contributors", "int"),
    Column("p10", "rate"), Column("p50", "rate"), Column("p90", "rate"), Column("org_percentile", "int"),
    Column("org_models"), Column("currency"), Column("origin"),
)


def _month(request: Request) -> str:
    month = request.query_params.get("month") or f"{month_window(f'{today():%Y-%m}').start - timedelta(days=1):%Y-%m}"
    try:
        month_window(month)
    except ValueError:
        raise PageError(400, "error.bad_date") from None
    return month


def benchmark_tables(conn: Any, org_id: int, month: str, tr: Any) -> list[Table]:
    rows = bm.benchmark_report(conn, org_id, month, blended_list_price)
    for row in rows:
        row["peers_label"] = tr("benchmark.peers_ok") if row["peers"] == "ok" else tr(
            "benchmark.not_enough", k=bm.K_ANONYMITY)
    return [Table("tiers", "benchmark.tiers", COLUMNS, rows, note="benchmark.note")]


@router.get("/benchmark")
def benchmark(request: Request, principal: Principal = Depends(page_principal)) -> Response:
    month = _month(request)
    with request.app.state.engine.connect() as conn:
        tables = benchmark_tables(conn, principal.org_id, month, translator(request))
        opted_in = bm.is_opted_in(conn, principal.org_id)
    return respond(request, principal, "benchmark.html", tables, title="benchmark.title", month=month,
                   opted_in=opted_in, k=bm.K_ANONYMITY)


@router.post("/benchmark/opt-in")
def opt_in(request: Request, principal: Principal = Depends(page_principal), csrf_token: str = Form(""),
           opted_in: str = Form(""), next: str = Form("/benchmark")) -> Response:
    verify_csrf(request, csrf_token)
    if not principal.can("admin"):
        raise PageError(403, "error.forbidden")
    with request.app.state.engine.begin() as conn:
        bm.set_opt_in(conn, principal.org_id, opted_in == "true")
    target = next if next.startswith("/") and not next.startswith("//") else "/benchmark"
    return RedirectResponse(target, status_code=303)
