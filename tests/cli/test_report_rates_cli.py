"""`report rates|savings|benchmark|commitments|reconcile` on the demo organisation, re-derived from raw records."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tallybook.analytics.rates import INPUT_TYPES, OUTPUT_TYPES
from tallybook.fakes.launcher import DEMO_KEYS, FakeCloud, start_fakes
from tallybook.ledger.db import connect
from tallybook.pricing.catalog import list_price
from tests.cli.helpers import ok
from tests.support import FAKE_NOW

SINCE, UNTIL = "2026-10-01", "2026-10-31"
START, END = datetime(2026, 10, 1), datetime(2026, 11, 1)
Q = Decimal("0.000001")


@pytest.fixture(scope="module")
def cloud() -> FakeCloud:
    fakes = start_fakes(now=FAKE_NOW)
    yield fakes
    fakes.stop()


@pytest.fixture
def synced(cloud: FakeCloud, cli_env: dict[str, str]) -> dict[str, str]:
    for provider, var in (("openai", "OPENAI_ADMIN_KEY"), ("anthropic", "ANTHROPIC_ADMIN_KEY")):
        ok("connect", provider, "--base-url", cloud.base_url(provider), env={**cli_env, var: DEMO_KEYS[provider]})
    ok("sync", "--since", SINCE, "--until", UNTIL, env=cli_env)
    return cli_env


def raw(env: dict[str, str], sql: str) -> list[sa.Row]:
    engine = connect(env["TALLYBOOK_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), {"start": START, "end": END}))
    finally:
        engine.dispose()


def test_rates_match_the_raw_records(synced: dict[str, str]) -> None:
    rows = ok("report", "rates", "--from", SINCE, "--to", UNTIL, "--group-by", "provider,model",
              "--format", "json", env=synced).json()
    got = {(r["provider"], r["model"]): r for r in rows}
    cost = defaultdict(lambda: {"in": Decimal(0), "out": Decimal(0)})
    for provider, model, token_type, nanos in raw(synced, """
        SELECT provider, model, token_type, amount_nanos FROM cost_records
        WHERE bucket_width = '1d' AND bucket_start >= :start AND bucket_start < :end"""):
        side = "in" if token_type in INPUT_TYPES else "out" if token_type in OUTPUT_TYPES else None
        if side:
            cost[(provider, model)][side] += Decimal(nanos) / Decimal(10**9)
    tokens = defaultdict(lambda: {"in": 0, "out": 0})
    for provider, model, i, cr, w5, w1, o in raw(synced, """
        SELECT provider, model, input_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
               output_tokens FROM usage_records
        WHERE bucket_width = '1d' AND unit IS NULL AND bucket_start >= :start AND bucket_start < :end"""):
        tokens[(provider, model)]["in"] += i + cr + w5 + w1
        tokens[(provider, model)]["out"] += o
    checked = 0
    for key, t in tokens.items():
        if not t["in"] or not t["out"] or key not in cost:
            continue
        row = got[key]
        input_rate = cost[key]["in"] / t["in"] * 1_000_000
        output_rate = cost[key]["out"] / t["out"] * 1_000_000
        assert Decimal(row["input_rate_mtok"]) == input_rate.quantize(Q), key
        assert Decimal(row["output_rate_mtok"]) == output_rate.quantize(Q), key
        assert Decimal(row["blended_rate_mtok"]) == ((3 * input_rate + output_rate) / 4).quantize(Q), key
        checked += 1
    assert checked >= 6
    # discount = 1 - reported / list, for the exact mix: re-derive one model's list cost by hand
    key = ("openai", "gpt-4o-mini-2024-07-18")
    list_total = Decimal(0)
    for day, tier, batch, i, cr, cw, o, ai, ao in raw(synced, """
        SELECT bucket_start, service_tier, batch, input_tokens, cache_read_tokens, cache_write_5m_tokens, output_tokens,
               audio_input_tokens, audio_output_tokens
        FROM usage_records WHERE bucket_width = '1d' AND unit IS NULL AND model = 'gpt-4o-mini-2024-07-18'
          AND bucket_start >= :start AND bucket_start < :end"""):
        assert not ai and not ao  # the fake's mini has no audio, so three prices suffice
        p = list_price("openai", "gpt-4o-mini-2024-07-18", at=day if isinstance(day, datetime) else
                       datetime.fromisoformat(day), service_tier=tier)
        # OpenAI has no cache-write price: writes cost the input price (docs/pricing.md)
        amount = ((i + cw) * p.input_mtok + cr * p.cache_read_mtok + o * p.output_mtok) / 1_000_000
        list_total += amount / 2 if batch else amount
    assert Decimal(got[key]["list_cost"]).quantize(Decimal("0.0001")) == list_total.quantize(Decimal("0.0001"))
    reported = cost[key]["in"] + cost[key]["out"]
    assert Decimal(got[key]["discount"]) == (1 - reported / list_total).quantize(Q)


def test_savings_cache_figure_is_rederived_from_raw_usage(synced: dict[str, str]) -> None:
    rows = ok("report", "savings", "--from", SINCE, "--to", UNTIL, "--cache-target", "0.6", "--format", "json",
              env=synced).json()
    cache = {r["model"]: r for r in rows if r["kind"] == "cache"}
    model = "gpt-4o-2024-08-06"
    [(i, cr, cw)] = raw(synced, f"""
        SELECT SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_5m_tokens + cache_write_1h_tokens)
        FROM usage_records WHERE bucket_width = '1d' AND unit IS NULL AND model = '{model}'
          AND bucket_start >= :start AND bucket_start < :end""")
    price = list_price("openai", model, at=END)
    all_input = Decimal(i + cr + cw)
    extra = min((Decimal("0.6") - Decimal(cr) / all_input) * all_input, Decimal(i))
    window_saving = extra * (price.input_mtok - price.cache_read_mtok) / 1_000_000
    assert Decimal(cache[model]["window_saving"]) == window_saving.quantize(Decimal("0.01"))
    assert Decimal(cache[model]["monthly_saving"]) == (window_saving * 30 / 31).quantize(Decimal("0.01"))
    assert cache[model]["currency"] == "USD" and cache[model]["origin"] == "estimated"
    assert "60 %" in cache[model]["assumption"]


def test_benchmark_commitments_and_reconcile_answer(synced: dict[str, str]) -> None:
    bench = ok("report", "benchmark", "--month", "2026-10", "--format", "json", env=synced).json()
    assert {r["tier"] for r in bench} == {"frontier", "mid", "small"}
    assert all(r["peers"] == "not enough peers" for r in bench)
    mid = next(r for r in bench if r["tier"] == "mid")
    assert Decimal(mid["index_blended_mtok"]) > 0 and mid["org_blended_rate_mtok"] is not None
    advice = ok("report", "commitments", "--months", "2", "--schedule", "100:0.05", "--format", "json",
                env=synced).json()[0]
    assert Decimal(advice["saving"]) >= 0 and advice["currency"] == "USD"
    rec = ok("report", "reconcile", "--from", "2026-10-05", "--to", "2026-10-05", "--format", "json",
             env=synced).json()
    assert rec and {r["day"] for r in rec} == {"2026-10-05"}
    moderation = [r for r in rec if r["model"] == "omni-moderation-latest"]
    assert all(r["estimated_cost"] is None and r["flagged"] for r in moderation)  # unknown: never priced at 0


def test_reconcile_uses_a_negotiated_discount(synced: dict[str, str]) -> None:
    args = ("report", "reconcile", "--from", "2026-10-05", "--to", "2026-10-05", "--provider", "openai",
            "--format", "json")
    before = {r["model"]: r for r in ok(*args, env=synced).json()}
    ok("pricing", "set", "--id", "mini-deal", "--provider", "openai", "--model", "gpt-4o-mini*",
       "--discount", "0.25", "--from", "2026-01-01", env=synced)
    after = {r["model"]: r for r in ok(*args, env=synced).json()}
    model = "gpt-4o-mini-2024-07-18"
    expected = Decimal(before[model]["estimated_cost"]) * Decimal("0.75")  # both printed to 6 places
    assert abs(Decimal(after[model]["estimated_cost"]) - expected) <= Decimal("0.000002")
    assert after["gpt-4o-2024-08-06"]["estimated_cost"] == before["gpt-4o-2024-08-06"]["estimated_cost"]
