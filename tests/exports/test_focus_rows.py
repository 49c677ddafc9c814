"""FOCUS rows from a hand-made ledger: credits, non-USD bills, lines without usage."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from tallybook.exports.focus import COLUMN_NAMES, FOCUS_SCHEMA, focus_rows
from tallybook.exports.parquet import arrow_table
from tallybook.ledger import store
from tallybook.ledger.records import CostRecord, UsageRecord
from tests.exports.focus_validator import problems

DAY = datetime(2026, 10, 5)


def cost(amount: str, token_type: str, **kw: object) -> CostRecord:
    return CostRecord(source="openai_admin", stream="costs", bucket_start=DAY, bucket_width="1d", provider="openai",
                      amount=Decimal(amount), currency="USD", model="gpt-4o-2024-08-06", project="proj_a",
                      line_item=f"gpt-4o-2024-08-06, {token_type}", token_type=token_type, **kw)  # type: ignore[arg-type]


def test_credits_unpriced_lines_and_priced_lines(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        store.replace_window(
            conn, org_id=org, connection_id=0, source="openai_admin", stream="costs", bucket_width="1d",
            start=DAY, end=DAY.replace(day=6),
            costs=[cost("2.5", "input"), cost("-1.25", "output"), cost("0.40", "images", quantity="10",
                                                                        quantity_unit="images")])
        store.replace_window(
            conn, org_id=org, connection_id=0, source="openai_admin", stream="completions", bucket_width="1d",
            start=DAY, end=DAY.replace(day=6),
            usage=[UsageRecord(source="openai_admin", stream="completions", bucket_start=DAY, bucket_width="1d",
                               provider="openai", model="gpt-4o-2024-08-06", project="proj_a",
                               input_tokens=1_000_000, output_tokens=500_000)])
        rows = focus_rows(conn, org, DAY, DAY.replace(day=6))
    by_meter = {r["SkuMeter"]: r for r in rows}
    assert problems(arrow_table(rows, COLUMN_NAMES, FOCUS_SCHEMA)) == []
    priced = by_meter["input"]
    assert priced["ListUnitPrice"] == Decimal("2.5") and priced["ListCost"] == Decimal("2.5")  # gpt-4o: $2.50/MTok
    assert priced["ConsumedQuantity"] == 1_000_000 and priced["PricingQuantity"] == 1
    credit = by_meter["output"]
    assert credit["ChargeCategory"] == "Credit" and credit["ListCost"] == credit["BilledCost"] == Decimal("-1.25")
    assert credit["ConsumedQuantity"] is None and credit["ConsumedUnit"] is None
    images = by_meter["images"]
    assert images["x_ListCostSource"] == "billed" and images["ListCost"] == Decimal("0.4")
    assert (images["PricingQuantity"], images["PricingUnit"], images["ConsumedUnit"]) == (10, "Images", "Images")
    assert sum(r["BilledCost"] for r in rows) == Decimal("1.65")
