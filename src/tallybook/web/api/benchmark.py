"""`/api/v1/benchmark`: the blended rate per tier against the market index and opted-in peers
(`tallybook report benchmark`), and the admin's opt-in, opt-out and share (`tallybook benchmark ...`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from tallybook import audit
from tallybook.analytics import benchmark as bm
from tallybook.analytics.pricers import blended_list_price
from tallybook.web.api.errors import ApiRoute, conflict
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, columns_of, csv_response, wants_csv
from tallybook.web.api.params import MONTH_PATTERN, Admin, Member, Reading, actor, engine, today
from tallybook.web.api.schemas import Currency, Number, Strict, plain

router = APIRouter(route_class=ApiRoute, tags=["rates and benchmark"])


class TierRow(Strict):
    month: str
    tier: str
    index_blended_mtok: Number | None = Field(description="Median blended 3:1 list price of the tier's models.")
    index_members: list[str]
    index_as_of: str
    org_blended_rate_mtok: Number | None = Field(description="The organisation's effective blended rate.")
    vs_index_pct: Number | None = Field(description="How far above (+) or below (-) the index, in percent.")
    org_models: list[str]
    peers: str = Field(description='"ok", or "not enough peers" below the k-anonymity threshold.')
    peer_contributors: int
    p10: Number | None = None
    p25: Number | None = None
    p50: Number | None = None
    p75: Number | None = None
    p90: Number | None = None
    org_percentile: int | None
    currency: Currency
    origin: str = Field(description="Reported cost against list prices.")


class Benchmark(Strict):
    month: str
    opted_in: bool
    k_anonymity: int
    rows: list[TierRow]


class OptIn(Strict):
    opted_in: bool
    shared_tiers: int = 0


def last_full_month() -> str:
    return f"{today().replace(day=1) - timedelta(days=1):%Y-%m}"


def month_option(month: Annotated[str | None, Query(pattern=MONTH_PATTERN,
                                                    description="YYYY-MM (default: the last full month).")] = None
                 ) -> str:
    return month or last_full_month()


Month = Annotated[str, Depends(month_option)]


@router.get("/benchmark", response_model=Benchmark, response_model_exclude_unset=True, responses=CSV_RESPONSE,
            summary="Blended rate per tier vs the market index and peers")
def benchmark(request: Request, principal: Member, conn: Reading, month: Month, fmt: FormatOption = None) -> object:
    """Same as `tallybook report benchmark` (USD per 1M tokens, blended 3:1)."""
    rows = bm.benchmark_report(conn, principal.org_id, month, blended_list_price)
    if wants_csv(request, fmt):
        return csv_response(principal, rows, columns_of(rows, ["month", "tier"]), f"benchmark-{month}.csv")
    return Benchmark(month=month, opted_in=bm.is_opted_in(conn, principal.org_id), k_anonymity=bm.K_ANONYMITY,
                     rows=[TierRow(**plain(r)) for r in rows])


@router.put("/benchmark/opt-in", response_model=OptIn, summary="Opt in to the peer benchmark (admin)")
def join(request: Request, principal: Admin) -> OptIn:
    """Share one blended rate per tier and month, anonymously, with this deployment's peers."""
    with engine(request).begin() as conn:
        bm.set_opt_in(conn, principal.org_id, True)
        audit.record(conn, principal.org_id, actor(principal), "benchmark.joined", "organisation", str(principal.org_id))
    return OptIn(opted_in=True)


@router.delete("/benchmark/opt-in", response_model=OptIn, summary="Opt out and withdraw shared figures (admin)")
def leave(request: Request, principal: Admin) -> OptIn:
    with engine(request).begin() as conn:
        bm.set_opt_in(conn, principal.org_id, False)
        audit.record(conn, principal.org_id, actor(principal), "benchmark.left", "organisation", str(principal.org_id))
    return OptIn(opted_in=False)


@router.post("/benchmark/share", response_model=OptIn, summary="Share a month's tier rates (admin)")
def share(request: Request, principal: Admin, month: Month) -> OptIn:
    """Same as `tallybook benchmark share`: only once the organisation opted in."""
    with engine(request).begin() as conn:
        if not bm.is_opted_in(conn, principal.org_id):
            raise conflict("This organisation has not opted in: PUT /api/v1/benchmark/opt-in first.")
        start, end = bm.month_bounds(month)
        mine = bm.tier_rates(conn, principal.org_id, start, end, bm.load_tiers())
        shared = bm.share_month(conn, principal.org_id, month,
                                {t: r.blended_rate for t, r in mine.items() if r.blended_rate is not None})
        audit.record(conn, principal.org_id, actor(principal), "benchmark.shared", "organisation",
                     str(principal.org_id), {"month": month, "tiers": shared})
    return OptIn(opted_in=True, shared_tiers=shared)
