"""The FOCUS 1.2 export, seeded through the real fakes and `tallybook sync`: it passes the validator,
and its BilledCost sums to the vendor-reported total."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tallybook.fakes.launcher import FakeCloud
from tallybook.pricing.catalog import list_price
from tests.cli.helpers import ok, run
from tests.exports.conftest import END, SINCE, START, UNTIL
from tests.exports.focus_validator import MANDATORY, problems


def vendor_total(cloud: FakeCloud) -> Decimal:
    return sum((amount for name in ("openai", "anthropic")
                for amount in cloud.fakes[name].expected_costs(START, END).values()),  # type: ignore[attr-defined]
               Decimal(0))


def read_csv_table(path: Path) -> pa.Table:
    with path.open(encoding="utf-8", newline="") as source:
        return pa.Table.from_pylist(list(csv.DictReader(source)))


def export(env: dict[str, str], tmp_path: Path, fmt: str) -> Path:
    target = tmp_path / f"focus.{fmt}"
    ok("export", "focus", "--from", SINCE, "--to", UNTIL, "--format", fmt, "--output", str(target), env=env)
    return target


def test_focus_parquet_passes_the_validator_and_bills_the_vendor_total(
    cloud: FakeCloud, synced: dict[str, str], tmp_path: Path,
) -> None:
    table = pq.read_table(export(synced, tmp_path, "parquet"))
    assert problems(table) == []
    assert table.num_rows > 100
    assert pa.types.is_decimal(table.schema.field("BilledCost").type)
    billed = sum(table.column("BilledCost").to_pylist(), Decimal(0))
    assert billed == vendor_total(cloud).quantize(Decimal("0.000000001"))
    rows = table.to_pylist()
    assert {r["ServiceCategory"] for r in rows} == {"AI and Machine Learning"}
    tokens = [r for r in rows if r["PricingUnit"] == "1000000 Tokens"]
    assert tokens and all(r["ConsumedUnit"] == "Tokens" and r["SkuId"].endswith(r["SkuId"].split("/", 1)[1])
                          for r in tokens)
    # list prices reach every token line (every model the fakes serve is in the catalog) ...
    assert all(r["x_ListCostSource"] == "catalog" for r in tokens)
    # ... at the catalog's rate for the line's model, day, tier and region
    standard = [r for r in tokens if r["SkuMeter"] == "uncached_input_tokens" and r["RegionId"] == "global"
                and json.loads(r["Tags"]).get("tallybook/service_tier") == "standard"]
    assert standard
    for r in standard:
        model = r["SkuId"].split("/", 1)[1]
        expected = list_price("anthropic", model, at=r["ChargePeriodStart"].replace(tzinfo=None)).input_mtok
        assert r["ListUnitPrice"] == expected, r
        assert r["ListCost"] == (expected * r["PricingQuantity"]).quantize(Decimal("1e-12"))
    assert all(r["ContractedCost"] == r["ListCost"] for r in rows)  # no negotiated rules yet
    assert all(json.loads(r["Tags"])["tallybook/organisation"] == "default" for r in rows)
    audit = ok("audit", "list", "--action", "export.focus", "--format", "json", env=synced).json()
    assert audit[0]["details"]["rows"] == table.num_rows
    used = ok("audit", "list", "--action", "connection.used", "--format", "json", env=synced).json()
    assert sorted(u["object_id"] for u in used) == ["anthropic", "openai"]  # each sync's use of a stored key
    assert {u["actor"] for u in used} == {"system:sync"} and {u["details"]["status"] for u in used} == {"succeeded"}


@pytest.mark.slow
def test_focus_csv_passes_the_validator_and_matches_the_parquet(
    cloud: FakeCloud, synced: dict[str, str], tmp_path: Path,
) -> None:
    text = read_csv_table(export(synced, tmp_path, "csv"))
    assert problems(text) == []
    parquet = pq.read_table(export(synced, tmp_path, "parquet"))
    assert text.num_rows == parquet.num_rows
    assert sum(Decimal(v) for v in text.column("BilledCost").to_pylist()) == sum(
        parquet.column("BilledCost").to_pylist(), Decimal(0))


@pytest.mark.slow
def test_negotiated_rates_make_contracted_cost(synced: dict[str, str], tmp_path: Path) -> None:
    ok("pricing", "set", "--id", "openai-deal", "--provider", "openai", "--discount", "0.25", "--from", "2026-01-01",
       env=synced)
    rows = pq.read_table(export(synced, tmp_path, "parquet")).to_pylist()
    openai = [r for r in rows if r["ProviderName"] == "OpenAI" and r["x_ListCostSource"] != "billed"]
    assert openai
    for r in openai:
        assert abs(r["ContractedCost"] - r["ListCost"] * Decimal("0.75")) < Decimal("0.000000001")
        assert r["x_ListCostSource"] == "catalog+rules"
    others = [r for r in rows if r["ProviderName"] == "Anthropic"]
    assert all(r["ContractedCost"] == r["ListCost"] for r in others)


BREAKAGES = [
    (lambda t: t.drop_columns(["ListCost"]), "mandatory column ListCost is missing"),
    (lambda t: t.set_column(t.column_names.index("BilledCost"), "BilledCost",
                            pa.array([float(v) for v in t.column("BilledCost").to_pylist()])), "float"),
    (lambda t: t.set_column(t.column_names.index("ChargeCategory"), "ChargeCategory",
                            pa.array(["Spend"] * t.num_rows)), "ChargeCategory 'Spend'"),
    (lambda t: t.set_column(t.column_names.index("ServiceCategory"), "ServiceCategory",
                            pa.array(["AI"] * t.num_rows)), "ServiceCategory 'AI'"),
    (lambda t: t.set_column(t.column_names.index("ChargePeriodEnd"), "ChargePeriodEnd",
                            t.column("ChargePeriodStart")), "ChargePeriodEnd is not after"),
    (lambda t: t.set_column(t.column_names.index("ListCost"), "ListCost",
                            pa.array([None] * t.num_rows, type=t.schema.field("ListCost").type)), "ListCost is null"),
    (lambda t: t.set_column(t.column_names.index("PricingUnit"), "PricingUnit",
                            pa.array(["per million tokens"] * t.num_rows)), "Unit Format"),
    (lambda t: t.append_column("Customer", pa.array(["x"] * t.num_rows)), "custom x_ column"),
]


def test_the_validator_catches_what_the_spec_forbids(synced: dict[str, str], tmp_path: Path) -> None:
    table = pq.read_table(export(synced, tmp_path, "parquet"))
    assert problems(table) == []
    for breakage, expected in BREAKAGES:
        found = problems(breakage(table))
        assert found and any(expected in p for p in found), (expected, found)


@pytest.mark.slow
def test_every_mandatory_column_is_filled(synced: dict[str, str], tmp_path: Path) -> None:
    table = pq.read_table(export(synced, tmp_path, "parquet"))
    for name in MANDATORY:
        if name != "ChargeClass":  # null unless the row is a correction
            assert table.column(name).null_count == 0, name


def test_a_bad_bigquery_destination_is_named(cli_env: dict[str, str]) -> None:
    result = run("export", "focus", "--bigquery", "not a table", env=cli_env)
    assert result.exit_code == 2 and "PROJECT.DATASET.TABLE" in result.stderr
