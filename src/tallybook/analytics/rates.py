"""Effective rates: what the organisation really pays per million tokens, from vendor-reported cost.

For each group (any of provider, model, project, api_key, day, week, month):

    input rate   = reported input-side cost  / all input tokens (uncached + cache reads + cache writes) * 1e6
    output rate  = reported output-side cost / output tokens * 1e6
    blended rate = (3 * input rate + output rate) / 4          (the usual 3:1 input:output blend)
    discount     = 1 - reported token cost / list cost of the same usage

A cost line is on the input side when its token type is an input kind (OpenAI line items "input",
"cached input", "audio input"; Anthropic token types uncached/cache read/cache write), on the output
side for "output"/"audio output"/"output_tokens", and outside token rates otherwise (images,
web search, code execution...). List cost prices the very usage rows of the group at the price in
force on each day (`tallybook.pricing`), so the discount is for the organisation's exact mix; a
pricer with `price_epochs(provider, model)` lets the days between two price changes be priced in
one call. Grouped by provider, model and periods only, the figures come from the daily rollups.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, case, func, select

from tallybook.analytics.rollups import (
    CODING_SOURCES,
    PERIODS,
    ReportError,
    ReportQuery,
    _period,
    reading_table,
)
from tallybook.ledger import schema as t

MTOK = Decimal(1_000_000)
RATE_GROUPS = ("provider", "model", "project", "api_key", *PERIODS)
INPUT_TYPES = ("input", "cached input", "audio input", "cache write", "cached write",
               "uncached_input_tokens", "cache_read_input_tokens",
               "cache_creation.ephemeral_5m_input_tokens", "cache_creation.ephemeral_1h_input_tokens")
OUTPUT_TYPES = ("output", "audio output", "output_tokens")
PRICED = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
          "output_tokens", "audio_input_tokens", "audio_output_tokens")
FINE = ("provider", "model", "service_tier", "batch", "context_window")  # what a list price depends on

# (provider, model, day, usage measures) -> list cost or None when unknown; supplied by pricing.
ListPricer = Callable[[str, str | None, datetime, dict[str, Any]], Decimal | None]


@dataclass(frozen=True)
class RateRow:
    group: dict[str, Any]
    currency: str
    input_tokens: int  # all input: uncached + cache read + cache write
    output_tokens: int
    input_cost: Decimal  # vendor-reported
    output_cost: Decimal  # vendor-reported
    other_cost: Decimal  # reported cost that is not per token (images, searches, ...)
    list_cost: Decimal | None  # the priced models' token usage at list price; None without a pricer
    priced_token_cost: Decimal  # reported token cost of the models that have a list price
    unpriced_models: tuple[str, ...]  # models the catalog does not know: left out of the discount

    @property
    def input_rate(self) -> Decimal | None:
        return self.input_cost / self.input_tokens * MTOK if self.input_tokens else None

    @property
    def output_rate(self) -> Decimal | None:
        return self.output_cost / self.output_tokens * MTOK if self.output_tokens else None

    @property
    def blended_rate(self) -> Decimal | None:
        if self.input_rate is None or self.output_rate is None:
            return self.input_rate if self.output_rate is None else self.output_rate
        return (3 * self.input_rate + self.output_rate) / 4

    @property
    def token_cost(self) -> Decimal:
        return self.input_cost + self.output_cost

    @property
    def discount(self) -> Decimal | None:
        if not self.list_cost:
            return None
        return 1 - self.priced_token_cost / self.list_cost

    def as_dict(self) -> dict[str, Any]:
        q = Decimal("0.000001")
        def rnd(value: Decimal | None) -> Decimal | None:
            return None if value is None else value.quantize(q)
        return {
            **self.group, "currency": self.currency, "origin": "reported",
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "input_cost": self.input_cost, "output_cost": self.output_cost, "other_cost": self.other_cost,
            "input_rate_mtok": rnd(self.input_rate), "output_rate_mtok": rnd(self.output_rate),
            "blended_rate_mtok": rnd(self.blended_rate),
            "list_cost": self.list_cost, "list_origin": "estimated",
            "discount": rnd(self.discount), "unpriced_models": list(self.unpriced_models),
        }


def _side(c: Any) -> Any:
    return case((c.token_type.in_(INPUT_TYPES), "input"), (c.token_type.in_(OUTPUT_TYPES), "output"),
                else_="other")


def _keys(conn: Connection, table: Any, day: Any, group_by: Sequence[str]) -> list[Any]:
    return [(_period(conn, g, day) if g in PERIODS else table.c[g]).label(g) for g in group_by]


def _where(table: Any, day: Any, query: ReportQuery) -> list[Any]:
    c = table.c
    where = [c.org_id == query.org_id, day >= query.start, day < query.end]
    if "bucket_width" in c:  # the records; a rollup holds daily buckets only
        where.append(c.bucket_width == "1d")
    for name, values in query.filters.items():
        if values:
            where.append(c[name].in_(list(values)))
    return where


def _span(epochs: Sequence[date] | None, day: datetime) -> Any:
    """The run of days priced as one: the price period holding `day`, or the day itself."""
    return day if epochs is None else bisect_right(epochs, day.date())


def rates(conn: Connection, query: ReportQuery, *, list_pricer: ListPricer | None = None) -> list[RateRow]:
    """Effective rates per group, from reported cost, with the list cost of the same usage."""
    bad = [g for g in query.group_by if g not in RATE_GROUPS or g == "hour"]
    if bad:
        raise ReportError(f"Rates cannot be grouped by {', '.join(bad)}; choose from "
                          f"{', '.join(g for g in RATE_GROUPS if g != 'hour')}.")
    groups = list(query.group_by)
    inner = groups + [g for g in ("provider", "model") if g not in groups]  # priced model by model
    cr, cday = reading_table(conn, t.cost_records, query, ("provider", "model", "token_type", "currency"))
    side = _side(cr.c).label("side")
    cost_keys = _keys(conn, cr, cday, inner)
    money: dict[tuple[Any, ...], dict[str, Any]] = {}
    stmt = (select(*cost_keys, cr.c.currency, side, func.sum(cr.c.amount_nanos).label("nanos"))
            .where(*_where(cr, cday, query), cr.c.source.not_in(CODING_SOURCES))  # no per-token lines
            .group_by(*cost_keys, cr.c.currency, side))
    for row in conn.execute(stmt).mappings():
        ident = tuple(row[g] for g in inner)
        slot = money.setdefault(ident, {"currency": row["currency"], "input": Decimal(0), "output": Decimal(0),
                                        "other": Decimal(0)})
        slot[row["side"]] += Decimal(int(row["nanos"] or 0)) / Decimal(1_000_000_000)

    ur, uday = reading_table(conn, t.usage_records, query, ("unit", *FINE))
    u = ur.c
    usage_keys = _keys(conn, ur, uday, inner)
    day = _period(conn, "day", uday).label("_day")
    extra = [u[f].label(f"_{f}") for f in FINE]
    sums = [func.sum(u[m]).label(m) for m in PRICED]
    # Reported cost over the vendor's own usage: the gateway meters many of the same requests again.
    stmt = (select(*usage_keys, day, *extra, *sums).where(*_where(ur, uday, query), u.unit.is_(None),
                                                          u.source != "gateway", u.source.not_in(CODING_SOURCES))
            .group_by(*usage_keys, day, *extra))
    tokens: dict[tuple[Any, ...], dict[str, Any]] = {}
    # Usage summed per group, fine key and price period, then priced once per sum (list cost is linear).
    # A year of daily rollup rows goes through this loop, so it works on plain tuples.
    spans: dict[tuple[Any, ...], list[Any]] = {}
    epochs_of = getattr(list_pricer, "price_epochs", None)
    epochs: dict[tuple[str, str | None], Sequence[date] | None] = {}
    days: dict[str, datetime] = {}
    n, f = len(inner), len(inner) + 1 + len(FINE)
    for values in conn.execute(stmt):
        ident = tuple(values[:n])
        tally = tokens.get(ident)
        if tally is None:
            tally = tokens[ident] = {"input": 0, "output": 0, "list": Decimal(0), "unpriced": False}
        counts = [int(v) for v in values[f:]]
        tally["input"] += counts[0] + counts[1] + counts[2] + counts[3]
        tally["output"] += counts[4]
        if list_pricer is None:
            continue
        fine = tuple(values[n + 1:f])
        model = fine[:2]
        if model not in epochs:
            epochs[model] = None if epochs_of is None else epochs_of(*model)
        when = days.get(values[n])
        if when is None:
            when = days[values[n]] = datetime.fromisoformat(values[n])
        key = (ident, fine, _span(epochs[model], when))
        acc = spans.get(key)
        if acc is None:
            spans[key] = [when, *counts]
            continue
        acc[0] = min(acc[0], when)
        for i, v in enumerate(counts, 1):
            acc[i] += v
    for (ident, fine, _), acc in spans.items():
        measures: dict[str, Any] = dict(zip(PRICED, acc[1:]))
        measures.update(zip(FINE[2:], fine[2:]))
        priced = list_pricer(fine[0], fine[1], acc[0], measures)  # type: ignore[misc]
        slot = tokens[ident]
        if priced is None:
            slot["unpriced"] = True
        else:
            slot["list"] += priced
    zero = Decimal(0)
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    model_at = inner.index("model")
    for ident in set(money) | set(tokens):
        m = money.get(ident, {"currency": "USD", "input": zero, "output": zero, "other": zero})
        tk = tokens.get(ident, {"input": 0, "output": 0, "list": zero, "unpriced": False})
        out = merged.setdefault(ident[: len(groups)], {
            "currency": m["currency"], "input_tokens": 0, "output_tokens": 0, "input": zero, "output": zero,
            "other": zero, "list": zero, "priced": zero, "unpriced": set()})
        out["input_tokens"] += tk["input"]
        out["output_tokens"] += tk["output"]
        out["input"] += m["input"]
        out["output"] += m["output"]
        out["other"] += m["other"]
        has_tokens = tk["input"] or tk["output"]
        if tk["unpriced"] and has_tokens:
            out["unpriced"].add(ident[model_at] or "(no model)")
        elif has_tokens:
            out["list"] += tk["list"]
            out["priced"] += m["input"] + m["output"]
    return [
        RateRow(dict(zip(groups, ident)), v["currency"], v["input_tokens"], v["output_tokens"], v["input"],
                v["output"], v["other"], v["list"] if list_pricer else None, v["priced"],
                tuple(sorted(v["unpriced"])))
        for ident, v in sorted(merged.items(), key=lambda kv: tuple("" if x is None else str(x) for x in kv[0]))
    ]
