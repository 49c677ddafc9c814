"""Effective rates and discount on a small hand-computed usage set."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from tallybook.analytics.rates import rates
from tallybook.analytics.rollups import ReportQuery
from tallybook.ledger import store
from tallybook.ledger.records import CostRecord, UsageRecord

DAY = datetime(2026, 10, 1)


def test_rates_and_discount_by_hand(engine: sa.Engine) -> None:
    usage = [UsageRecord(source="openai_admin", stream="completions", bucket_start=DAY, bucket_width="1d",
                         provider="openai", model="m", input_tokens=800_000, cache_read_tokens=200_000,
                         output_tokens=500_000, requests=10)]
    costs = [CostRecord(source="openai_admin", stream="costs", bucket_start=DAY, bucket_width="1d", provider="openai",
                        model="m", line_item=f"m, {kind}", token_type=kind, amount=Decimal(amount), currency="USD")
             for kind, amount in (("input", "1.60"), ("cached input", "0.40"), ("output", "4.00"))]
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        for stream, kwargs in (("completions", {"usage": usage}), ("costs", {"costs": costs})):
            store.replace_window(conn, org_id=org, connection_id=1, source="openai_admin", stream=stream,
                                 bucket_width="1d", start=DAY, end=datetime(2026, 10, 2), **kwargs)

    def pricer(provider: str, model: str | None, day: datetime, m: dict[str, object]) -> Decimal:
        # list: $2.50 per 1M input (cached at $1.25), $10 per 1M output
        return (Decimal(m["input_tokens"]) * Decimal("2.5") + Decimal(m["cache_read_tokens"]) * Decimal("1.25")  # type: ignore[arg-type]
                + Decimal(m["output_tokens"]) * 10) / 1_000_000  # type: ignore[arg-type]

    with engine.connect() as conn:
        [row] = rates(conn, ReportQuery(org_id=org, start=DAY, end=datetime(2026, 10, 2), group_by=["model"]),
                      list_pricer=pricer)
    assert row.input_rate == Decimal(2)  # $2.00 for 1M input tokens (800k uncached + 200k cached)
    assert row.output_rate == Decimal(8)  # $4.00 for 0.5M output tokens
    assert row.blended_rate == Decimal("3.5")  # (3 x 2 + 8) / 4
    assert row.list_cost == Decimal("7.25")  # 2.00 + 0.25 + 5.00
    assert row.discount == 1 - Decimal(6) / Decimal("7.25")
    assert row.as_dict()["discount"] == Decimal("0.172414")
