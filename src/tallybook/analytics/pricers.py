"""The price catalog as the small callables the analytics functions take (list cost, blended, unit prices).

Kept in one place so the CLI, the API and the dashboard price usage the same way.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tallybook.analytics.optimize import UnitPrices
from tallybook.pricing.catalog import list_cost, list_price, price_epochs


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
