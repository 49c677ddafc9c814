"""The gateway's cached list prices are exactly `price_usage`'s, across models, tiers and price changes."""

from __future__ import annotations

import random
from datetime import datetime
from decimal import Decimal

import pytest

from tallybook.gateway.metering import ListPrices
from tallybook.pricing.catalog import Catalog, default_catalog, price_usage

CATALOG = Catalog.from_dict({
    "acme": {
        "tiered": {"prices": {"input_mtok": {"base": "3", "tiers": [{"start": 200000, "price": "6"}]},
                              "output_mtok": {"base": "15", "tiers": [{"start": 200000, "price": "22.5"}]},
                              "cache_read_mtok": "0.3"}},
        "changed": {"prices": [{"input_mtok": "1", "output_mtok": "2"},
                               {"start_date": "2026-06-01", "input_mtok": "0.5", "output_mtok": "1.5"}]},
        "embed": {"prices": {"input_mtok": "0.02"}},
    },
})


def measures(rng: random.Random, big: bool = False) -> dict[str, int]:
    top = 400_000 if big else 5_000
    return {"input_tokens": rng.randint(0, top), "cache_read_tokens": rng.choice([0, rng.randint(1, top)]),
            "cache_write_5m_tokens": rng.choice([0, 0, rng.randint(1, 3000)]),
            "cache_write_1h_tokens": rng.choice([0, 0, rng.randint(1, 3000)]),
            "output_tokens": rng.randint(0, 4000)}


@pytest.mark.parametrize(("catalog", "provider", "model"), [
    (None, "openai", "gpt-4o-mini"), (None, "openai", "gpt-4o"), (None, "anthropic", "claude-sonnet-4-5"),
    (None, "anthropic", "claude-haiku-4-5"), (None, "openai", "text-embedding-3-small"),
    (CATALOG, "acme", "tiered"), (CATALOG, "acme", "changed"), (CATALOG, "acme", "embed"),
    (None, "openai", "no-such-model"),
])
def test_cached_prices_equal_price_usage(catalog: Catalog | None, provider: str, model: str) -> None:
    rng = random.Random(model)
    prices = ListPrices(catalog)
    for n in range(300):
        at = datetime(2026, rng.choice([5, 6, 11]), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59))
        usage = measures(rng, big=n % 3 == 0)
        price = price_usage({**usage, "requests": 1}, provider=provider, model=model, at=at, catalog=catalog)
        assert prices.price(provider, model, at, usage) == (price.total, price.currency, price.price_version), usage


def test_the_long_context_tier_and_the_price_change_are_applied() -> None:
    prices = ListPrices(CATALOG)
    at = datetime(2026, 11, 25, 12)
    assert prices.price("acme", "tiered", at, {"input_tokens": 1000, "output_tokens": 1000})[0] == \
        (1000 * 3 + 1000 * 15) / Decimal(1_000_000)
    assert prices.price("acme", "tiered", at, {"input_tokens": 300_000})[0] == \
        Decimal(300_000 * 6) / 1_000_000
    assert prices.price("acme", "changed", datetime(2026, 5, 31, 23, 59), {"input_tokens": 10**6})[0] == 1
    assert prices.price("acme", "changed", datetime(2026, 6, 1, 0, 0), {"input_tokens": 10**6})[0] == \
        Decimal("0.5")
    assert prices.price("acme", "embed", at, {"input_tokens": 10, "output_tokens": 1})[0] is None  # no output price


def test_known_models_exist_in_the_bundled_catalog() -> None:
    for provider, model in (("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5")):
        assert default_catalog().find(provider, model) is not None
