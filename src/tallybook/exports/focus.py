"""The FOCUS 1.2 cost and usage export: one row per vendor-reported daily cost line.

    focus_rows(conn, org_id, start, end) -> list[dict]     every column of COLUMNS, in that order
    FOCUS_SCHEMA                                            the Arrow schema (decimals, never floats)

Where each figure comes from (docs/exports.md has the full column mapping):
  BilledCost, EffectiveCost   the vendor-reported amount (cost_records); no prepaid amortisation
                              exists in tallybook, so EffectiveCost = BilledCost
  ListCost                    the row's usage at list price (tallybook.pricing catalog, at the day)
  ContractedCost              the same usage after the organisation's negotiated rates and discounts
                              (pricing rules in force that day); equal to ListCost without rules
  PricingQuantity/Unit        tokens in millions ("1000000 Tokens"); ConsumedQuantity/Unit in Tokens

A cost line's usage is the ledger's vendor-reported usage of the same day, provider, model and
token kind, narrowed by every dimension the cost line itself carries (project, API key, service
tier, context window, inference geo). Lines with no list price (images, searches, storage, a model
the catalog does not know, or no usage found) get ListCost = ContractedCost = BilledCost and
`x_ListCostSource` = "billed", so nothing is silently zero.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pyarrow as pa
from sqlalchemy import Connection, select

from tallybook.errors import FxError
from tallybook.ledger import schema as t
from tallybook.money import from_nanos
from tallybook.pricing.catalog import price_usage
from tallybook.pricing.fx import convert, load_rates
from tallybook.pricing.rules import Rule, apply_rules, load_rules, rules_at

FOCUS_VERSION = "1.2"
SCALE = 12  # decimal places of every FOCUS decimal
MONEY = pa.decimal128(38, SCALE)
MTOK = Decimal(1_000_000)
TOKEN_UNIT = "1000000 Tokens"
SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Generative AI"
LABELS = {"openai": "OpenAI", "anthropic": "Anthropic", "cohere": "Cohere", "google": "Google", "cursor": "Cursor",
          "mistral": "Mistral", "ollama": "Ollama"}
# A cost line's token type (OpenAI line item kind / Anthropic token_type) -> our usage measure.
MEASURE_OF = {
    "input": "input_tokens", "uncached_input_tokens": "input_tokens",
    "cached input": "cache_read_tokens", "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write_5m_tokens", "cache write": "cache_write_5m_tokens",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write_1h_tokens",
    "output": "output_tokens", "output_tokens": "output_tokens",
    "audio input": "audio_input_tokens", "audio output": "audio_output_tokens",
}
UNIT_WORDS = {"tokens": "Tokens", "images": "Images", "sessions": "Sessions", "gibibyte_hours": "GiB-Hours",
              "seconds": "Seconds", "characters": "Characters", "web_search_requests": "Requests",
              "requests": "Requests"}
NARROWING = ("api_key", "service_tier", "context_window", "inference_geo")  # matched when the cost line has them

COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    # the 21 mandatory columns of FOCUS 1.2
    ("BilledCost", MONEY), ("BillingAccountId", pa.string()), ("BillingAccountName", pa.string()),
    ("BillingCurrency", pa.string()), ("BillingPeriodStart", pa.timestamp("us", tz="UTC")),
    ("BillingPeriodEnd", pa.timestamp("us", tz="UTC")), ("ChargeCategory", pa.string()),
    ("ChargeClass", pa.string()), ("ChargeDescription", pa.string()),
    ("ChargePeriodStart", pa.timestamp("us", tz="UTC")), ("ChargePeriodEnd", pa.timestamp("us", tz="UTC")),
    ("ContractedCost", MONEY), ("EffectiveCost", MONEY), ("InvoiceIssuerName", pa.string()), ("ListCost", MONEY),
    ("PricingQuantity", MONEY), ("PricingUnit", pa.string()), ("ProviderName", pa.string()),
    ("PublisherName", pa.string()), ("ServiceCategory", pa.string()), ("ServiceName", pa.string()),
    # recommended and conditional columns tallybook can fill
    ("ServiceSubcategory", pa.string()), ("ChargeFrequency", pa.string()), ("PricingCategory", pa.string()),
    ("ConsumedQuantity", MONEY), ("ConsumedUnit", pa.string()), ("ListUnitPrice", MONEY),
    ("ContractedUnitPrice", MONEY), ("SkuId", pa.string()), ("SkuPriceId", pa.string()), ("SkuMeter", pa.string()),
    ("SubAccountId", pa.string()), ("SubAccountName", pa.string()), ("SubAccountType", pa.string()),
    ("RegionId", pa.string()), ("Tags", pa.string()),
    # tallybook's own (FOCUS custom columns start with x_)
    ("x_CostOrigin", pa.string()), ("x_ListCostSource", pa.string()), ("x_PriceVersion", pa.string()),
)
FOCUS_SCHEMA = pa.schema([pa.field(name, kind) for name, kind in COLUMNS],
                         metadata={"focus_version": FOCUS_VERSION, "generator": "tallybook"})
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)


def q(value: Decimal) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-SCALE), rounding=ROUND_HALF_EVEN)


@dataclass
class _Priced:
    quantity: int = 0
    list_cost: Decimal = Decimal(0)
    contracted_cost: Decimal = Decimal(0)
    known: bool = True
    version: str | None = None


class _UnitPricer:
    """List and contracted cost of one token measure, cached per (model, day, tier, ...): prices are linear."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.cache: dict[tuple[Any, ...], tuple[Decimal, Decimal, str | None] | None] = {}

    def per_token(self, provider: str, model: str, day: datetime, measure: str, row: Any) -> (
            tuple[Decimal, Decimal, str | None] | None):
        key = (provider, model, day, measure, row.service_tier, bool(row.batch), row.context_window, row.inference_geo)
        if key not in self.cache:
            usage = {measure: int(MTOK), "service_tier": row.service_tier, "batch": row.batch,
                     "context_window": row.context_window, "inference_geo": row.inference_geo}
            price = price_usage(usage, provider=provider, model=model, at=day)
            if price.total is None:
                self.cache[key] = None
            else:
                in_force = rules_at(self.rules, provider=provider, model=model, at=day)
                contracted = apply_rules(price, in_force, at=day) if in_force else price
                cost = contracted.total if contracted.total is not None and contracted.currency == price.currency \
                    else price.total
                self.cache[key] = (price.total / MTOK, cost / MTOK, contracted.price_version)
        return self.cache[key]


def focus_rows(conn: Connection, org_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The organisation's FOCUS rows for daily charge periods in [start, end)."""
    c = t.cost_records.c
    costs = conn.execute(select(t.cost_records).where(
        c.org_id == org_id, c.bucket_width == "1d", c.bucket_start >= start, c.bucket_start < end)
        .order_by(c.bucket_start, c.provider, c.model, c.project, c.line_item, c.id)).all()
    usage = _usage_index(conn, org_id, start, end)
    pricer = _UnitPricer(load_rules(conn, org_id))
    accounts = {r.id: r.name for r in conn.execute(select(t.connections.c.id, t.connections.c.name)
                                                   .where(t.connections.c.org_id == org_id))}
    names = {(r.kind, r.object_id): r.name for r in conn.execute(
        select(t.provider_objects.c.kind, t.provider_objects.c.object_id, t.provider_objects.c.name)
        .where(t.provider_objects.c.org_id == org_id))}
    slug = conn.execute(select(t.organisations.c.slug).where(t.organisations.c.id == org_id)).scalar()
    fx = None
    rows = []
    for cost in costs:
        billed = from_nanos(cost.amount_nanos)
        day = cost.bucket_start
        measure = MEASURE_OF.get(cost.token_type or "")
        # a credit (negative amount) is not usage: its list and contracted cost are the credit itself
        priced = _price_line(cost, measure, usage, pricer) if measure and cost.model and billed >= 0 else None
        label = LABELS.get(cost.provider, cost.provider.title())
        list_cost = contracted = billed
        source, version = "billed", None
        consumed_unit = UNIT_WORDS.get(cost.quantity_unit or "", None)
        consumed = Decimal(cost.quantity) if cost.quantity and consumed_unit else None
        pricing_unit = consumed_unit or "Days"
        pricing_qty = consumed if consumed is not None else Decimal(1)
        if measure:
            consumed_unit, pricing_unit = "Tokens", TOKEN_UNIT
            tokens = Decimal(cost.quantity) if cost.quantity else Decimal(priced.quantity if priced else 0)
            consumed, pricing_qty = tokens, tokens / MTOK
        if priced is not None and priced.known and priced.quantity:
            list_cost, contracted, version = priced.list_cost, priced.contracted_cost, priced.version
            if consumed is not None and consumed != priced.quantity:  # the bill's own quantity, at the usage's rates
                list_cost, contracted = (list_cost * consumed / priced.quantity,
                                         contracted * consumed / priced.quantity)
            if cost.currency != "USD":  # the catalog prices in USD
                fx = fx or load_rates(conn)
                try:
                    list_cost = convert(list_cost, "USD", cost.currency, on=day, rates=fx).amount
                    contracted = convert(contracted, "USD", cost.currency, on=day, rates=fx).amount
                except FxError as exc:
                    raise FxError(f"FOCUS export: cost in {cost.currency} on {day:%Y-%m-%d} needs a USD rate. {exc}") \
                        from None
            source = "catalog+rules" if version and "+rules:" in version else "catalog"
        category = "Credit" if billed < 0 else "Usage"
        project_kind = "workspace" if cost.provider == "anthropic" else "project"
        account = accounts.get(cost.connection_id) or cost.source
        tags = {k: v for k, v in (("tallybook/project", cost.project), ("tallybook/api_key", cost.api_key),
                                  ("tallybook/service_tier", cost.service_tier), ("tallybook/source", cost.source),
                                  ("tallybook/token_type", cost.token_type), ("tallybook/organisation", slug))
                if v}
        month = day.replace(day=1)
        sku = f"{cost.provider}/{cost.model or cost.cost_type or cost.line_item or 'other'}"
        rows.append({
            "BilledCost": q(billed), "BillingAccountId": f"{slug}/{account}",
            "BillingAccountName": f"{label} ({account})", "BillingCurrency": cost.currency,
            "BillingPeriodStart": month, "BillingPeriodEnd": (month + timedelta(days=32)).replace(day=1),
            "ChargeCategory": category, "ChargeClass": None,
            "ChargeDescription": cost.line_item or " ".join(filter(None, (cost.model, cost.token_type,
                                                                           cost.cost_type))) or label,
            "ChargePeriodStart": day, "ChargePeriodEnd": day + timedelta(days=1),
            "ContractedCost": q(contracted), "EffectiveCost": q(billed), "InvoiceIssuerName": label,
            "ListCost": q(list_cost), "PricingQuantity": q(pricing_qty), "PricingUnit": pricing_unit,
            "ProviderName": label, "PublisherName": label, "ServiceCategory": SERVICE_CATEGORY,
            "ServiceName": f"{label} API", "ServiceSubcategory": SERVICE_SUBCATEGORY,
            "ChargeFrequency": "Usage-Based", "PricingCategory": "Standard",
            "ConsumedQuantity": None if consumed is None or category != "Usage" else q(consumed),
            "ConsumedUnit": None if consumed is None or category != "Usage" else consumed_unit,
            "ListUnitPrice": q(list_cost / pricing_qty) if source != "billed" and pricing_qty else None,
            "ContractedUnitPrice": q(contracted / pricing_qty) if source != "billed" and pricing_qty else None,
            "SkuId": sku, "SkuPriceId": f"{sku}/{cost.token_type or cost.cost_type or 'unit'}/"
                                        f"{cost.service_tier or 'standard'}",
            "SkuMeter": cost.token_type or cost.cost_type or cost.quantity_unit,
            "SubAccountId": cost.project, "SubAccountName": names.get((project_kind, cost.project or "")),
            "SubAccountType": project_kind.title() if cost.project else None,
            "RegionId": cost.inference_geo if cost.inference_geo not in (None, "not_available") else None,
            "Tags": json.dumps(tags, sort_keys=True, separators=(",", ":")),
            "x_CostOrigin": cost.origin, "x_ListCostSource": source, "x_PriceVersion": version,
        })
    return rows


def _usage_index(conn: Connection, org_id: int, start: datetime, end: datetime) -> dict[tuple[Any, ...], list[Any]]:
    """Vendor-reported daily token usage by (day, provider, model, project)."""
    u = t.usage_records.c
    found: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for row in conn.execute(select(t.usage_records).where(
            u.org_id == org_id, u.bucket_width == "1d", u.bucket_start >= start, u.bucket_start < end,
            u.source != "gateway", u.unit.is_(None))):
        found[(row.bucket_start, row.provider, row.model, row.project)].append(row)
    return found


def _price_line(cost: Any, measure: str, usage: dict[tuple[Any, ...], list[Any]], pricer: _UnitPricer) -> _Priced:
    priced = _Priced()
    versions = set()
    for row in usage.get((cost.bucket_start, cost.provider, cost.model, cost.project), ()):
        if any(getattr(cost, d) is not None and getattr(cost, d) != getattr(row, d) for d in NARROWING):
            continue
        quantity = int(getattr(row, measure) or 0)
        if not quantity:
            continue
        unit = pricer.per_token(cost.provider, cost.model, cost.bucket_start, measure, row)
        priced.quantity += quantity
        if unit is None:
            priced.known = False
            continue
        priced.list_cost += unit[0] * quantity
        priced.contracted_cost += unit[1] * quantity
        versions.add(unit[2])
    priced.version = ",".join(sorted(v for v in versions if v)) or None
    return priced
