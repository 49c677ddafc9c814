"""Organisation rules over list prices, stored in the ledger (SQLite and PostgreSQL): versions never rewrite
the past, saving the same rules twice changes nothing, and each kind prices as documented."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tallybook.errors import PricingError
from tallybook.ledger import schema as t
from tallybook.ledger import store
from tallybook.pricing.catalog import Catalog, price_usage
from tallybook.pricing.rules import CommitmentTier, Rule, apply_rules, customer_price, load_rules, save_rules

D = Decimal
NOW = datetime(2026, 11, 25, 9, 30)
MILLION_IN = {"input_tokens": 1_000_000}  # gpt-4o: 2.5 $ at list


def markup(fraction: str, start: datetime, rule_id: str = "gpt4o-markup") -> Rule:
    return Rule(rule_id, "markup", start, provider="openai", model_pattern="gpt-4o*", fraction=D(fraction))


def customer(rules: list[Rule], day: date) -> Decimal | None:
    price = price_usage(MILLION_IN, provider="openai", model="gpt-4o-2024-08-06", at=day)
    return customer_price(apply_rules(price, rules), rules).total


@pytest.fixture
def org(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return store.ensure_org(conn, "acme")


def test_a_markup_changes_only_usage_after_its_effective_date() -> None:
    rules = [markup("0.20", datetime(2026, 6, 1))]
    assert customer(rules, date(2026, 5, 31)) == D("2.5")
    assert customer(rules, date(2026, 6, 1)) == D("3.0")
    # an effective_to closes it again (exclusive)
    ended = [Rule("m", "markup", datetime(2026, 6, 1), fraction=D("0.2"), effective_to=datetime(2026, 7, 1))]
    assert [customer(ended, d) for d in (date(2026, 6, 30), date(2026, 7, 1))] == [D("3.0"), D("2.5")]


def test_a_markup_never_touches_the_organisations_own_cost() -> None:
    rules = [markup("0.20", datetime(2026, 1, 1))]
    price = price_usage(MILLION_IN, provider="openai", model="gpt-4o", at=date(2026, 3, 1))
    assert apply_rules(price, rules).total == D("2.5")
    assert customer_price(price, rules).total == D("3.0")
    other_model = price_usage(MILLION_IN, provider="openai", model="gpt-5", at=date(2026, 3, 1))
    assert customer_price(other_model, rules).total == other_model.total


def test_saving_the_same_rules_twice_changes_nothing(engine: sa.Engine, org: int) -> None:
    rules = [markup("0.20", datetime(2026, 1, 1)),
             Rule("openai-discount", "discount", datetime(2026, 1, 1), provider="openai", fraction=D("0.1"))]
    with engine.begin() as conn:
        first = save_rules(conn, org, rules, source="rules.toml", now=NOW)
    with engine.begin() as conn:
        second = save_rules(conn, org, [markup("0.2", datetime(2026, 1, 1)), rules[1]], source="rules.toml", now=NOW)
        count = conn.execute(sa.select(sa.func.count()).select_from(t.pricing_rules)).scalar()
    assert [(c.action, c.version) for c in first] == [("created", 1), ("created", 1)]
    assert [(c.action, c.version) for c in second] == [("unchanged", 1), ("unchanged", 1)]  # 0.20 == 0.2
    assert count == 2


def test_a_changed_rule_is_a_new_version_and_the_old_one_keeps_pricing_the_past(engine: sa.Engine, org: int) -> None:
    with engine.begin() as conn:
        save_rules(conn, org, [markup("0.20", datetime(2026, 1, 1))], source="rules.toml", now=NOW)
    with engine.begin() as conn:
        [change] = save_rules(conn, org, [markup("0.25", datetime(2026, 7, 1))], source="rules.toml", now=NOW)
    assert (change.action, change.version, change.effective_from) == ("updated", 2, datetime(2026, 7, 1))
    with engine.connect() as conn:
        history = load_rules(conn, org)
        current = load_rules(conn, org, current_only=True)
    assert [(r.version, r.fraction, r.effective_from, r.effective_to) for r in history] == [
        (1, D("0.2"), datetime(2026, 1, 1), datetime(2026, 7, 1)),
        (2, D("0.25"), datetime(2026, 7, 1), None)]
    assert history[0].retired_at == NOW and history[1].retired_at is None
    assert [r.version for r in current] == [2]
    assert customer(history, date(2026, 3, 1)) == D("3.0")  # version 1: +20 %
    assert customer(history, date(2026, 8, 1)) == D("3.125")  # version 2: +25 %


def test_a_change_that_would_reprice_the_past_takes_effect_now(engine: sa.Engine, org: int) -> None:
    with engine.begin() as conn:
        save_rules(conn, org, [markup("0.20", datetime(2026, 1, 1))], source="rules.toml", now=NOW)
        # same effective date, new figure: version 1 keeps everything before NOW
        [change] = save_rules(conn, org, [markup("0.50", datetime(2026, 1, 1))], source="rules.toml", now=NOW)
        history = load_rules(conn, org)
        # saving the changed file again is still no change, although version 2 started later than it says
        [again] = save_rules(conn, org, [markup("0.50", datetime(2026, 1, 1))], source="rules.toml", now=NOW)
    assert (change.version, change.effective_from) == (2, NOW)
    assert "version 1 keeps pricing" in change.note
    assert again.action == "unchanged"
    assert customer(history, date(2026, 11, 24)) == D("3.0")
    assert customer(history, date(2026, 11, 26)) == D("3.75")


def test_rules_are_stored_per_organisation(engine: sa.Engine, org: int) -> None:
    with engine.begin() as conn:
        other = store.ensure_org(conn, "globex")
        save_rules(conn, org, [markup("0.20", datetime(2026, 1, 1))], source="cli", now=NOW)
        assert load_rules(conn, other) == []
        assert save_rules(conn, other, [markup("0.20", datetime(2026, 1, 1))], source="cli", now=NOW)[0].action == "created"


def test_every_kind_round_trips_through_the_ledger(engine: sa.Engine, org: int) -> None:
    rules = [
        Rule("sonnet-contract", "negotiated", datetime(2026, 1, 1), provider="anthropic", model_pattern="claude-sonnet-4*",
             rates={"input_mtok": D("2.40"), "output_mtok": D(12)}, note="2026 contract"),
        Rule("spend-tiers", "commitment", datetime(2026, 1, 1), provider="openai",
             tiers=(CommitmentTier(D(10_000), D("0.05")), CommitmentTier(D(50_000), D("0.12")))),
        Rule("eu-discount", "discount", datetime(2026, 2, 1), fraction=D("0.03"), effective_to=datetime(2027, 1, 1)),
    ]
    with engine.begin() as conn:
        save_rules(conn, org, rules, source="rules.toml", now=NOW)
        loaded = load_rules(conn, org)
    by_id = {r.rule_id: r for r in loaded}
    for rule in rules:
        stored = by_id[rule.rule_id]
        assert stored.content_hash() == rule.content_hash()
        assert (stored.version, stored.source, stored.created_at) == (1, "rules.toml", NOW)
    assert by_id["sonnet-contract"].rates == {"input_mtok": D("2.4"), "output_mtok": D(12)}


def test_negotiated_rates_discounts_and_commitments_price_the_organisations_cost() -> None:
    start = datetime(2026, 1, 1)
    rules = [
        Rule("sonnet", "negotiated", start, provider="anthropic", model_pattern="claude-sonnet-4*",
             rates={"input_mtok": D("2.4"), "output_mtok": D(12)}),
        Rule("all-anthropic", "discount", start, provider="anthropic", fraction=D("0.1")),
        Rule("commit", "commitment", start, provider="anthropic",
             tiers=(CommitmentTier(D(1000), D("0.05")), CommitmentTier(D(5000), D("0.1")))),
    ]
    usage = {"input_tokens": 1_000_000, "cache_write_5m_tokens": 1_000_000, "output_tokens": 100_000}
    price = price_usage(usage, provider="anthropic", model="claude-sonnet-4-20250514", at=date(2026, 3, 1))
    assert price.total == D(3) + D("3.75") + D("1.5")  # list
    cost = apply_rules(price, rules, month_spend=D(2000))
    # negotiated: 2.4 + 3.75 (catalog's own 5 min price, not negotiated) + 1.2 = 7.35; -10 % = 6.615; -5 % = 6.28425
    assert cost.subtotal == D("7.35")
    assert cost.total == D("6.28425")
    assert [a.kind for a in cost.adjustments] == ["discount", "commitment"]
    assert cost.basis == "cost" and "+rules:sonnet@v0" in (cost.price_version or "")
    without_spend = apply_rules(price, rules)
    assert without_spend.total == D("6.615")
    assert any("month's spend was not given" in n for n in without_spend.notes)
    assert apply_rules(price, rules, month_spend={"commit": D(9000)}).total == D("5.9535")


def test_negotiated_rates_carry_through_derived_and_batch_prices() -> None:
    catalog = Catalog.from_dict({"anthropic": {"claude-x": {"input_mtok": "4", "output_mtok": "20"}}})
    rules = [Rule("x", "negotiated", datetime(2026, 1, 1), provider="anthropic", rates={"input_mtok": D(2)})]
    usage = {"cache_write_1h_tokens": 1_000_000, "input_tokens": 1_000_000, "service_tier": "batch"}
    cost = apply_rules(price_usage(usage, provider="anthropic", model="claude-x", at=date(2026, 2, 1),
                                   catalog=catalog), rules)
    # input 2 x 0.5 batch = 1; 1 h write 2 x 2 x 0.5 = 2
    assert [ln.rate for ln in cost.lines] == [D(1), D(2)]


def test_negotiated_rates_can_price_a_model_the_catalog_does_not_know() -> None:
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    price = price_usage(usage, provider="openai", model="ft:gpt-4o:acme:1", at=date(2026, 3, 1))
    assert price.total is None
    partial = [Rule("ft", "negotiated", datetime(2026, 1, 1), model_pattern="ft:*", rates={"input_mtok": D(3)})]
    assert apply_rules(price, partial).total is None  # output still has no price
    full = [Rule("ft", "negotiated", datetime(2026, 1, 1), model_pattern="ft:*",
                 rates={"input_mtok": D(3), "output_mtok": D(12)})]
    assert apply_rules(price, full).total == D(15)


def test_the_narrowest_negotiated_rule_wins() -> None:
    start = datetime(2026, 1, 1)
    rules = [Rule("broad", "negotiated", start, model_pattern="gpt-*", rates={"input_mtok": D(2)}),
             Rule("narrow", "negotiated", start, provider="openai", model_pattern="gpt-4o-mini*",
                  rates={"input_mtok": D("0.1")})]
    price = price_usage(MILLION_IN, provider="openai", model="gpt-4o-mini-2024-07-18", at=date(2026, 3, 1))
    assert apply_rules(price, rules).total == D("0.1")


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "markup"}, "needs a fraction"),
    ({"kind": "discount", "fraction": D("1.5")}, "out of range"),
    ({"kind": "negotiated", "rates": {"input_tokens": D(1)}}, "cannot negotiate input_tokens"),
    ({"kind": "commitment", "tiers": (CommitmentTier(D(100), D("0.1")), CommitmentTier(D(10), D("0.2")))},
     "increasing order"),
    ({"kind": "rebate", "fraction": D("0.1")}, "kind 'rebate'"),
    ({"kind": "markup", "fraction": D("0.1"), "effective_to": datetime(2025, 1, 1)}, "effective_to must be after"),
])
def test_a_malformed_rule_says_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PricingError, match=message):
        Rule("r1", effective_from=datetime(2026, 1, 1), **kwargs)  # type: ignore[arg-type]
