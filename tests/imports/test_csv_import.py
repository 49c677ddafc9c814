"""CSV imports: every built-in mapping reads its sample, a bad file is refused whole with its line and
column named, and importing the same file twice gives the same totals."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from tallybook.connectors.csv_mapping import builtin_names, load_mapping
from tallybook.ledger import schema as t
from tests.cli.helpers import ok, run

ROOT = Path(__file__).resolve().parents[2]
GOOD = ("date,vendor,description,amount,currency\n"
        "2026-10-01,perplexity,Pro seats,400.00,USD\n"
        "2026-10-02,deepl,API usage,87.35,EUR\n"
        "2026-10-02,deepl,API usage,12.65,EUR\n")


def ledger_totals(url: str) -> dict[tuple[str, str], Decimal]:
    """Amount per (source, currency), summed straight from the cost records, plus the rollup's."""
    engine = sa.create_engine(url)
    c, d = t.cost_records.c, t.cost_daily.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(c.source, c.currency, sa.func.sum(c.amount_nanos))
                            .group_by(c.source, c.currency)).all()
        rolled = conn.execute(sa.select(d.source, d.currency, sa.func.sum(d.amount_nanos))
                              .group_by(d.source, d.currency)).all()
    engine.dispose()
    totals = {(s, cur): Decimal(n) / 10**9 for s, cur, n in rows}
    assert totals == {(s, cur): Decimal(n) / 10**9 for s, cur, n in rolled}, "rollup disagrees with records"
    return totals


def sample_total(name: str) -> dict[str, Decimal]:
    """The sample file's total per currency, read with the csv module and the mapping's column names."""
    mapping = load_mapping(name)
    totals: dict[str, Decimal] = {}
    with open(ROOT / str(mapping.sample), newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            currency = row[mapping.columns["currency"]] if "currency" in mapping.columns else mapping.constants["currency"]
            totals[currency] = totals.get(currency, Decimal(0)) + Decimal(row[mapping.columns["amount"]])
    return totals


@pytest.mark.parametrize("name", builtin_names())
def test_each_builtin_mapping_imports_its_sample_once_however_often_it_is_imported(name: str, cli_env) -> None:
    mapping = load_mapping(name)
    sample = ROOT / str(mapping.sample)
    assert sample.is_file(), f"{name} has no sample file under docs/samples/"
    first = ok("import", "csv", str(sample), "--source", name, "--mapping", name, "--format", "json").json()
    ok("import", "csv", str(sample), "--source", name, "--mapping", name)
    expected = sample_total(name)
    assert {c: a for (_, c), a in ledger_totals(cli_env["TALLYBOOK_DATABASE_URL"]).items()} == expected
    assert {x["currency"]: Decimal(x["amount"]) for x in first["totals"]} == expected
    assert first["origin"] == "reported" and first["source"] == f"csv:{name}"


def test_token_columns_become_usage_records(cli_env, tmp_path) -> None:
    sample = ROOT / "docs/samples/claude_console_usage.csv"
    for _ in range(2):
        ok("import", "csv", str(sample), "--source", "console", "--mapping", "claude-console")
    usage = ok("report", "usage", "--from", "2026-10-01", "--to", "2026-10-31", "--source", "csv:console",
               "--group-by", "api_key", "--format", "json").json()
    by_key = {r["api_key"]: r for r in usage}
    assert by_key["apikey_01Alice"]["input_tokens"] == 120000 + 98000
    assert by_key["apikey_01Alice"]["cache_read_tokens"] == 450000 + 380000
    assert by_key["apikey_01Bot"]["output_tokens"] == 210000


def test_dry_run_previews_and_writes_nothing(cli_env, tmp_path) -> None:
    path = tmp_path / "bill.csv"
    path.write_text(GOOD)
    result = ok("import", "csv", str(path), "--source", "bills", "--mapping", "vendor-bill", "--dry-run")
    assert "perplexity" in result.stdout and "400.00 USD" in result.stdout and "100.00 EUR" in result.stdout
    assert ledger_totals(cli_env["TALLYBOOK_DATABASE_URL"]) == {}


def test_rows_of_one_day_and_dimensions_are_summed_not_overwritten(cli_env, tmp_path) -> None:
    path = tmp_path / "bill.csv"
    path.write_text(GOOD)
    ok("import", "csv", str(path), "--source", "bills", "--mapping", "vendor-bill")
    assert ledger_totals(cli_env["TALLYBOOK_DATABASE_URL"]) == {
        ("csv:bills", "USD"): Decimal(400), ("csv:bills", "EUR"): Decimal(100)}


CORRUPT = [
    ("bad date", GOOD.replace("2026-10-02,deepl,API usage,87.35", "2026-13-02,deepl,API usage,87.35"),
     "line 3", "'date'"),
    ("negative amount", GOOD.replace("12.65", "-12.65"), "line 4", "'amount'"),
    ("not a number", GOOD.replace("87.35", "87,35"), None, None),  # a comma adds a field: line 3 named
    ("amount in words", GOOD.replace("87.35", "eighty"), "line 3", "'amount'"),
    ("missing column", GOOD.replace("currency", "ccy", 1), "line 1", "'currency'"),
    ("bad currency", GOOD.replace(",EUR\n", ",euro\n", 1), "line 3", "'currency'"),
]


@pytest.mark.parametrize("case,text,line,column", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_a_corrupt_file_is_refused_with_line_and_column_and_nothing_is_imported(
        case: str, text: str, line: str | None, column: str | None, cli_env, tmp_path) -> None:
    path = tmp_path / "bill.csv"
    path.write_text(text)
    result = run("import", "csv", str(path), "--source", "bills", "--mapping", "vendor-bill")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error:")
    assert (line or "line 3") in result.stderr
    if column:
        assert f"column {column}" in result.stderr
    assert ledger_totals(cli_env["TALLYBOOK_DATABASE_URL"]) == {}


def test_wrong_encoding_names_line_and_column(cli_env, tmp_path) -> None:
    path = tmp_path / "bill.csv"
    path.write_bytes(GOOD.replace("Pro seats", "Pro seats").replace("API usage,12.65", "Übersetzung,12.65")
                     .encode("latin-1"))
    result = run("import", "csv", str(path), "--source", "bills", "--mapping", "vendor-bill")
    assert result.exit_code == 2
    assert "line 4" in result.stderr and "column 'description'" in result.stderr and "utf-8" in result.stderr
    assert ledger_totals(cli_env["TALLYBOOK_DATABASE_URL"]) == {}


def test_a_bad_row_after_good_ones_leaves_earlier_imports_untouched(cli_env, tmp_path) -> None:
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("400.00", "500.00") + "2026-10-03,deepl,more,oops,EUR\n")
    ok("import", "csv", str(good), "--source", "bills", "--mapping", "vendor-bill")
    assert run("import", "csv", str(bad), "--source", "bills", "--mapping", "vendor-bill").exit_code == 2
    assert ledger_totals(cli_env["TALLYBOOK_DATABASE_URL"])[("csv:bills", "USD")] == Decimal(400)


def test_a_mapping_file_of_ones_own(cli_env, tmp_path) -> None:
    mapping = tmp_path / "acme.toml"
    mapping.write_text('kind = "cost"\namount_unit = "cents"\n[columns]\ndate = "Day"\namount = "Cents"\n'
                       'project = "Team"\n[constants]\nprovider = "acme-ai"\ncurrency = "usd"\n')
    path = tmp_path / "acme.csv"
    path.write_text("Day,Team,Cents\n2026-10-01,research,1250\n2026-10-02,support,5\n")
    ok("import", "csv", str(path), "--source", "acme", "--mapping", str(mapping))
    assert ledger_totals(cli_env["TALLYBOOK_DATABASE_URL"]) == {("csv:acme", "USD"): Decimal("12.55")}
    unknown = run("import", "csv", str(path), "--source", "acme", "--mapping", "no-such-mapping")
    assert unknown.exit_code == 2 and "vertex-billing" in unknown.stderr


def test_replace_makes_a_corrected_file_drop_the_rows_it_no_longer_has(cli_env, tmp_path) -> None:
    first, corrected = tmp_path / "first.csv", tmp_path / "corrected.csv"
    first.write_text(GOOD)
    corrected.write_text(GOOD.replace("2026-10-02,deepl,API usage,12.65,EUR\n", "")
                         .replace("Pro seats,400.00", "Pro seats (credit applied),380.00"))
    ok("import", "csv", str(first), "--source", "bills", "--mapping", "vendor-bill")
    ok("import", "csv", str(corrected), "--source", "bills", "--mapping", "vendor-bill")
    url = cli_env["TALLYBOOK_DATABASE_URL"]
    # row by row: the corrected file's lines are new records, the old ones stay beside them
    assert ledger_totals(url) == {("csv:bills", "USD"): Decimal(780), ("csv:bills", "EUR"): Decimal("87.35")}
    for _ in range(2):
        ok("import", "csv", str(corrected), "--source", "bills", "--mapping", "vendor-bill", "--replace")
        assert ledger_totals(url) == {("csv:bills", "USD"): Decimal(380), ("csv:bills", "EUR"): Decimal("87.35")}
