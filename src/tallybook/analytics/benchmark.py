"""The tallybook market index and anonymous peer percentiles (methodology: docs/benchmark.md).

Market index of a tier on a date: the median of the blended 3:1 list prices ($ per 1M tokens,
(3 * input + output) / 4) of the tier's member models, from the price catalog in force that day.
Tier membership is data (`data/market_tiers.toml`), dated and reviewed like code.

Peers: organisations that opt in share one figure per month and tier, their effective blended
rate. Percentiles are shown only when at least `K_ANONYMITY` organisations contributed to that
month and tier; otherwise the answer is the explicit state "not enough peers". Percentiles are
interpolated between contributions and rounded to the cent, so no one contribution is printed.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from statistics import median
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from tallybook.analytics.rates import RateRow, rates
from tallybook.analytics.rollups import ReportQuery
from tallybook.ledger import schema as t
from tallybook.ledger.store import utcnow

K_ANONYMITY = 10
PERCENTILES = (10, 25, 50, 75, 90)
TIERS_FILE = Path(__file__).parent / "data" / "market_tiers.toml"
CENT = Decimal("0.01")

# (provider, model, at) -> blended 3:1 list price in USD per 1M tokens, or None when unknown
BlendedPricer = Callable[[str, str, datetime], Decimal | None]


@dataclass(frozen=True)
class Tiers:
    as_of: date
    members: dict[str, list[tuple[str, str]]]
    classify: list[tuple[str, str, str]]

    def tier_of(self, provider: str, model: str | None) -> str | None:
        if not model:
            return None
        for prov, pattern, tier in self.classify:
            if prov == provider and fnmatch.fnmatchcase(model, pattern):
                return tier
        return None


def load_tiers(path: Path = TIERS_FILE) -> Tiers:
    data = tomllib.loads(path.read_text())
    return Tiers(
        as_of=date.fromisoformat(data["as_of"]),
        members={name: [tuple(m) for m in tier["members"]] for name, tier in data["tiers"].items()},
        classify=[tuple(c) for c in data["classify"]],
    )


@dataclass(frozen=True)
class IndexPoint:
    tier: str
    at: date
    index: Decimal | None  # USD per 1M tokens, blended 3:1; None when no member is priced
    members: tuple[tuple[str, str, Decimal], ...]
    missing: tuple[str, ...]  # members the catalog could not price


def market_index(tiers: Tiers, pricer: BlendedPricer, *, at: datetime) -> list[IndexPoint]:
    points = []
    for tier, members in tiers.members.items():
        priced, missing = [], []
        for provider, model in members:
            blended = pricer(provider, model, at)
            if blended is None:
                missing.append(f"{provider}/{model}")
            else:
                priced.append((provider, model, blended))
        index = Decimal(median([p[2] for p in priced])) if priced else None
        points.append(IndexPoint(tier, at.date(), index, tuple(priced), tuple(missing)))
    return points


@dataclass
class TierRate:
    """The organisation's effective blended rate over every model it used in one tier."""

    tier: str
    input_tokens: int = 0
    output_tokens: int = 0
    input_cost: Decimal = Decimal(0)
    output_cost: Decimal = Decimal(0)
    models: set[str] = field(default_factory=set)

    @property
    def blended_rate(self) -> Decimal | None:
        if not self.input_tokens or not self.output_tokens:
            return None
        mtok = Decimal(1_000_000)
        return (3 * self.input_cost / self.input_tokens * mtok + self.output_cost / self.output_tokens * mtok) / 4


def tier_rates(conn: Connection, org_id: int, start: datetime, end: datetime, tiers: Tiers) -> dict[str, TierRate]:
    found: dict[str, TierRate] = {}
    rows: list[RateRow] = rates(conn, ReportQuery(org_id=org_id, start=start, end=end,
                                                  group_by=["provider", "model"]))
    for row in rows:
        tier = tiers.tier_of(row.group["provider"], row.group["model"])
        if tier is None or row.currency != "USD":
            continue
        agg = found.setdefault(tier, TierRate(tier))
        agg.input_tokens += row.input_tokens
        agg.output_tokens += row.output_tokens
        agg.input_cost += row.input_cost
        agg.output_cost += row.output_cost
        agg.models.add(row.group["model"])
    return found


# --- peers ----------------------------------------------------------------------------------------

def set_opt_in(conn: Connection, org_id: int, opted_in: bool) -> None:
    s = t.org_settings.c
    conn.execute(delete(t.org_settings).where(s.org_id == org_id, s.key == "benchmark_opt_in"))
    conn.execute(insert(t.org_settings).values(org_id=org_id, key="benchmark_opt_in",
                                               value="true" if opted_in else "false"))
    if not opted_in:  # leaving withdraws every figure shared so far
        conn.execute(delete(t.benchmark_shares).where(t.benchmark_shares.c.org_id == org_id))


def is_opted_in(conn: Connection, org_id: int) -> bool:
    s = t.org_settings.c
    value = conn.execute(select(s.value).where(s.org_id == org_id, s.key == "benchmark_opt_in")).scalar()
    return value == "true"


def share_month(conn: Connection, org_id: int, month: str, rates_by_tier: dict[str, Decimal]) -> int:
    """Record this organisation's blended rate per tier for `month`; only when it opted in."""
    if not is_opted_in(conn, org_id):
        return 0
    b = t.benchmark_shares.c
    conn.execute(delete(t.benchmark_shares).where(b.org_id == org_id, b.month == month))
    rows = [{"org_id": org_id, "month": month, "tier": tier, "blended_rate": str(rate), "shared_at": utcnow()}
            for tier, rate in rates_by_tier.items()]
    if rows:
        conn.execute(insert(t.benchmark_shares), rows)
    return len(rows)


@dataclass(frozen=True)
class PeerResult:
    month: str
    tier: str
    contributors: int
    status: str  # "ok" | "not enough peers"
    percentiles: dict[str, Decimal] = field(default_factory=dict)  # p10..p90, USD per 1M tokens
    org_rate: Decimal | None = None
    org_percentile: int | None = None  # share of peers paying less, in percent

    def as_dict(self) -> dict[str, Any]:
        return {"month": self.month, "tier": self.tier, "contributors": self.contributors, "status": self.status,
                **self.percentiles, "org_blended_rate": self.org_rate, "org_percentile": self.org_percentile,
                "currency": "USD", "unit": "per 1M tokens, blended 3:1", "k_anonymity": K_ANONYMITY}


def percentile(sorted_values: list[Decimal], pct: int) -> Decimal:
    """Linear interpolation between closest ranks (the common 'type 7' definition)."""
    position = Decimal(pct) / 100 * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def peer_percentiles(conn: Connection, org_id: int, month: str, tier: str,
                     org_rate: Decimal | None = None) -> PeerResult:
    b = t.benchmark_shares.c
    rows = conn.execute(select(b.org_id, b.blended_rate).where(b.month == month, b.tier == tier)).all()
    contributors = len(rows)
    if contributors < K_ANONYMITY:
        return PeerResult(month, tier, contributors, "not enough peers", org_rate=org_rate)
    values = sorted(Decimal(r.blended_rate) for r in rows)
    pcts = {f"p{p}": percentile(values, p).quantize(CENT, rounding=ROUND_HALF_EVEN) for p in PERCENTILES}
    rank = None
    if org_rate is not None:
        below = sum(1 for v in values if v < org_rate)
        equal = sum(1 for v in values if v == org_rate)
        rank = round(100 * (below + equal / 2) / contributors)
    return PeerResult(month, tier, contributors, "ok", pcts, org_rate, rank)


# --- the whole answer, as the CLI, the API and the dashboard show it ---------------------------------

def month_bounds(month: str) -> tuple[datetime, datetime]:
    start = datetime.strptime(month, "%Y-%m")
    return start, (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def benchmark_report(conn: Connection, org_id: int, month: str, pricer: BlendedPricer,
                     tiers: Tiers | None = None) -> list[dict[str, Any]]:
    """Per tier: the market index, the organisation's blended rate and its distance to the index,
    and its position among opted-in peers (or "not enough peers")."""
    tiers = tiers or load_tiers()
    start, end = month_bounds(month)
    index = {p.tier: p for p in market_index(tiers, pricer, at=end - timedelta(days=1))}
    mine = tier_rates(conn, org_id, start, end, tiers)
    rows = []
    for tier, point in index.items():
        own = mine.get(tier)
        rate = own.blended_rate if own else None
        peers = peer_percentiles(conn, org_id, month, tier, org_rate=rate)
        vs = (rate / point.index - 1) if rate is not None and point.index else None
        rows.append({
            "month": month, "tier": tier, "index_blended_mtok": point.index,
            "index_members": [f"{p}/{m}" for p, m, _ in point.members], "index_as_of": str(tiers.as_of),
            "org_blended_rate_mtok": None if rate is None else rate.quantize(Decimal("0.000001")),
            "vs_index_pct": None if vs is None else (vs * 100).quantize(CENT),
            "org_models": sorted(own.models) if own else [], "peers": peers.status,
            "peer_contributors": peers.contributors, **peers.percentiles,
            "org_percentile": peers.org_percentile, "currency": "USD", "origin": "reported vs list",
        })
    return rows

