"""Market index and peer percentiles: k-anonymity and no contribution readable from the output."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from tallybook.analytics.benchmark import (
    K_ANONYMITY,
    load_tiers,
    market_index,
    peer_percentiles,
    percentile,
    set_opt_in,
    share_month,
)
from tallybook.ledger import store

RATES = [Decimal(v) for v in ("2.1371", "2.4489", "2.9013", "3.3347", "3.5521", "3.9977", "4.2209", "4.8813",
                              "5.1157", "6.0391", "6.7723")]


def contribute(engine: sa.Engine, n: int) -> list[int]:
    orgs = []
    with engine.begin() as conn:
        for i in range(n):
            org = store.ensure_org(conn, f"org-{i}")
            set_opt_in(conn, org, True)
            share_month(conn, org, "2026-10", {"mid": RATES[i]})
            orgs.append(org)
    return orgs


def test_nine_peers_are_not_enough(engine: sa.Engine) -> None:
    orgs = contribute(engine, K_ANONYMITY - 1)
    with engine.connect() as conn:
        result = peer_percentiles(conn, orgs[0], "2026-10", "mid", org_rate=RATES[0])
    assert result.status == "not enough peers"
    assert result.contributors == 9
    assert result.percentiles == {} and result.org_percentile is None


def test_ten_peers_give_percentiles_that_reveal_no_single_rate(engine: sa.Engine) -> None:
    orgs = contribute(engine, K_ANONYMITY)
    with engine.connect() as conn:
        result = peer_percentiles(conn, orgs[3], "2026-10", "mid", org_rate=RATES[3])
    assert result.status == "ok" and result.contributors == 10
    values = sorted(RATES[:10])
    # type-7 interpolation by hand: p50 sits halfway between the 5th and 6th values
    assert result.percentiles["p50"] == ((values[4] + values[5]) / 2).quantize(Decimal("0.01"))
    assert result.percentiles["p10"] == (values[0] + (values[1] - values[0]) * Decimal("0.9")).quantize(Decimal("0.01"))
    assert list(result.percentiles) == ["p10", "p25", "p50", "p75", "p90"]
    assert result.org_percentile == 35  # 3 peers below, itself counted half
    shown = {v for k, v in result.as_dict().items() if isinstance(v, Decimal) and k != "org_blended_rate"}
    assert not shown & set(RATES[:10])


def test_an_organisation_that_did_not_opt_in_shares_nothing(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "private")
        assert share_month(conn, org, "2026-10", {"mid": Decimal(3)}) == 0
        set_opt_in(conn, org, True)
        assert share_month(conn, org, "2026-10", {"mid": Decimal(3)}) == 1
        set_opt_in(conn, org, False)  # opting out withdraws what was shared
        assert peer_percentiles(conn, org, "2026-10", "mid").contributors == 0


def test_percentile_interpolates() -> None:
    assert percentile([Decimal(1), Decimal(2), Decimal(3), Decimal(4)], 50) == Decimal("2.5")
    assert percentile([Decimal(7)], 90) == Decimal(7)


def test_market_index_is_the_median_blended_list_price_of_the_tier() -> None:
    tiers = load_tiers()
    prices = {("openai", "gpt-4o"): Decimal("4.375"), ("anthropic", "claude-sonnet-4"): Decimal(6),
              ("openai", "o4-mini"): Decimal("1.925")}
    points = {p.tier: p for p in market_index(tiers, lambda prov, model, at: prices.get((prov, model)),
                                               at=datetime(2026, 11, 1))}
    assert points["mid"].index == Decimal("4.375")
    assert "google/gemini-2.5-flash" in points["mid"].missing
    assert tiers.tier_of("openai", "gpt-4o-mini-2024-07-18") == "small"
    assert tiers.tier_of("openai", "gpt-4o-2024-08-06") == "mid"
    assert tiers.tier_of("anthropic", "claude-opus-4-1-20250805") == "frontier"
    assert tiers.tier_of("anthropic", "some-unknown") is None
