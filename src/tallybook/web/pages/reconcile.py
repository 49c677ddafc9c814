"""Reconciliation: per day and model, our estimate against the vendor's reported cost, and the gateway's
metered tokens against the vendor's reported tokens; rows over the threshold are flagged."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tallybook.analytics.pricers import NegotiatedPricer
from tallybook.analytics.reconcile import DEFAULT_THRESHOLD, reconcile
from tallybook.analytics.rollups import ReportQuery
from tallybook.pricing.rules import load_rules
from tallybook.web.auth import Principal, page_principal
from tallybook.web.pages.base import Column, Table, decimal_param, respond, window_from

router = APIRouter()

COLUMNS = (
    Column("day"), Column("provider"), Column("model"), Column("reported_cost", "money"),
    Column("estimated_cost", "money"), Column("cost_delta", "money"), Column("cost_delta_pct", "pct"),
    Column("reported_tokens", "int"), Column("metered_tokens", "int"), Column("token_delta_pct", "pct"),
    Column("flagged", "bool"), Column("reason"), Column("currency"),
)


@router.get("/reconcile")
def reconciliation(request: Request, principal: Principal = Depends(page_principal)) -> Response:
    window = window_from(request, default_days=7)
    threshold = decimal_param(request, "threshold", str(DEFAULT_THRESHOLD))
    flagged_only = request.query_params.get("flagged") == "1"
    query = ReportQuery(org_id=principal.org_id, start=window.start, end=window.end)
    with request.app.state.engine.connect() as conn:
        pricer = NegotiatedPricer(load_rules(conn, principal.org_id))  # list price unless a rule overrides it
        rows = [r.as_dict(threshold) for r in reconcile(conn, query, pricer)]
    flagged = sum(1 for r in rows if r["flagged"])
    if flagged_only:
        rows = [r for r in rows if r["flagged"]]
    table = Table("days", "reconcile.days", COLUMNS, rows, note="reconcile.note", flag="flagged",
                  empty="reconcile.none")
    return respond(request, principal, "reconcile.html", [table], title="reconcile.title", window=window,
                   threshold=threshold, flagged_only=flagged_only, flagged=flagged, total=len(rows))
