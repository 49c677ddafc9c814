"""Optimisation: what caching, batching, a cheaper model mix and a spend commitment would save, in
dollars, each with the assumption behind it (the assumptions are the form's fields)."""

from __future__ import annotations

from datetime import timedelta
from decimal import InvalidOperation
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tallybook.analytics.optimize import advise_commitment, parse_schedule, savings
from tallybook.analytics.pricers import unit_prices
from tallybook.analytics.rollups import ReportQuery
from tallybook.analytics.trends import trend
from tallybook.web.auth import Principal, page_principal
from tallybook.web.pages.base import (
    Column,
    PageError,
    Table,
    decimal_param,
    month_window,
    respond,
    today,
    translator,
    window_from,
)

router = APIRouter()

DEFAULT_SCHEDULE = "5000:0.05,20000:0.10,50000:0.15"
SAVING_COLUMNS = (Column("kind_label", label="col.kind"), Column("provider"), Column("model"), Column("current"),
                  Column("monthly_saving", "money"), Column("window_saving", "money"), Column("assumption"),
                  Column("currency"), Column("origin"))
COMMIT_COLUMNS = (Column("commit_per_month", "money"), Column("discount", "share"),
                  Column("cost_with_commitment", "money"), Column("on_demand_cost", "money"),
                  Column("saving", "money"), Column("break_even_utilisation", "share"), Column("months", "int"),
                  Column("currency"), Column("origin"))
MONTH_COLUMNS = (Column("period"), Column("amount", "money"), Column("currency"), Column("origin"))


def optimise_tables(conn: Any, request: Request, principal: Principal, lang_t: Any) -> tuple[list[Table], dict[str, Any]]:
    window = window_from(request, default_days=30)
    assumptions = {
        "cache_target": decimal_param(request, "cache_target", "0.5"),
        "batch_share": decimal_param(request, "batch_share", "0.2"),
        "substitute_share": decimal_param(request, "substitute_share", "0.3"),
    }
    months = int(decimal_param(request, "months", "3", low="1", high="24"))
    schedule_text = request.query_params.get("schedule") or DEFAULT_SCHEDULE
    try:
        schedule = parse_schedule(schedule_text)
    except (InvalidOperation, ValueError):
        raise PageError(400, "error.bad_schedule") from None
    query = ReportQuery(org_id=principal.org_id, start=window.start, end=window.end)
    found = sorted(savings(conn, query, unit_prices, **assumptions), key=lambda o: -o.monthly_saving)
    rows = [{**o.as_dict(), "kind_label": lang_t(f"kind.{o.kind}")} for o in found]
    # the last `months` full months of reported spend, the same figures `report commitments` reads
    end = month_window(f"{today():%Y-%m}").start
    start = end
    for _ in range(months):
        start = month_window(f"{start - timedelta(days=1):%Y-%m}").start
    monthly = [r.as_dict() for r in trend(conn, ReportQuery(org_id=principal.org_id, start=start, end=end), "month")
               if r.currency == "USD"]
    advice = advise_commitment([r["amount"] for r in monthly], schedule).as_dict()
    tables = [
        Table("savings", "optimise.savings", SAVING_COLUMNS, rows, note="optimise.savings_note",
              empty="optimise.none"),
        Table("commitment", "optimise.commitment", COMMIT_COLUMNS, [advice], note="optimise.commitment_note"),
        Table("months", "optimise.months", MONTH_COLUMNS, monthly, note="note.reported"),
    ]
    return tables, {"window": window, "assumptions": assumptions, "months": months, "schedule": schedule_text}


@router.get("/optimise")
def optimise(request: Request, principal: Principal = Depends(page_principal)) -> Response:
    with request.app.state.engine.connect() as conn:
        tables, extra = optimise_tables(conn, request, principal, translator(request))
    return respond(request, principal, "optimise.html", tables, title="optimise.title", **extra)
