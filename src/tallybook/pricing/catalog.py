"""The list-price catalog: genai-prices' data and its price history, read in tallybook's usage measures.

    list_price(provider, model, *, at, ...) -> ModelPrice | None       per-unit list prices in force at `at`
    price_usage(usage, *, provider, model, at, catalog=None) -> Price  list cost of a quantity of usage
    list_cost(provider, model, at, usage) -> Decimal | None            its total, shaped as analytics' ListPricer
    price_changes(provider, model) -> list[date]                       days the catalog's price changed
    price_epochs(provider, model) -> list[date]                        days any price or variant starts

`usage` is a UsageRecord, a ledger row or any mapping/object with our measure names:
`input_tokens` is UNCACHED input; `cache_read_tokens`, `cache_write_5m_tokens` and
`cache_write_1h_tokens` are separate; `audio_input_tokens`/`audio_output_tokens` are the audio parts
of input/output (OpenAI), priced at the audio rate where the catalog has one (else as text);
`reasoning_tokens` are part of output and not priced again; `unit` + `quantity` is one non-token
unit. Hints read from it: `batch`, `service_tier`, `context_window`, `inference_geo`, `requests`.

Where the catalog lacks a token price it is derived from the provider's published rules
(provider-apis.md §5, docs/pricing.md), and the line says so:
    Anthropic: cache read 0.1x input, 5 min cache write 1.25x input, 1 h cache write 2x input;
               inference_geo "us" 1.1x every token price.
    OpenAI and others: cached input and cache writes without a price of their own cost input price.
    Batch (`batch` or service_tier "batch"): the catalog's batch price where it has one, else 50 % off
    every token price (OpenAI, Anthropic); other providers' batch usage is priced at standard, noted.
Long-context tiers are chosen by `context_window` ("0-200k", "200k-1M") or, for a single request
(`requests == 1`), by its total input tokens; a bucket without a hint is priced at the base tier, noted.
An unknown provider, model or unit is never priced at zero: `known=False`, `total=None`.

The catalog is swappable: every function takes `catalog=`; `Catalog.from_dict` builds a small one for
tests; `Catalog.bundled()` is genai-prices' snapshot (the default).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

import genai_prices
from genai_prices import data_snapshot
from genai_prices import types as gp
from genai_prices.data_units import unit_data

from tallybook.pricing.price import Price, PriceLine

MTOK = 1_000_000
# Our token measures and the price each is charged at, in the order a price lists them.
TOKEN_UNITS = (
    ("input_tokens", "input_mtok"),
    ("audio_input_tokens", "input_audio_mtok"),
    ("cache_read_tokens", "cache_read_mtok"),
    ("cache_write_5m_tokens", "cache_write_5m_mtok"),
    ("cache_write_1h_tokens", "cache_write_1h_mtok"),
    ("output_tokens", "output_mtok"),
    ("audio_output_tokens", "output_audio_mtok"),
)
TOKEN_PRICE_KEYS = tuple(key for _, key in TOKEN_UNITS)
# Non-token units as our records name them -> catalog price keys that can price them, best first.
UNIT_PRICES: dict[str, tuple[str, ...]] = {
    "web_search_requests": ("web_searches_kcount",),
    "characters": ("input_mchars",),
    "seconds": ("input_audio_hours", "audio_hours"),
}
UNIT_PER: dict[str, int] = {spec["price_key"]: spec["per"] for spec in unit_data.values()}
BATCH_DISCOUNT = {"openai": Decimal("0.5"), "anthropic": Decimal("0.5")}  # price multiple for batch usage
ANTHROPIC_CACHE = {"cache_read_mtok": Decimal("0.1"), "cache_write_5m_mtok": Decimal("1.25"),
                   "cache_write_1h_mtok": Decimal(2)}
GEO_MULTIPLE = {("anthropic", "us"): Decimal("1.1")}
NEUTRAL_TIERS = frozenset({"default", "standard", "auto", "batch"})


class Derivation(NamedTuple):
    base_key: str  # the catalog price it is a multiple of
    multiple: Decimal
    note: str


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """List prices of one model at one time, in USD per 1M tokens (`*_mtok`) or per the unit's `per`."""

    provider: str
    model: str  # as asked, e.g. "gpt-4o-2024-08-06"
    catalog_model: str  # the catalog's id, e.g. "gpt-4o"
    price_version: str  # "genai-prices 0.2.3:o3@2025-06-10"
    effective_from: date | None  # start of this price in the catalog's history; None: since listed
    input_mtok: Decimal | None = None
    cache_read_mtok: Decimal | None = None
    cache_write_5m_mtok: Decimal | None = None
    cache_write_1h_mtok: Decimal | None = None
    output_mtok: Decimal | None = None
    input_audio_mtok: Decimal | None = None
    output_audio_mtok: Decimal | None = None
    units: Mapping[str, Decimal] = field(default_factory=dict)  # other prices: web_searches_kcount, ...
    derived: Mapping[str, Derivation] = field(default_factory=dict)  # token prices not in the catalog
    batch: Mapping[str, Decimal] = field(default_factory=dict)  # batch rate per token price key
    batch_derived: frozenset[str] = frozenset()  # batch rates from the provider's discount, not the catalog
    tiers: Mapping[str, tuple[tuple[int, Decimal], ...]] = field(default_factory=dict)  # ((0, base), (200000, 6))
    tier_start: int = 0  # the long-context tier these rates are for (0: base)
    currency: str = "USD"
    notes: tuple[str, ...] = ()

    def rate(self, price_key: str) -> Decimal | None:
        if price_key in TOKEN_PRICE_KEYS:
            value: Decimal | None = getattr(self, price_key)
            return value
        return self.units.get(price_key)


class Catalog:
    """A snapshot of list prices: genai-prices' providers and models, looked up by our provider names."""

    def __init__(self, providers: Sequence[gp.Provider], *, version: str) -> None:
        self.version = version
        self._snapshot = data_snapshot.DataSnapshot(providers=list(providers), from_auto_update=False)
        self._found: dict[tuple[str, str], gp.ModelInfo | None] = {}
        self._starts: dict[int, tuple[tuple[date, ...], bool]] = {}  # id(info) -> _start_dates
        self._prices: dict[tuple[Any, ...], tuple[ModelPrice, bool]] = {}  # list_price's answers, see _price_key

    def __repr__(self) -> str:
        return f"Catalog({self.version!r}, {len(self._snapshot.providers)} providers)"

    @classmethod
    def bundled(cls) -> Catalog:
        """genai-prices' own snapshot (the package's data, or the one its UpdatePrices installed)."""
        return _bundled()

    def find(self, provider: str, model: str) -> gp.ModelInfo | None:
        key = (provider.lower(), model.lower())
        if key not in self._found:
            try:
                _, info = self._snapshot.find_provider_model(model, None, provider, None)
            except LookupError:
                info = None
            self._found[key] = info
        return self._found[key]

    def provider_for(self, model: str) -> str | None:
        """The provider whose model names look like `model` ("gpt-4o" -> openai), if any."""
        try:
            return self._snapshot.find_provider(model.lower(), None, None).id
        except LookupError:
            return None

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]], *, version: str = "custom") -> Catalog:
        """A catalog from plain data, for tests and private price lists::

            {"openai": {"gpt-test": [{"input_mtok": "2", "output_mtok": "8"},             # oldest first
                                     {"start_date": "2026-03-01", "input_mtok": "1"}],
                        "embed-*": {"input_mtok": "0.02"},                               # prefix match
                        "long": {"prices": {"input_mtok": {"base": "3", "tiers": [{"start": 200000, "price": "6"}]}},
                                 "variants": [{"when": {"processing": "batch"}, "input_mtok": "1.5"}]}}}
        """
        providers = []
        for provider_id, models in data.items():
            infos = []
            for name, spec in models.items():
                if isinstance(spec, Mapping) and "prices" in spec:
                    prices, variants = spec["prices"], spec.get("variants") or []
                else:
                    prices, variants = spec, []
                match: Any = (gp.ClauseStartsWith(starts_with=name[:-1]) if name.endswith("*")
                              else gp.ClauseEquals(equals=name))
                infos.append(gp.ModelInfo(
                    id=name.rstrip("*"), match=match, prices=_history_from_data(prices),
                    price_variants=[_variant_from_data(v) for v in variants] or None))
            providers.append(gp.Provider(id=provider_id, name=provider_id, api_pattern="", models=infos))
        return cls(providers, version=version)


@lru_cache(maxsize=1)
def _bundled() -> Catalog:
    return Catalog(data_snapshot.get_snapshot().providers, version=f"genai-prices {genai_prices.__version__}")


_default: list[Catalog] = []


def default_catalog() -> Catalog:
    return _default[-1] if _default else Catalog.bundled()


def set_default_catalog(catalog: Catalog | None) -> None:
    """Make `catalog` what every call without `catalog=` uses (None: back to the bundled one)."""
    _default.clear()
    if catalog is not None:
        _default.append(catalog)


# --- list prices ----------------------------------------------------------------------------------

def list_price(
    provider: str, model: str, *, at: datetime | date, service_tier: str | None = None,
    context_window: str | int | None = None, catalog: Catalog | None = None,
) -> ModelPrice | None:
    """The list prices of `model` in force at `at`, or None when the catalog does not know it.

    `service_tier` selects the catalog's tier prices (OpenAI priority/flex); `context_window` a
    long-context tier: a label such as "200k-1M" or one request's total input tokens.
    """
    cat = catalog or default_catalog()
    info = cat.find(provider, model)
    if info is None:
        return None
    provider, when = provider.lower(), as_utc(at)
    key = _price_key(cat, info, provider, model, when, service_tier, context_window)
    known = None if key is None else cat._prices.get(key)
    if known is None:
        known = _list_price(cat, info, provider, model, when, service_tier, context_window)
        if key is not None:
            if len(cat._prices) >= PRICE_MEMO:
                cat._prices.clear()
            cat._prices[key] = known
        return known[0]
    price, no_tier = known
    if no_tier:  # the one note that names the day comes first
        return replace(price, notes=(_no_tier_note(service_tier, when), *price.notes[1:]))
    return price


PRICE_MEMO = 4096  # list prices remembered per catalog (a few per model, tier and price period)


def _price_key(cat: Catalog, info: gp.ModelInfo, provider: str, model: str, when: datetime,
               service_tier: str | None, context_window: str | int | None) -> tuple[Any, ...] | None:
    """What `list_price` depends on besides the catalog, when that is few enough values to remember:
    the price period holding `when` (between two of `price_epochs` the catalog's date constraints
    all answer alike), for a day's usage (midnight) or a model without time-of-day prices, and a
    context window given as a label. None: price it afresh (a request's own input tokens, say)."""
    if context_window is not None and not isinstance(context_window, str):
        return None
    found = cat._starts.get(id(info))
    if found is None:
        found = cat._starts[id(info)] = _start_dates(info)
    starts, by_time = found
    if by_time and when.time() != time():
        return None
    return provider, model, bisect_right(starts, when.date()), service_tier, context_window


def _start_dates(info: gp.ModelInfo) -> tuple[tuple[date, ...], bool]:
    """The days any of `info`'s prices starts, and whether a price also depends on the time of day."""
    history = [] if isinstance(info.prices, gp.ModelPrice) else info.prices
    constraints = [c.constraint for c in history] + [v.constraint for v in info.price_variants or ()]
    by_time = any(c is not None and not isinstance(c, gp.StartDateConstraint) for c in constraints)
    return tuple(sorted({c.start_date for c in constraints if isinstance(c, gp.StartDateConstraint)})), by_time


def _list_price(cat: Catalog, info: gp.ModelInfo, provider: str, model: str, when: datetime,
                service_tier: str | None, context_window: str | int | None) -> tuple[ModelPrice, bool]:
    """`list_price` worked out, and whether the catalog had no price for the service tier (the first
    note then names the day)."""
    context = {"service_tier": service_tier} if service_tier and service_tier not in NEUTRAL_TIERS else {}
    _, start = _history(info, when)
    standard = info.get_prices(when, context or None)
    notes: list[str] = []
    tier_keys = _variant_keys(info, when, context, "service_tier")
    if context and not tier_keys:
        notes.append(_no_tier_note(service_tier, when))
    # Batch and service tiers do not combine: a batch price is the catalog's batch variant, or a discount.
    batch_keys = _variant_keys(info, when, {"processing": "batch"}, "processing")
    batch_price = info.get_prices(when, {"processing": "batch"})
    threshold = _threshold(context_window)
    if isinstance(context_window, str) and not _WINDOW.match(context_window):
        notes.append(f"context_window {context_window!r} not understood; base tier used")

    def pick(price: gp.ModelPrice, *names: str) -> tuple[str, Decimal] | None:
        for name in names:
            value = getattr(price, name, None)
            if value is not None:
                return name, _resolve(value, threshold)
        return None

    sources = {"input_mtok": ("input_mtok",), "cache_read_mtok": ("cache_read_mtok",),
               "cache_write_5m_mtok": ("cache_write_5m_mtok", "cache_write_mtok"),
               "cache_write_1h_mtok": ("cache_write_1h_mtok",) if provider == "anthropic"
               else ("cache_write_1h_mtok", "cache_write_mtok"),
               "output_mtok": ("output_mtok",), "input_audio_mtok": ("input_audio_mtok",),
               "output_audio_mtok": ("output_audio_mtok",)}
    rates: dict[str, Decimal | None] = {}
    origin: dict[str, str] = {}
    derived: dict[str, Derivation] = {}
    for key, names in sources.items():
        found = pick(standard, *names)
        rates[key] = found[1] if found else None
        if found:
            origin[key] = found[0]
    base = rates["input_mtok"]
    for key in ("cache_read_mtok", "cache_write_5m_mtok", "cache_write_1h_mtok"):
        if rates[key] is None and base is not None:
            if provider == "anthropic":
                multiple = ANTHROPIC_CACHE[key]
                derived[key] = Derivation("input_mtok", multiple, f"{multiple}x input (Anthropic rule)")
            else:
                derived[key] = Derivation("input_mtok", Decimal(1), "charged as input (no price of its own)")
            rates[key] = base * derived[key].multiple

    batch: dict[str, Decimal] = {}
    batch_derived: set[str] = set()
    discount = BATCH_DISCOUNT.get(provider)
    for key in TOKEN_PRICE_KEYS:
        if rates[key] is None:
            continue
        src = origin.get(key) or (derived[key].base_key if key in derived else key)
        if src in batch_keys and (found := pick(batch_price, src)) is not None:
            batch[key] = found[1] * (derived[key].multiple if key in derived else 1)
        elif discount is not None:
            batch[key] = rates[key] * discount  # type: ignore[operator]
            batch_derived.add(key)

    # Everything else the catalog prices (web searches, characters, audio hours, image tokens...).
    units = {key: _resolve(value, threshold) for key, value in vars(standard).items()
             if value is not None and not key.startswith("_") and key not in TOKEN_PRICE_KEYS
             and key != "cache_write_mtok"}
    tiers = {key: ((0, value.base), *((t.start, t.price) for t in value.tiers))
             for key, value in vars(standard).items() if isinstance(value, gp.TieredPrices)}
    tier_start = 0
    if threshold is not None:
        for value in vars(standard).values():
            if isinstance(value, gp.TieredPrices):
                tier_start = max([t.start for t in value.tiers if threshold > t.start], default=0)
                break
    version = f"{cat.version}:{info.id}" + (f"@{start}" if start else "") + (
        f"[{service_tier}]" if tier_keys else "")
    return ModelPrice(
        provider=provider, model=model, catalog_model=info.id, price_version=version, effective_from=start,
        input_mtok=rates["input_mtok"], cache_read_mtok=rates["cache_read_mtok"],
        cache_write_5m_mtok=rates["cache_write_5m_mtok"], cache_write_1h_mtok=rates["cache_write_1h_mtok"],
        output_mtok=rates["output_mtok"], input_audio_mtok=rates["input_audio_mtok"],
        output_audio_mtok=rates["output_audio_mtok"], units=units, derived=derived, batch=batch,
        batch_derived=frozenset(batch_derived), tiers=tiers, tier_start=tier_start, notes=tuple(notes)), bool(context and not tier_keys)


def _no_tier_note(service_tier: str | None, when: datetime) -> str:
    return f"no {service_tier} price in the catalog at {when:%Y-%m-%d}; priced at standard"


def price_changes(provider: str, model: str, *, catalog: Catalog | None = None) -> list[date]:
    """The days the catalog's price for `model` changed, oldest first (empty: one price throughout)."""
    info = (catalog or default_catalog()).find(provider, model)
    if info is None or isinstance(info.prices, gp.ModelPrice):
        return []
    return sorted(c.constraint.start_date for c in info.prices if isinstance(c.constraint, gp.StartDateConstraint))


def price_epochs(provider: str, model: str, *, catalog: Catalog | None = None) -> list[date]:
    """Every day on which any price of `model` starts (its history, or a tier or batch variant), oldest
    first: between two of them `list_price` at midnight is the same every day, so usage priced per
    day may be summed over such a run of days and priced once (token prices are linear)."""
    info = (catalog or default_catalog()).find(provider, model)
    if info is None:
        return []
    history = [] if isinstance(info.prices, gp.ModelPrice) else info.prices
    constraints: list[Any] = [c.constraint for c in history]
    constraints += [v.constraint for v in info.price_variants or ()]
    return sorted({c.start_date for c in constraints if isinstance(c, gp.StartDateConstraint)})


# --- pricing usage --------------------------------------------------------------------------------

def price_usage(usage: Any, *, provider: str, model: str | None, at: datetime | date,
                catalog: Catalog | None = None) -> Price:
    """The list cost of `usage` of `model` at `at` (see the module docstring for the measures)."""
    cat = catalog or default_catalog()
    when = as_utc(at)
    u = _Usage.read(usage)
    head: dict[str, Any] = {"provider": provider, "model": model or "", "at": when, "batch": u.batch,
                            "inference_geo": u.inference_geo}
    total_input = u.input_tokens + u.cache_read_tokens + u.cache_write_5m_tokens + u.cache_write_1h_tokens
    hint: str | int | None = u.context_window or (total_input if u.requests == 1 else None)
    lp = list_price(provider, model, at=when, service_tier=u.service_tier, context_window=hint,
                    catalog=cat) if model else None
    if lp is None:
        why = "the usage names no model" if not model else f"{provider}/{model} is not in {cat.version}"
        return Price(**head, lines=tuple(_unpriced_lines(u)), known=False, notes=(why,))

    notes = list(lp.notes)
    geo = GEO_MULTIPLE.get((provider.lower(), u.inference_geo or ""))
    lines: list[PriceLine] = []

    def token_line(unit: str, key: str, quantity: int, rate_key: str | None = None) -> None:
        if quantity <= 0:
            return
        rate_key = rate_key or key
        deriv = lp.derived.get(rate_key)
        parts = [deriv.note] if deriv else []
        rate = lp.rate(rate_key)
        if u.batch and rate is not None:
            if rate_key in lp.batch:
                rate = lp.batch[rate_key]
                parts.append("batch -50%" if rate_key in lp.batch_derived else "batch (catalog)")
            else:
                parts.append("batch priced at standard (no batch price known)")
        if geo is not None and rate is not None:
            rate *= geo
            parts.append(f"inference_geo {u.inference_geo} {geo}x")
        lines.append(PriceLine(
            unit=unit, price_key=rate_key, quantity=quantity, per=MTOK, rate=rate,
            source="unknown" if rate is None else "derived" if deriv else "catalog", note="; ".join(parts),
            base_key=deriv.base_key if deriv else rate_key, multiple=deriv.multiple if deriv else Decimal(1),
            batch=u.batch))

    audio_in = min(u.audio_input_tokens, u.input_tokens) if lp.input_audio_mtok is not None else 0
    audio_out = min(u.audio_output_tokens, u.output_tokens) if lp.output_audio_mtok is not None else 0
    if u.audio_input_tokens and not audio_in or u.audio_output_tokens and not audio_out:
        notes.append("audio tokens priced at the text rate (no audio price in the catalog)")
    token_line("input_tokens", "input_mtok", u.input_tokens - audio_in)
    token_line("audio_input_tokens", "input_audio_mtok", audio_in)
    token_line("cache_read_tokens", "cache_read_mtok", u.cache_read_tokens)
    token_line("cache_write_5m_tokens", "cache_write_5m_mtok", u.cache_write_5m_tokens)
    token_line("cache_write_1h_tokens", "cache_write_1h_mtok", u.cache_write_1h_tokens)
    token_line("output_tokens", "output_mtok", u.output_tokens - audio_out)
    token_line("audio_output_tokens", "output_audio_mtok", audio_out)
    if u.unit and u.quantity:
        keys = UNIT_PRICES.get(u.unit, ())
        key = next((k for k in keys if k in lp.units), None)
        if key is None:
            notes.append(f"no list price for {u.unit} of {lp.catalog_model}")
        lines.append(PriceLine(unit=u.unit, price_key=key or (keys[0] if keys else u.unit), quantity=u.quantity,
                               per=UNIT_PER.get(key or "", 1), rate=lp.units.get(key or ""),
                               source="catalog" if key else "unknown", base_key=key or ""))
    if lp.tiers and hint is None and total_input:
        notes.append("long-context tier not applied: the usage has no context_window")
    return Price(**head, lines=tuple(lines), price_version=lp.price_version, catalog_model=lp.catalog_model,
                 effective_from=lp.effective_from, notes=tuple(notes))


def list_cost(provider: str, model: str | None, at: datetime | date, usage: Any, *,
              catalog: Catalog | None = None) -> Decimal | None:
    """`price_usage(...).total`: pass it to `analytics.rates.rates(..., list_pricer=list_cost)`."""
    return price_usage(usage, provider=provider, model=model, at=at, catalog=catalog).total


@dataclass(frozen=True, slots=True)
class _Usage:
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    requests: int = 0
    unit: str | None = None
    quantity: int = 0
    batch: bool = False
    service_tier: str | None = None
    context_window: str | None = None
    inference_geo: str | None = None

    @classmethod
    def read(cls, usage: Any) -> _Usage:
        get: Any = usage.get if isinstance(usage, Mapping) else (lambda name: getattr(usage, name, None))

        counts = {name: int(get(name) or 0) for name in (
            "input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "output_tokens",
            "audio_input_tokens", "audio_output_tokens", "requests", "quantity")}
        tier = get("service_tier")
        return cls(**counts, unit=get("unit") or None, batch=bool(get("batch")) or tier == "batch",
                   service_tier=tier, context_window=get("context_window") or None,
                   inference_geo=get("inference_geo") or None)


def _unpriced_lines(u: _Usage) -> list[PriceLine]:
    lines = [PriceLine(unit=unit, price_key=key, quantity=getattr(u, unit), per=MTOK, rate=None,
                       source="unknown", base_key=key, batch=u.batch)
             for unit, key in TOKEN_UNITS if unit not in ("audio_input_tokens", "audio_output_tokens")
             and getattr(u, unit) > 0]
    if u.unit and u.quantity:
        key = UNIT_PRICES.get(u.unit, (u.unit,))[0]
        lines.append(PriceLine(unit=u.unit, price_key=key, quantity=u.quantity, per=UNIT_PER.get(key, 1),
                               rate=None, source="unknown", base_key=key))
    return lines


# --- genai-prices data ----------------------------------------------------------------------------

def as_utc(at: datetime | date) -> datetime:
    """A naive UTC datetime (the ledger's convention) from a date or any datetime."""
    if not isinstance(at, datetime):
        return datetime.combine(at, time())
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def _history(info: gp.ModelInfo, when: datetime) -> tuple[gp.ModelPrice, date | None]:
    """The catalog's price in force at `when` and the day it started (genai-prices' own rule: the last
    conditional price whose constraint holds, else the first)."""
    if isinstance(info.prices, gp.ModelPrice):
        return info.prices, None
    for conditional in reversed(info.prices):
        if conditional.constraint is None or conditional.constraint.active(when):
            return conditional.prices, getattr(conditional.constraint, "start_date", None)
    return info.prices[0].prices, None


def _variant_keys(info: gp.ModelInfo, when: datetime, context: Mapping[str, str], dimension: str) -> set[str]:
    """Price keys that the catalog's variants on `dimension` (service_tier, processing) override at `when`."""
    keys: set[str] = set()
    for variant in info.price_variants or ():
        if variant.constraint is not None and not variant.constraint.active(when):
            continue
        if dimension in variant.when and all(context.get(k) == v for k, v in variant.when.items()):
            keys.update(k for k, v in vars(variant.prices).items() if v is not None)
    return keys


_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([km]?)\s*(?:-|\+|$)", re.IGNORECASE)


def _threshold(context_window: str | int | None) -> int | None:
    """Input tokens that pick a long-context tier: a request's count, or one more than a label's floor."""
    if context_window is None or isinstance(context_window, int):
        return context_window
    match = _WINDOW.match(context_window)
    if not match:
        return None
    floor = Decimal(match.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return int(floor) + 1 if floor else None


def _resolve(value: Decimal | gp.TieredPrices, threshold: int | None) -> Decimal:
    if not isinstance(value, gp.TieredPrices):
        return value
    price = value.base
    for tier in value.tiers:
        if threshold is not None and threshold > tier.start:
            price = tier.price
    return price


def _prices_from_data(data: Mapping[str, Any]) -> gp.ModelPrice:
    def value(v: Any) -> Decimal | gp.TieredPrices:
        if isinstance(v, Mapping):
            return gp.TieredPrices(base=Decimal(str(v["base"])), tiers=[
                gp.Tier(start=int(t["start"]), price=Decimal(str(t["price"]))) for t in v["tiers"]])
        return Decimal(str(v))

    return gp.ModelPrice(**{k: value(v) for k, v in data.items() if k not in ("start_date", "when")})


def _start(data: Mapping[str, Any]) -> gp.StartDateConstraint | None:
    start = data.get("start_date")
    if start is None:
        return None
    return gp.StartDateConstraint(start_date=start if isinstance(start, date) else date.fromisoformat(start))


def _history_from_data(prices: Any) -> gp.ModelPrice | list[gp.ConditionalPrice]:
    if isinstance(prices, Mapping):
        return _prices_from_data(prices)
    return [gp.ConditionalPrice(constraint=_start(p), prices=_prices_from_data(p)) for p in prices]


def _variant_from_data(data: Mapping[str, Any]) -> gp.PriceVariant:
    return gp.PriceVariant(when=dict(data["when"]), prices=_prices_from_data(data), constraint=_start(data))
