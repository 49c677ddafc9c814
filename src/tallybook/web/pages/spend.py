"""Spend explorer: spend per day, week or month, broken down by one dimension, filtered, with drill-down.

Spend (vendor-reported) is broken down by the cost dimensions: provider, model, project, key. Usage
dimensions that vendors do not price separately (user; and customer, feature from the gateway) get
their tokens instead: the ledger holds no reported cost for them, and the page does not invent one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Engine

from tallybook.analytics.rollups import ReportQuery, cost_report, usage_report
from tallybook.analytics.trends import trend
from tallybook.web.auth import Principal, page_principal
from tallybook.web.pages.base import (
    Column,
    PageError,
    Table,
    answers,
    chart_series,
    respond,
    url,
    window_from,
)

router = APIRouter()

PERIODS = ("day", "week", "month")
COST_DIMENSIONS = ("provider", "model", "project", "api_key")
USAGE_DIMENSIONS = ("user", "customer", "feature")
DIMENSIONS = (*COST_DIMENSIONS, *USAGE_DIMENSIONS)
FILTERS = ("provider", "model", "project", "api_key")
DRILL = {"provider": "model", "model": "project", "project": "api_key"}
MAX_SERIES = 12  # the trend of at most this many groups; more are in the breakdown
TOKEN_COLUMNS = (Column("input_tokens", "int"), Column("cache_read_tokens", "int"),
                 Column("cache_write_tokens", "int"), Column("output_tokens", "int"), Column("requests", "int"))


def _label(row: dict[str, Any], group: str) -> str:
    value = row.get(group)
    name = row.get(f"{group}_name")
    shown = "–" if value is None else str(value)
    return f"{name} ({shown})" if name and name != value else shown


def explorer_tables(engine: Engine, request: Request, principal: Principal) -> tuple[list[Table], dict[str, Any]]:
    q = request.query_params
    period = q.get("period") or "day"
    group = q.get("group") or "provider"
    if period not in PERIODS:
        raise PageError(400, "error.bad_choice")
    if group not in DIMENSIONS:
        raise PageError(400, "error.bad_choice")
    window = window_from(request, default_days=30)
    filters = {name: values for name in FILTERS if (values := [v for v in q.getlist(name) if v])}
    base = ReportQuery(org_id=principal.org_id, start=window.start, end=window.end, filters=filters)
    unfiltered = ReportQuery(org_id=principal.org_id, start=window.start, end=window.end,
                             group_by=["provider", "model"])
    priced = group in COST_DIMENSIONS
    asks: dict[str, Callable[[Connection], Any]] = {
        "per_period": lambda c: [r.as_dict() for r in trend(c, replace(base, group_by=[group] if priced else []),
                                                              period)],
        "tokens": lambda c: usage_report(c, replace(base, group_by=[group])),
        "choices": lambda c: cost_report(c, unfiltered),  # what the filters offer: the window's providers, models
    }
    if priced:
        asks["breakdown"] = lambda c: cost_report(c, replace(base, group_by=[group]))
    got = answers(engine, asks)
    per_period, tokens = got["per_period"], got["tokens"]
    top: list[str] = []
    if priced and len({r.get(group) for r in per_period}) > MAX_SERIES:
        # hundreds of keys or projects make an unreadable chart: the trend follows the largest ones
        ranked = sorted((r for r in got["breakdown"] if r.get(group) is not None), key=lambda r: -r["amount"])
        top = list(dict.fromkeys(str(r[group]) for r in ranked))[:MAX_SERIES]
        with engine.connect() as conn:
            narrowed = replace(base, group_by=[group], filters={**filters, group: top})
            per_period = [r.as_dict() for r in trend(conn, narrowed, period)]
    for row in per_period:
        row["series"] = _label(row, group) if priced else row["currency"]
    for row in tokens:
        row["label"] = _label(row, group)
    state = {"period": period, "group": group, **window.params(), **filters}

    def drill(row: dict[str, Any]) -> str | None:
        nxt = DRILL.get(group)
        if nxt is None or row.get(group) is None:
            return None
        merged = {**state, "group": nxt, group: sorted({*filters.get(group, []), str(row[group])})}
        return url("/spend", merged)

    group_col = Column("label", label=f"dim.{group}")
    trend_cols = [Column("period"),
                  *([Column("series", label=f"dim.{group}"), Column(group, label="col.id")] if priced else []),
                  Column("amount", "money"), Column("change", "money"), Column("change_pct", "pct"),
                  Column("tokens", "int"), Column("complete", "bool"), Column("currency"), Column("origin")]
    tables = [Table("trend", "spend.trend", trend_cols, per_period, note="spend.trend_top" if top else "note.reported",
                    chart=chart_series(per_period, x="period", y="amount", series=lambda r: r["series"],
                                       kind="bar" if period == "month" else "line"))]
    if priced:
        breakdown = got["breakdown"]
        for row in breakdown:
            row["label"] = _label(row, group)
        breakdown.sort(key=lambda r: -r["amount"])
        tables.append(Table("breakdown", "spend.breakdown",
                            [group_col, Column(group, label="col.id"), Column("amount", "money"),
                             Column("currency"), Column("origin")],
                            breakdown, note="spend.breakdown_note", link=drill,
                            chart=chart_series(breakdown, x="label", y="amount", series=lambda r: r["currency"],
                                               kind="bar")))
    tables.append(Table("tokens", "spend.tokens", [group_col, Column(group, label="col.id"), *TOKEN_COLUMNS],
                        tokens, note="spend.tokens_note" if priced else "spend.tokens_only_note", link=drill))
    options = {name: sorted({r[name] for r in got["choices"] if r[name]}) for name in ("provider", "model")}
    removable = [{"name": name, "value": value,
                  "href": url("/spend", {**state, name: [v for v in values if v != value]})}
                 for name, values in filters.items() for value in values]
    return tables, {"top": len(top), "state": state, "window": window, "options": options, "filters": filters,
                    "removable": removable, "periods": PERIODS, "dimensions": DIMENSIONS, "priced": priced}


@router.get("/spend")
def spend(request: Request, principal: Principal = Depends(page_principal)) -> Response:
    tables, extra = explorer_tables(request.app.state.engine, request, principal)
    return respond(request, principal, "spend.html", tables, title="spend.title", **extra)
