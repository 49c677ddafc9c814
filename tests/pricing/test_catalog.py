"""List prices from genai-prices: exact Decimal costs, price history, derived prices, batch, tiers, unknowns.

Expected figures are computed by hand from the catalog's published prices (in comments)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import genai_prices
import pytest

from tallybook.ledger.records import UsageRecord
from tallybook.pricing.catalog import Catalog, list_cost, list_price, price_changes, price_usage

D = Decimal


def test_a_small_usage_set_costs_its_exact_list_price() -> None:
    day = date(2026, 11, 1)
    usage = [
        # gpt-4o: input 2.5, cached input 1.25, output 10 $/MTok
        ("openai", "gpt-4o-2024-08-06", {"input_tokens": 1_234_567, "cache_read_tokens": 200_000,
                                         "output_tokens": 345_678}),
        # claude-sonnet-4: input 3, cache read 0.30, 5 min write 3.75, 1 h write 6, output 15 $/MTok
        ("anthropic", "claude-sonnet-4-20250514", {"input_tokens": 100_000, "cache_read_tokens": 1_000_000,
                                                   "cache_write_5m_tokens": 40_000, "cache_write_1h_tokens": 10_000,
                                                   "output_tokens": 20_000}),
        # text-embedding-3-small: 0.02 $/MTok
        ("openai", "text-embedding-3-small", {"input_tokens": 5_000_000}),
    ]
    prices = [price_usage(u, provider=p, model=m, at=day) for p, m, u in usage]
    # 3.0864175 + 0.25 + 3.45678 | 0.3 + 0.3 + 0.15 + 0.06 + 0.3 | 0.1
    assert [p.total for p in prices] == [D("6.7931975"), D("1.11"), D("0.1")]
    assert sum(p.total for p in prices if p.total is not None) == D("8.0031975")
    assert all(p.known and p.currency == "USD" and p.origin == "estimated" and p.basis == "list" for p in prices)
    sonnet = prices[1]
    assert [(ln.unit, ln.rate, ln.amount) for ln in sonnet.lines] == [
        ("input_tokens", D(3), D("0.3")), ("cache_read_tokens", D("0.3"), D("0.3")),
        ("cache_write_5m_tokens", D("3.75"), D("0.15")), ("cache_write_1h_tokens", D(6), D("0.06")),
        ("output_tokens", D(15), D("0.3"))]
    assert sonnet.catalog_model == "claude-sonnet-4-0"
    assert sonnet.price_version == f"genai-prices {genai_prices.__version__}:claude-sonnet-4-0"


def test_a_price_change_mid_window_prices_each_day_at_its_own_price() -> None:
    # o3's real history in genai-prices: 10 / 40 $/MTok until 2025-06-09, 2 / 8 from 2025-06-10.
    assert price_changes("openai", "o3-2025-04-16") == [date(2025, 6, 10)]
    daily = {"input_tokens": 1_000_000, "output_tokens": 100_000}
    days = [date(2025, 6, 8) + timedelta(days=i) for i in range(4)]
    prices = [price_usage(daily, provider="openai", model="o3-2025-04-16", at=d) for d in days]
    assert [p.total for p in prices] == [D(14), D(14), D("2.8"), D("2.8")]
    assert sum(p.total for p in prices if p.total is not None) == D("33.6")
    assert [p.effective_from for p in prices] == [None, None, date(2025, 6, 10), date(2025, 6, 10)]
    assert prices[0].price_version != prices[2].price_version
    # the change takes effect at midnight UTC, whatever the time zone of `at`
    assert price_usage(daily, provider="openai", model="o3", at=datetime(2025, 6, 9, 23, 59)).total == D(14)


def test_a_constructed_catalog_snapshot_is_swappable() -> None:
    catalog = Catalog.from_dict({"openai": {"gpt-test": [
        {"input_mtok": "2", "output_mtok": "8"},
        {"start_date": "2026-03-15", "input_mtok": "1", "output_mtok": "4"},
    ]}}, version="test-snapshot")
    usage = {"input_tokens": 500_000, "output_tokens": 50_000}
    march = [price_usage(usage, provider="openai", model="gpt-test", at=date(2026, 3, d), catalog=catalog)
             for d in range(13, 18)]
    # 1 + 0.4 = 1.4 before the 15th, 0.5 + 0.2 = 0.7 from it
    assert [p.total for p in march] == [D("1.4"), D("1.4"), D("0.7"), D("0.7"), D("0.7")]
    assert march[-1].price_version == "test-snapshot:gpt-test@2026-03-15"
    assert price_usage(usage, provider="openai", model="gpt-4o", at=date(2026, 3, 15), catalog=catalog).total is None


@pytest.mark.parametrize("provider, model, usage, why", [
    ("openai", "gpt-99-turbo", {"input_tokens": 1000, "output_tokens": 10}, "openai/gpt-99-turbo is not in"),
    ("openai", "gpt-99-turbo", {}, "is not in"),  # no usage at all is still not a zero
    ("mistral-cloud", "large", {"input_tokens": 1000}, "is not in"),
    ("openai", None, {"input_tokens": 1000}, "names no model"),
    ("openai", "gpt-image-1", {"unit": "images", "quantity": 3}, "no list price for images"),
    ("openai", "gpt-4o", {"unit": "storage_bytes", "quantity": 10**9}, "no list price for storage_bytes"),
])
def test_an_unknown_model_or_unit_is_unknown_never_zero(provider: str, model: str | None, usage: dict[str, object],
                                                          why: str) -> None:
    price = price_usage(usage, provider=provider, model=model, at=date(2026, 11, 1))
    assert price.known is False
    assert price.total is None
    assert any(why in note for note in price.notes)
    assert "unknown" in repr(price) and str(price) == "unknown (USD)"
    assert list_cost(provider, model, date(2026, 11, 1), usage) is None


def test_anthropic_cache_prices_missing_from_the_catalog_are_derived_from_input() -> None:
    catalog = Catalog.from_dict({"anthropic": {"claude-new": {"input_mtok": "4", "output_mtok": "20"}}})
    usage = {"input_tokens": 1_000_000, "cache_read_tokens": 1_000_000, "cache_write_5m_tokens": 1_000_000,
             "cache_write_1h_tokens": 1_000_000}
    price = price_usage(usage, provider="anthropic", model="claude-new", at=date(2026, 1, 1), catalog=catalog)
    # 4 + 0.1 x 4 + 1.25 x 4 + 2 x 4
    assert [ln.rate for ln in price.lines] == [D(4), D("0.4"), D(5), D(8)]
    assert price.total == D("17.4")
    assert [ln.source for ln in price.lines] == ["catalog", "derived", "derived", "derived"]
    assert "1.25x input" in price.lines[2].note


def test_openai_cache_without_a_price_of_its_own_costs_input_price() -> None:
    # gpt-4o has a cached-input price but no cache-write price: writes are charged as input (2.5)
    price = price_usage({"cache_write_5m_tokens": 1_000_000}, provider="openai", model="gpt-4o",
                        at=date(2026, 11, 1))
    assert price.total == D("2.5") and price.lines[0].source == "derived"


def test_batch_usage_gets_the_catalog_batch_price_or_the_providers_discount() -> None:
    usage = {"input_tokens": 1_000_000, "cache_read_tokens": 1_000_000, "output_tokens": 1_000_000, "batch": True}
    # before 2026-10-14 genai-prices has no gpt-4o batch price: 50 % off 2.5 / 1.25 / 10
    before = price_usage(usage, provider="openai", model="gpt-4o", at=date(2026, 10, 1))
    assert before.total == D("1.25") + D("0.625") + D(5)
    # from 2026-10-14 its batch variant says input 1.25, output 5 (cached input: still 50 % off)
    after = price_usage(usage, provider="openai", model="gpt-4o", at=date(2026, 10, 20))
    assert after.total == D("6.875")
    assert [ln.note for ln in after.lines] == ["batch (catalog)", "batch -50%", "batch (catalog)"]
    # Anthropic reports batch as a service tier
    anthropic = price_usage({"input_tokens": 1_000_000, "cache_write_1h_tokens": 1_000_000, "service_tier": "batch"},
                            provider="anthropic", model="claude-sonnet-4-20250514", at=date(2026, 11, 1))
    assert anthropic.total == D("1.5") + D(3)


def test_service_tiers_use_the_catalogs_tier_prices_when_it_has_them() -> None:
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    priority = price_usage({**usage, "service_tier": "priority"}, provider="openai", model="gpt-4o",
                           at=date(2026, 11, 1))
    assert priority.total == D("4.25") + D(17)
    assert priority.price_version.endswith("[priority]")
    early = price_usage({**usage, "service_tier": "priority"}, provider="openai", model="gpt-4o",
                        at=date(2026, 1, 1))
    assert early.total == D("12.5")
    assert any("no priority price" in n for n in early.notes)


@pytest.mark.parametrize("hint, expected", [
    ({"context_window": "0-200k"}, D(3) + D(15)),
    ({"context_window": "200k-1M"}, D(6) + D("22.5")),
    ({}, D(3) + D(15)),  # an aggregated bucket without a hint: base tier, noted
])
def test_long_context_tiers_follow_the_context_window(hint: dict[str, str], expected: Decimal) -> None:
    # claude-sonnet-4-6 before 2026-03-13: 3 / 15 $/MTok, above 200k input tokens 6 / 22.5
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000, **hint}
    price = price_usage(usage, provider="anthropic", model="claude-sonnet-4-6", at=date(2026, 1, 1))
    assert price.total == expected
    assert any("long-context" in n for n in price.notes) == (not hint)


def test_a_single_request_picks_its_tier_by_its_input_tokens() -> None:
    one = {"input_tokens": 150_000, "cache_read_tokens": 100_000, "output_tokens": 1_000, "requests": 1}
    price = price_usage(one, provider="anthropic", model="claude-sonnet-4-6", at=date(2026, 1, 1))
    assert [ln.rate for ln in price.lines] == [D(6), D("0.6"), D("22.5")]


def test_non_token_units_are_priced_where_the_catalog_knows_them() -> None:
    at = date(2026, 11, 1)
    searches = price_usage({"unit": "web_search_requests", "quantity": 250}, provider="anthropic",
                           model="claude-sonnet-4-20250514", at=at)
    assert searches.total == D("2.5")  # $10 per 1,000
    speech = price_usage({"unit": "characters", "quantity": 100_000}, provider="openai", model="tts-1", at=at)
    assert speech.total == D("1.5")  # $15 per 1M characters
    transcription = price_usage({"unit": "seconds", "quantity": 1800}, provider="openai", model="whisper-1", at=at)
    assert transcription.total == D("0.18")  # $0.36 per hour


def test_audio_tokens_are_the_audio_part_of_input_and_output() -> None:
    # gpt-4o-realtime-preview: text 5 / 20, audio 40 / 80 $/MTok
    record = UsageRecord(source="openai_admin", stream="completions", bucket_start=datetime(2026, 11, 1),
                         bucket_width="1d", provider="openai", model="gpt-4o-realtime-preview-2024-12-17",
                         input_tokens=1_000_000, audio_input_tokens=400_000, output_tokens=100_000,
                         audio_output_tokens=50_000, reasoning_tokens=10_000)
    price = price_usage(record, provider=record.provider, model=record.model, at=record.bucket_start)
    # 0.6M x 5 + 0.4M x 40 + 0.05M x 20 + 0.05M x 80
    assert price.total == D(3) + D(16) + D(1) + D(4)


@pytest.mark.parametrize("provider, model, ours, theirs", [
    ("openai", "gpt-4o-2024-08-06", {"input_tokens": 1000, "cache_read_tokens": 2000, "output_tokens": 500},
     {"input_tokens": 3000, "cache_read_tokens": 2000, "output_tokens": 500}),
    ("anthropic", "claude-sonnet-4-20250514",
     {"input_tokens": 1000, "cache_read_tokens": 2000, "cache_write_5m_tokens": 300, "cache_write_1h_tokens": 400,
      "output_tokens": 500},
     {"input_tokens": 3700, "cache_read_tokens": 2000, "cache_write_tokens": 700, "cache_write_1h_tokens": 400,
      "output_tokens": 500}),
    ("openai", "o3", {"input_tokens": 7777, "output_tokens": 3333}, {"input_tokens": 7777, "output_tokens": 3333}),
])
def test_totals_agree_with_genai_prices_own_calculation(provider: str, model: str, ours: dict[str, int],
                                                        theirs: dict[str, int]) -> None:
    """Our measures count input UNCACHED; genai-prices counts it whole. Same usage, same money."""
    for at in (datetime(2025, 6, 1), datetime(2026, 11, 1)):
        expected = genai_prices.calc_price(genai_prices.Usage(**theirs), model, provider_id=provider,
                                           genai_request_timestamp=at).total_price
        assert price_usage(ours, provider=provider, model=model, at=at).total == expected


def test_list_price_shows_units_derived_prices_and_tiers() -> None:
    price = list_price("anthropic", "claude-sonnet-4-6", at=date(2026, 1, 1))
    assert price is not None
    assert (price.input_mtok, price.output_mtok, price.cache_write_1h_mtok) == (D(3), D(15), D(6))
    assert price.tiers["input_mtok"] == ((0, D(3)), (200_000, D(6)))
    assert price.units["web_searches_kcount"] == D(10)
    assert price.batch["output_mtok"] == D("7.5")
    assert list_price("openai", "no-such-model", at=date(2026, 1, 1)) is None


def test_a_price_reads_well() -> None:
    price = price_usage({"input_tokens": 1000, "output_tokens": 500}, provider="openai", model="gpt-4o",
                        at=datetime(2026, 11, 1, 12))
    assert repr(price) == (
        "Price(openai/gpt-4o at 2026-11-01 12:00: 0.0075 USD list, lines=[input_tokens 1,000 @ 2.5/MTok = 0.0025, "
        f"output_tokens 500 @ 10/MTok = 0.005], version=genai-prices {genai_prices.__version__}:gpt-4o)")


def test_anthropic_us_data_residency_costs_one_tenth_more() -> None:
    usage = {"input_tokens": 1_000_000, "output_tokens": 100_000, "inference_geo": "us"}
    price = price_usage(usage, provider="anthropic", model="claude-sonnet-4-20250514", at=date(2026, 11, 1))
    assert price.total == (D(3) + D("1.5")) * D("1.1")
    assert "inference_geo us 1.1x" in price.lines[0].note


def test_the_provider_is_guessed_from_the_model_name() -> None:
    catalog = Catalog.bundled()
    assert [catalog.provider_for(m) for m in ("gpt-4o-2024-08-06", "claude-sonnet-4-20250514", "o3", "zzz")] == [
        "openai", "anthropic", "openai", None]
