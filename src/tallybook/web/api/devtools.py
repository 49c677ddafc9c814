"""`GET /api/v1/devtools`: coding-tool adoption, activity, acceptance and cost per tool and overall
(Claude Code, Cursor), as `tallybook report devtools` (definitions in docs/coding-tools.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from tallybook.analytics.devtools import TOOLS, devtools
from tallybook.web.api.errors import ApiRoute
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, columns_of, csv_response, wants_csv
from tallybook.web.api.params import DaysOption, Member, Reading, checked, midnight, today
from tallybook.web.api.schemas import Amount, Currency, Number, Strict, plain

router = APIRouter(route_class=ApiRoute, tags=["coding tools"])
DEFAULT_DAYS = 30  # as the CLI: the 30 days up to yesterday


class DevToolsRow(Strict):
    tool: str = Field(description="claude_code, cursor, or all (a person counted once across tools).")
    period: str | None = Field(description="The period's label with `by`, else none (the whole window).")
    start: str
    end: str = Field(description="The last day, inclusive.")
    active_users: int
    dau: Number
    wau: int
    mau: int
    active_api_keys: int
    sessions: int | None = Field(description="None where the tool does not report it (not a zero).")
    lines_added: int | None
    lines_removed: int | None
    commits: int | None
    pull_requests: int | None
    tool_accepted: int | None
    tool_rejected: int | None
    requests: int | None
    lines_accepted: int | None
    acceptance_rate: Number | None
    tokens: int
    cost: Amount
    currency: Currency
    cost_origin: Literal["reported", "estimated"] = Field(description="Cursor's is charged (reported); Claude "
                                                                      "Code's is the vendor's estimate.")
    cost_per_active_user: Number | None
    cost_per_accepted_line: Number | None


class DevTools(Strict):
    first_day: str
    last_day: str
    rows: list[DevToolsRow]


@router.get("/devtools", response_model=DevTools, responses=CSV_RESPONSE, summary="Coding-tool KPIs")
def report_devtools(
    request: Request, principal: Member, conn: Reading, window: DaysOption,
    tool: Annotated[list[Literal["claude_code", "cursor"]] | None, Query(
        description=f"Only these tools ({', '.join(TOOLS)}; repeatable).")] = None,
    by: Annotated[Literal["day", "week", "month"] | None, Query(
        description="One row per period instead of the whole window.")] = None,
    fmt: FormatOption = None,
) -> object:
    """Default window: the 30 days up to yesterday. Same as `tallybook report devtools`."""
    start, end = window.bounds()
    end = end or midnight(today())
    start, end = checked(start or end - timedelta(days=DEFAULT_DAYS), end)
    rows = [r.as_dict() for r in devtools(conn, principal.org_id, start, end, tools=tool or TOOLS, period=by)]
    first, last = f"{start:%Y-%m-%d}", f"{end - timedelta(days=1):%Y-%m-%d}"
    if wants_csv(request, fmt):
        return csv_response(principal, rows, columns_of(rows, ["tool", "period"]), f"devtools-{first}-{last}.csv")
    return DevTools(first_day=first, last_day=last, rows=[DevToolsRow(**plain(r)) for r in rows])
