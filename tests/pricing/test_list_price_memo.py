"""`list_price` remembers its answers per price period; the remembered answer is the one it would work out afresh."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest

from tallybook.pricing.catalog import (
    Catalog,
    _list_price,
    default_catalog,
    list_price,
    price_epochs,
    price_usage,
)

TIERS = (None, "default", "standard", "priority", "flex", "batch")
WINDOWS = (None, "0-200k", "200k-1M", "nonsense")


def fresh(provider: str, model: str, at: datetime, tier: str | None, window: str | int | None,
          catalog: Catalog | None = None) -> object:
    cat = catalog or default_catalog()
    info = cat.find(provider, model)
    assert info is not None
    return _list_price(cat, info, provider.lower(), model, at, tier, window)[0]


def days_around(epochs: list[date]) -> list[datetime]:
    """Midnights on, just before and well after every price change, and a day long before them."""
    days = {date(2024, 1, 1), date(2026, 11, 25)}
    for day in epochs:
        days |= {day - timedelta(days=1), day, day + timedelta(days=1), day + timedelta(days=40)}
    return [datetime.combine(d, time()) for d in sorted(days)]


@pytest.mark.parametrize(("provider", "model"), [
    ("openai", "gpt-4o-2024-08-06"), ("openai", "gpt-4.1-2025-04-14"), ("openai", "o3"),
    ("anthropic", "claude-sonnet-4-20250514"), ("anthropic", "claude-3-5-haiku-20241022"),
    ("anthropic", "claude-sonnet-4-5"), ("deepseek", "deepseek-v4-pro"), ("deepseek", "deepseek-chat"),
])
def test_remembered_list_prices_equal_fresh_ones(provider: str, model: str) -> None:
    for at in days_around(price_epochs(provider, model)):
        for tier in TIERS:
            for window in WINDOWS:
                first = list_price(provider, model, at=at, service_tier=tier, context_window=window)
                again = list_price(provider, model, at=at, service_tier=tier, context_window=window)
                assert first == again == fresh(provider, model, at, tier, window), (at, tier, window)


def test_off_peak_prices_follow_the_time_of_day() -> None:
    # deepseek's off-peak price holds at some hours only: never remembered for a time other than midnight
    day = date(2026, 3, 2)
    seen = set()
    for hour in range(24):
        at = datetime.combine(day, time(hour, 30))
        price = list_price("deepseek", "deepseek-chat", at=at)
        assert price == fresh("deepseek", "deepseek-chat", at, None, None)
        assert price is not None
        seen.add(price.input_mtok)
    assert len(seen) == 2  # peak and off-peak: the comparison covers both


def test_a_price_change_in_a_custom_catalog_is_seen_on_its_day() -> None:
    cat = Catalog.from_dict({"openai": {"gpt-test": [{"input_mtok": "2", "output_mtok": "8"},
                                                     {"start_date": "2026-03-01", "input_mtok": "1",
                                                      "output_mtok": "4"}]}})
    before = list_price("openai", "gpt-test", at=date(2026, 2, 28), catalog=cat)
    after = list_price("openai", "gpt-test", at=date(2026, 3, 1), catalog=cat)
    later = list_price("openai", "gpt-test", at=date(2026, 3, 20), catalog=cat)
    assert before is not None and after is not None
    assert (before.input_mtok, after.input_mtok) == (2, 1)
    assert later == after and after.effective_from == date(2026, 3, 1)


def test_the_missing_tier_note_names_each_day() -> None:
    # the catalog has no flex price for gpt-4o: the note says which day was asked, remembered or not
    for day in (date(2026, 10, 1), date(2026, 10, 2)):
        price = list_price("openai", "gpt-4o-2024-08-06", at=day, service_tier="flex")
        assert price is not None
        assert price.notes[0] == f"no flex price in the catalog at {day}; priced at standard"


def test_priced_usage_with_a_request_sized_context_is_not_remembered() -> None:
    cat = Catalog.from_dict({"anthropic": {"long": {"prices": {
        "input_mtok": {"base": "3", "tiers": [{"start": 200000, "price": "6"}]}, "output_mtok": "15"}}}})
    small = price_usage({"input_tokens": 1000, "requests": 1}, provider="anthropic", model="long",
                        at=date(2026, 1, 1), catalog=cat)
    large = price_usage({"input_tokens": 300_000, "requests": 1}, provider="anthropic", model="long",
                        at=date(2026, 1, 1), catalog=cat)
    assert (small.total, large.total) == (Decimal("0.003"), Decimal("1.8"))
    assert not cat._prices  # a request's own token count is no key worth keeping
