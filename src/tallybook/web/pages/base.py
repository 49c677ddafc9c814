"""What every page shares: the templates, the language, tables that are also CSV and JSON, windows.

A page builds its figures by calling `tallybook.analytics` (never by recomputing them), puts them in
`Table`s and hands them to `respond()`, which answers the same figures three ways:

    GET /spend                      HTML (Jinja), each table with its chart and a CSV link
    GET /spend?download=breakdown   that table as CSV: machine column names, exact Decimal strings
    GET /spend?format=json          every table as JSON (what the page shows, for scripts)
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import Connection, Engine

from tallybook.exports.csv import write_csv
from tallybook.ledger.store import utcnow
from tallybook.web import i18n
from tallybook.web.api.schemas import number as api_number
from tallybook.web.auth import Principal, csrf_token, user_orgs
from tallybook.web.errors import ApiError

TEMPLATES_DIR = Path(__file__).parent.parent / "templates"
env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)

# (path, catalog key, least role that sees it)
NAV = (
    ("/", "nav.overview", "viewer"), ("/spend", "nav.spend", "viewer"), ("/optimise", "nav.optimise", "viewer"),
    ("/benchmark", "nav.benchmark", "viewer"), ("/reconcile", "nav.reconcile", "viewer"),
    ("/audit", "nav.audit", "analyst"), ("/billing", "nav.billing", "analyst"),
    ("/connect", "nav.connect", "admin"), ("/settings", "nav.settings", "admin"),
)


class PageError(ApiError):
    """A refusal shown as a page: `error.<code>` of the catalog in the user's language (English in JSON)."""

    def __init__(self, status: int, key: str) -> None:
        super().__init__(status, key.removeprefix("error."), i18n.t(key, i18n.DEFAULT))


def require_role(principal: Principal, role: str) -> None:
    if not principal.can(role):  # type: ignore[arg-type]
        raise PageError(403, "error.forbidden")


def lang_of(request: Request) -> str:
    return i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))


def translator(request: Request) -> Callable[..., str]:
    """`t` bound to the request's language: tr("benchmark.not_enough", k=10)."""
    lang = lang_of(request)
    return lambda key, /, **kw: i18n.t(key, lang, **kw)


# --- tables -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    key: str  # the row key, and the CSV/JSON column name
    kind: str = "text"  # text | int | money | rate | share | pct | bool | when
    label: str | None = None  # catalog key; default "col.<key>"
    currency_key: str = "currency"  # for money: the row key holding the currency

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "money", "rate", "share", "pct")


@dataclass
class Chart:
    type: str  # line | bar
    labels: list[str]
    datasets: list[dict[str, Any]]  # {"label": str, "data": [str]}
    unit: str = ""
    stacked: bool = False


@dataclass
class Table:
    name: str  # ?download=<name>
    title: str  # catalog key
    columns: Sequence[Column]
    rows: list[dict[str, Any]]
    note: str | None = None  # catalog key: where the figures come from
    chart: Chart | None = None
    link: Callable[[dict[str, Any]], str | None] | None = None  # drill-down href per row
    flag: str | None = None  # row key that marks a row to highlight
    empty: str = "table.empty"

    def csv(self) -> str:
        """The table as `tallybook export` writes CSV: exact decimals as text, machine column names."""
        buf = io.StringIO()
        write_csv(self.rows, [c.key for c in self.columns], buf)
        return buf.getvalue()

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "columns": [c.key for c in self.columns],
                "rows": [{c.key: _jsonable(row.get(c.key)) for c in self.columns} for row in self.rows]}


def chart_series(rows: Iterable[dict[str, Any]], *, x: str, y: str, series: Callable[[dict[str, Any]], str],
                 kind: str = "line", unit: str = "", stacked: bool = False) -> Chart:
    """A chart of `y` against `x`, one dataset per `series(row)`; the figures are the table's own."""
    labels: list[str] = []
    data: dict[str, dict[str, Any]] = {}
    for row in rows:
        label = str(row[x])
        if label not in labels:
            labels.append(label)
        data.setdefault(series(row), {})[label] = row[y]
    datasets = [{"label": name, "data": [str(values.get(lab, 0) or 0) for lab in labels]}
                for name, values in data.items()]
    return Chart(kind, labels, datasets, unit, stacked)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def answers(engine: Engine, asks: dict[str, Callable[[Connection], Any]]) -> dict[str, Any]:
    """Run independent reads side by side, each on its own connection, and return their answers by name.

    SQLite and PostgreSQL both serve concurrent readers, and the drivers release the GIL while a query
    runs, so a page costs about its slowest answer rather than their sum."""
    def answer(ask: Callable[[Connection], Any]) -> Any:
        with engine.connect() as conn:
            return ask(conn)

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="tallybook-page") as pool:
        futures = {name: pool.submit(answer, ask) for name, ask in asks.items()}
        return {name: future.result() for name, future in futures.items()}


# --- windows ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    start: datetime  # inclusive, UTC midnight
    end: datetime  # exclusive
    month: str | None = None

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(days=1)).date()

    def params(self) -> dict[str, str]:
        if self.month:
            return {"month": self.month}
        return {"from": f"{self.start:%Y-%m-%d}", "to": f"{self.last_day:%Y-%m-%d}"}


def today() -> datetime:
    return utcnow().replace(hour=0, minute=0, second=0, microsecond=0)


def month_window(month: str) -> Window:
    start = datetime.strptime(month, "%Y-%m")
    end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return Window(start, end, month)


def this_month() -> Window:
    return month_window(f"{today():%Y-%m}")


def previous_month(window: Window) -> Window:
    return month_window(f"{window.start - timedelta(days=1):%Y-%m}")


def window_from(request: Request, *, default_days: int = 30) -> Window:
    """?month=YYYY-MM, or ?from=&to= (inclusive days), else the last `default_days` days to today."""
    q = request.query_params
    try:
        if q.get("month"):
            return month_window(q["month"])
        end = today() + timedelta(days=1)
        if q.get("to"):
            end = datetime.strptime(q["to"], "%Y-%m-%d") + timedelta(days=1)
        start = datetime.strptime(q["from"], "%Y-%m-%d") if q.get("from") else end - timedelta(days=default_days)
    except ValueError:
        raise PageError(400, "error.bad_date") from None
    if end <= start:
        raise PageError(400, "error.bad_window")
    return Window(start, end)


def decimal_param(request: Request, name: str, default: str, *, low: str = "0", high: str = "1") -> Decimal:
    raw = request.query_params.get(name) or default
    try:
        value = Decimal(raw)
    except ArithmeticError:
        raise PageError(400, "error.bad_number") from None
    if not value.is_finite() or not Decimal(low) <= value <= Decimal(high):
        raise PageError(400, "error.bad_number")
    return value


def url(path: str, params: dict[str, Any]) -> str:
    pairs = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs]) if v not in (None, "")]
    return f"{path}?{urlencode(pairs)}" if pairs else path


# --- answering --------------------------------------------------------------------------------

def context(request: Request, principal: Principal | None, **extra: Any) -> dict[str, Any]:
    lang = lang_of(request)

    def tr(key: str, /, **kw: Any) -> str:
        return i18n.t(key, lang, **kw)

    path = request.url.path
    nav = [{"href": href, "key": key, "current": path == href or (href != "/" and path.startswith(href))}
           for href, key, role in NAV if principal is not None and principal.can(role)]  # type: ignore[arg-type]
    here = str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
    orgs: list[Any] = []
    if principal is not None and principal.via == "session":
        with request.app.state.engine.connect() as conn:
            orgs = user_orgs(conn, principal.user_id)
    return {
        "request": request, "principal": principal, "lang": lang, "languages": i18n.LANGUAGES, "t": tr,
        "nav": nav, "here": here, "csrf": csrf_token(request), "orgs": orgs if len(orgs) > 1 else [],
        "money": lambda v, c, places=2: i18n.money(v, c, lang, places),
        "number": lambda v, places=None: i18n.number(v, lang, places),
        "percent": lambda v, places=1: i18n.percent(v, lang, places),
        "cell": lambda row, col: cell(row, col, lang), "datum": datum, "url": url, "can_export": bool(
            principal and principal.can("analyst")), **extra,
    }


def datum(value: Any) -> Any:
    """A value as a page's machine-readable `data-value` states it: a Decimal as the API and the CLI's JSON
    state it (9 places, the ledger's nano-units), so the page, the API and the CLI agree to the digit."""
    return api_number(value) if isinstance(value, Decimal) else value


def cell(row: dict[str, Any], col: Column, lang: str) -> str:
    value = row.get(col.key)
    if value is None or value == "":
        return "–"
    if col.kind == "money":
        return i18n.money(Decimal(value), row.get(col.currency_key) or "", lang, 2)
    if col.kind == "rate":
        return i18n.number(Decimal(value), lang, 4)
    if col.kind == "share":
        return i18n.percent(Decimal(value), lang, 1)
    if col.kind == "pct":
        return f"{i18n.number(Decimal(value), lang, 2)}\u00a0%"
    if col.kind == "int":
        return i18n.number(int(value), lang)
    if col.kind == "bool":
        return i18n.t("value.yes" if value else "value.no", lang)
    if col.kind == "when":
        return value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, datetime) else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def render(request: Request, principal: Principal | None, template: str, *, status: int = 200,
           **extra: Any) -> HTMLResponse:
    html = env.get_template(template).render(**context(request, principal, **extra))
    return HTMLResponse(html, status_code=status)


def respond(request: Request, principal: Principal, template: str, tables: Sequence[Table], **extra: Any) -> Response:
    """The page as HTML, or one table as CSV (?download=name), or every table as JSON (?format=json)."""
    wanted = request.query_params.get("download")
    if wanted is not None or request.query_params.get("format") == "json":
        require_role(principal, "analyst")  # exports are for analysts and admins; viewers see dashboards
    if wanted is not None:
        table = next((t for t in tables if t.name == wanted), None)
        if table is None:
            raise PageError(404, "error.no_table")
        filename = f"tallybook-{request.url.path.strip('/') or 'overview'}-{table.name}.csv".replace("/", "-")
        return Response(table.csv(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    if request.query_params.get("format") == "json":
        return JSONResponse({"tables": [t.as_json() for t in tables]})
    return render(request, principal, template, tables={t.name: t for t in tables}, **extra)


def download_href(request: Request, name: str) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("download", "format")]
    return f"{request.url.path}?{urlencode([*params, ('download', name)])}"


env.globals["download_href"] = download_href
env.globals["json_script"] = lambda obj: Markup(json.dumps(obj).replace("<", "\\u003c"))
