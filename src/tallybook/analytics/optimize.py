"""Optimisation advice in dollars, each figure with the assumption that produced it.

    cache        hit rate = cache reads / all input tokens; saving if it rose to `cache_target`:
                 the extra cached tokens cost the cache-read price instead of the input price
    batch        batch share = batch tokens / all tokens; saving if `batch_share` of the
                 non-batch traffic moved to the batch API (half price at OpenAI and Anthropic)
    model mix    for a model with a cheaper substitute in its family (data/market_tiers.toml),
                 the saving if `substitute_share` of its traffic moved there, at list prices
    commitments  the monthly committed-spend level that would have minimised the past months'
                 cost under a discount schedule, and the break-even utilisation (1 - discount)

Savings are computed on the window's usage at list price and scaled to a 30-day month.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from tallybook.analytics.benchmark import TIERS_FILE
from tallybook.analytics.rollups import CODING_SOURCES, ReportQuery
from tallybook.ledger import schema as t

MTOK = Decimal(1_000_000)
CENT = Decimal("0.01")
BATCH_DISCOUNT = Decimal("0.5")


@dataclass(frozen=True)
class UnitPrices:
    """List prices in USD per 1M tokens for one model on one day."""

    input_mtok: Decimal
    cache_read_mtok: Decimal
    output_mtok: Decimal


PriceLookup = Callable[[str, str, datetime], UnitPrices | None]


@dataclass(frozen=True)
class Opportunity:
    kind: str  # cache | batch | model_mix
    provider: str
    model: str
    current: str  # the measured figure, e.g. "cache hit rate 12.0 %"
    assumption: str
    monthly_saving: Decimal  # USD per 30 days, estimated at list price
    window_saving: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "provider": self.provider, "model": self.model, "current": self.current,
                "assumption": self.assumption, "monthly_saving": self.monthly_saving.quantize(CENT),
                "window_saving": self.window_saving.quantize(CENT), "currency": "USD", "origin": "estimated"}


def substitutes(path: Path = TIERS_FILE) -> list[tuple[str, str, str]]:
    return [(str(s[0]), str(s[1]), str(s[2])) for s in tomllib.loads(path.read_text()).get("substitutes", [])]


def _usage_by_model(conn: Connection, query: ReportQuery) -> list[dict[str, Any]]:
    u, r = t.usage_records.c, t.usage_records.alias("reported").c
    batchy = (u.batch.is_(True)) | (u.service_tier == "batch")
    # A provider's own usage report where it has one, else what the gateway metered; never both,
    # since the gateway meters many of the same requests the provider reports.
    reported = select(r.provider).distinct().where(
        r.org_id == query.org_id, r.bucket_width == "1d", r.bucket_start >= query.start,
        r.bucket_start < query.end, r.source != "gateway")
    stmt = (select(u.provider, u.model,
                   func.sum(u.input_tokens).label("input"), func.sum(u.cache_read_tokens).label("cache_read"),
                   func.sum(u.cache_write_5m_tokens + u.cache_write_1h_tokens).label("cache_write"),
                   func.sum(u.output_tokens).label("output"), batchy.label("is_batch"))
            .where(u.org_id == query.org_id, u.bucket_width == "1d", u.bucket_start >= query.start,
                   u.bucket_start < query.end, u.unit.is_(None), u.model.is_not(None),
                   ~((u.source == "gateway") & u.provider.in_(reported)), u.source.not_in(CODING_SOURCES),
                   *[u[k].in_(list(v)) for k, v in query.filters.items() if v])
            .group_by(u.provider, u.model, batchy))
    return [dict(r) for r in conn.execute(stmt).mappings()]


def savings(conn: Connection, query: ReportQuery, prices: PriceLookup, *, cache_target: Decimal = Decimal("0.5"),
            batch_share: Decimal = Decimal("0.2"), substitute_share: Decimal = Decimal("0.3")) -> list[Opportunity]:
    days = Decimal(max(1, (query.end - query.start).days))
    scale = Decimal(30) / days
    at = query.end
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for row in _usage_by_model(conn, query):
        m = models.setdefault((row["provider"], row["model"]), {"input": 0, "cache_read": 0, "cache_write": 0,
                                                                "output": 0, "batch_tokens": 0, "nonbatch": {}})
        for k in ("input", "cache_read", "cache_write", "output"):
            m[k] += int(row[k] or 0)
        tokens = int((row["input"] or 0) + (row["cache_read"] or 0) + (row["cache_write"] or 0) + (row["output"] or 0))
        if row["is_batch"]:
            m["batch_tokens"] += tokens
        else:
            m["nonbatch"] = {k: int(row[k] or 0) for k in ("input", "cache_read", "output")}
    subs = substitutes()
    out: list[Opportunity] = []
    for (provider, model), m in sorted(models.items()):
        price = prices(provider, model, at)
        if price is None:
            continue
        all_input = m["input"] + m["cache_read"] + m["cache_write"]
        # cache
        if all_input:
            rate = Decimal(m["cache_read"]) / all_input
            if rate < cache_target:
                extra = min((cache_target - rate) * all_input, Decimal(m["input"]))
                saving = extra * (price.input_mtok - price.cache_read_mtok) / MTOK
                if saving > 0:
                    out.append(Opportunity(
                        "cache", provider, model, f"cache hit rate {rate * 100:.1f} %",
                        f"hit rate raised to {cache_target * 100:.0f} % of input tokens, the extra hits billed at "
                        f"the cache-read price ${price.cache_read_mtok}/1M instead of ${price.input_mtok}/1M "
                        "(list prices; cache-write premiums not counted)", saving * scale, saving))
        # batch
        nb = m["nonbatch"]
        nb_cost = (Decimal(nb.get("input", 0)) * price.input_mtok + Decimal(nb.get("cache_read", 0))
                   * price.cache_read_mtok + Decimal(nb.get("output", 0)) * price.output_mtok) / MTOK
        total_tokens = all_input + m["output"]
        if nb_cost > 0 and total_tokens:
            share = Decimal(m["batch_tokens"]) / total_tokens
            saving = nb_cost * batch_share * BATCH_DISCOUNT
            out.append(Opportunity(
                "batch", provider, model, f"batch share {share * 100:.1f} % of tokens",
                f"{batch_share * 100:.0f} % of the non-batch traffic is not interactive and moves to the batch "
                f"API at {BATCH_DISCOUNT * 100:.0f} % off list", saving * scale, saving))
        # model mix
        for prov, pattern, target in subs:
            if prov == provider and fnmatch.fnmatchcase(model, pattern) and not model.startswith(target):
                cheaper = prices(provider, target, at)
                if cheaper is None:
                    break
                def cost(p: UnitPrices, m: dict[str, int] = m) -> Decimal:
                    return (Decimal(m["input"] + m["cache_write"]) * p.input_mtok + Decimal(m["cache_read"])
                            * p.cache_read_mtok + Decimal(m["output"]) * p.output_mtok) / MTOK
                saving = (cost(price) - cost(cheaper)) * substitute_share
                if saving > 0:
                    out.append(Opportunity(
                        "model_mix", provider, model, f"{total_tokens:,} tokens on {model}",
                        f"{substitute_share * 100:.0f} % of this traffic moves to {target} "
                        f"(${cheaper.input_mtok}/${cheaper.output_mtok} per 1M in/out vs "
                        f"${price.input_mtok}/${price.output_mtok}) with acceptable quality", saving * scale, saving))
                break
    return out


# --- commitments ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CommitmentAdvice:
    commit: Decimal  # USD per month; 0 = stay on demand
    discount: Decimal
    cost: Decimal  # what the past months would have cost with it
    on_demand_cost: Decimal
    saving: Decimal
    break_even_utilisation: Decimal | None  # below this share of the commitment, on demand is cheaper
    months: int

    def as_dict(self) -> dict[str, Any]:
        return {"commit_per_month": self.commit.quantize(CENT), "discount": self.discount,
                "cost_with_commitment": self.cost.quantize(CENT), "on_demand_cost": self.on_demand_cost.quantize(CENT),
                "saving": self.saving.quantize(CENT), "break_even_utilisation": self.break_even_utilisation,
                "months": self.months, "currency": "USD", "origin": "estimated"}


def parse_schedule(text: str) -> list[tuple[Decimal, Decimal]]:
    """"10000:0.05,50000:0.10" -> [(10000, 0.05), (50000, 0.10)]: minimum monthly commit and its discount."""
    tiers = []
    for part in text.split(","):
        commit, _, discount = part.strip().partition(":")
        tiers.append((Decimal(commit), Decimal(discount)))
    return sorted(tiers)


def advise_commitment(monthly_spend: Sequence[Decimal], schedule: Sequence[tuple[Decimal, Decimal]]) -> CommitmentAdvice:
    """Try every tier at its minimum and at each month's discounted spend; keep the cheapest.

    With a commitment C at discount d a month costs max(C, spend * (1 - d)) (use it or lose it).
    """
    on_demand = sum(monthly_spend, Decimal(0))
    best = CommitmentAdvice(Decimal(0), Decimal(0), on_demand, on_demand, Decimal(0), None, len(monthly_spend))
    for minimum, discount in schedule:
        candidates = {minimum} | {s * (1 - discount) for s in monthly_spend if s * (1 - discount) >= minimum}
        for commit in candidates:
            cost = sum((max(commit, s * (1 - discount)) for s in monthly_spend), Decimal(0))
            if cost < best.cost:
                best = CommitmentAdvice(commit.quantize(CENT, rounding=ROUND_HALF_EVEN), discount, cost, on_demand,
                                        on_demand - cost, 1 - discount, len(monthly_spend))
    return best
