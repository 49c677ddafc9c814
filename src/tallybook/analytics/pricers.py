"""The price catalog as the small callables the analytics functions take (list cost, blended, unit prices).

Kept in one place so the CLI, the API and the dashboard price usage the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tallybook.analytics.optimize import UnitPrices
from tallybook.pricing.catalog import list_cost, list_price, price_epochs, price_usage
from tallybook.pricing.rules import Rule, apply_rules, rules_at


class CatalogPricer:
    """List cost of one group of usage on one day, or None when the model has no list price.

    `price_epochs` tells `rates` on which days a model's price can change, so a year of daily usage
    is priced once per price period instead of once per day (the list cost is the same).
    """

    def __call__(self, provider: str, model: str | None, day: datetime,
                 measures: dict[str, Any]) -> Decimal | None:
        if not model:
            return None
        return list_cost(provider, model, day, measures)

    @staticmethod
    def price_epochs(provider: str, model: str | None) -> tuple[date, ...]:
        return tuple(price_epochs(provider, model)) if model else ()


list_pricer = CatalogPricer()


class NegotiatedPricer:
    """The organisation's own cost of one group of usage: list price overlaid by its pricing rules
    (negotiated rates and discounts in force on the day; markups are customer prices, not cost)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)

    def __call__(self, provider: str, model: str | None, day: datetime,
                 measures: dict[str, Any]) -> Decimal | None:
        if not model:
            return None
        price = price_usage(measures, provider=provider, model=model, at=day)
        if not self.rules:
            return price.total
        in_force = rules_at(self.rules, provider=provider, model=model, at=day)
        return apply_rules(price, in_force, at=day).total if in_force else price.total


def blended_list_price(provider: str, model: str, at: datetime) -> Decimal | None:
    """(3 x input + output) / 4 in USD per 1M tokens, the market index's unit."""
    price = list_price(provider, model, at=at)
    if price is None or price.input_mtok is None or price.output_mtok is None:
        return None
    return (3 * price.input_mtok + price.output_mtok) / 4


def unit_prices(provider: str, model: str, at: datetime) -> UnitPrices | None:
    price = list_price(provider, model, at=at)
    if price is None or price.input_mtok is None or price.output_mtok is None:
        return None
    cache_read = price.cache_read_mtok if price.cache_read_mtok is not None else price.input_mtok
    return UnitPrices(price.input_mtok, cache_read, price.output_mtok)
