"""`GET /api/v1/usage`: token and unit usage for a window, grouped as asked (`tallybook report usage`)."""

from __future__ import annotations

from datetime import date, timedelta

from fastapi import APIRouter, Query, Request
from pydantic import Field

from tallybook.analytics.rollups import TOKEN_COLUMNS, USAGE_GROUPS, usage_report
from tallybook.web.api.errors import ApiRoute
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, csv_response, wants_csv
from tallybook.web.api.params import DaysOption, FilterOptions, Member, Reading, report_query
from tallybook.web.api.schemas import Strict, UsageGroup

router = APIRouter(route_class=ApiRoute, tags=["usage and costs"])
USAGE_CSV = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "requests", "quantities")


class UsageRow(UsageGroup):
    input_tokens: int = Field(description="Uncached input tokens.")
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_write_tokens: int = Field(description="Cache writes, 5-minute and 1-hour together.")
    output_tokens: int
    reasoning_tokens: int
    audio_input_tokens: int
    audio_output_tokens: int
    requests: int
    total_tokens: int = Field(description="Input, cache reads, cache writes and output.")
    quantities: dict[str, int] = Field(description="Non-token units: {unit: quantity} (images, seconds, ...).")


class UsageReport(Strict):
    first_day: date
    last_day: date
    group_by: list[str]
    origin: str = Field(description="What the figures are: reported by the providers, metered by the gateway, "
                                    "or both (usage of a provider only the gateway sees).")
    rows: list[UsageRow]


def origin_note(sources: list[str] | None) -> str:
    """As `tallybook report usage` titles its table."""
    if sources and set(sources) == {"gateway"}:
        return "metered"
    if sources and "gateway" in sources:
        return "reported and metered"
    if sources:
        return "reported"
    return "reported (metered where only the gateway sees a provider)"


@router.get("/usage", response_model=UsageReport, response_model_exclude_unset=True, responses=CSV_RESPONSE,
            summary="Usage for a window, grouped")
def usage(
    request: Request, principal: Member, conn: Reading, window: DaysOption, chosen: FilterOptions,
    group_by: str = Query("provider,model", description=f"Comma-separated, from: {', '.join(USAGE_GROUPS)}."),
    fmt: FormatOption = None,
) -> object:
    """`input_tokens` is uncached input; cache reads and writes are separate measures. Without a `source`
    filter each provider is counted once: the gateway's metered usage is left out where the provider's
    own report covers the window. Same as `tallybook report usage`."""
    start, end = window.window()
    query = report_query(principal, start, end, group_by, chosen.as_dict("provider", "model", "project", "source"))
    rows = usage_report(conn, query)
    report = UsageReport(first_day=start.date(), last_day=(end - timedelta(days=1)).date(),
                         group_by=list(query.group_by), origin=origin_note(chosen.source),
                         rows=[UsageRow(**r) for r in rows])
    if wants_csv(request, fmt):
        names = [f"{g}_name" for g in query.group_by if rows and f"{g}_name" in rows[0]]
        return csv_response(principal, rows, [*query.group_by, *names, *USAGE_CSV, *_rest()],
                            f"usage-{report.first_day}-{report.last_day}.csv")
    return report


def _rest() -> list[str]:
    return [m for m in (*TOKEN_COLUMNS, "total_tokens") if m not in USAGE_CSV]
