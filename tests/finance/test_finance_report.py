"""`tallybook report finance`: totals equal the ledger's rows (re-derived here in SQL), the invoice sits
beside our figure with the difference, and the PDF shows the same totals."""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pypdf
import sqlalchemy as sa

from tallybook.money import fmt_amount
from tests.cli.helpers import ok, run
from tests.finance.seed import ledger_spend, seed

ROOT = Path(__file__).resolve().parents[2]
OCT, NOV, SEP = (datetime(2026, 10, 1), datetime(2026, 11, 1)), (datetime(2026, 11, 1), datetime(2026, 12, 1)), \
    (datetime(2026, 9, 1), datetime(2026, 10, 1))


def test_finance_totals_equal_the_ledger_rows(engine: sa.Engine, cli_env) -> None:
    seed(engine)
    ok("import", "csv", str(ROOT / "docs/samples/claude_team_invoice.csv"), "--source", "claude-inv",
       "--mapping", "claude-team-invoice")
    report = ok("report", "finance", "--month", "2026-10", "--format", "json").json()
    openai = ledger_spend(engine, *OCT)
    seats = {"cursor": Decimal(80), "claude": Decimal(25)}
    assert Decimal(report["total"]) == openai + sum(seats.values())
    assert Decimal(report["usage_total"]) == openai and Decimal(report["seat_total"]) == sum(seats.values())
    platforms = {p["platform"]: p for p in report["platforms"]}
    assert Decimal(platforms["openai"]["usage_cost"]) == openai
    assert Decimal(platforms["cursor"]["seat_cost"]) == seats["cursor"]
    # the Claude Team invoice (540.00) beside our 25.00 seat figure, and the difference
    assert Decimal(platforms["claude"]["vendor_reported"]) == Decimal(540)
    assert Decimal(platforms["claude"]["difference"]) == Decimal(25) - Decimal(540)
    assert platforms["openai"]["vendor_reported"] is None
    # month over month against September's own rows
    assert Decimal(report["previous_total"]) == ledger_spend(engine, *SEP) + sum(seats.values())
    teams = {t["name"]: Decimal(t["amount"]) for t in report["teams"]}
    assert sum(teams.values()) == Decimal(report["total"])
    assert teams["unallocated"] == ledger_spend(engine, *OCT, api_key="key_ghost") + seats["claude"]
    assert Decimal(report["unallocated"]["amount"]) == teams["unallocated"]
    assert report["top_users"][0]["name"] == "Ana" and report["top_users"][0]["team"] == "research"
    assert report["origins"] == {"seat": "estimated", "usage": "reported", "vendor_reported": "reported"}


def test_quarter_covers_its_three_months(engine: sa.Engine, cli_env) -> None:
    seed(engine)
    quarter = ok("report", "finance", "--quarter", "2026-Q4", "--format", "json").json()
    months = [ok("report", "finance", "--month", m, "--format", "json").json() for m in ("2026-10", "2026-11", "2026-12")]
    assert Decimal(quarter["total"]) == sum(Decimal(m["total"]) for m in months)
    assert Decimal(quarter["usage_total"]) == ledger_spend(engine, OCT[0], datetime(2027, 1, 1))


def test_the_pdf_shows_the_same_totals(engine: sa.Engine, cli_env, tmp_path) -> None:
    seed(engine)
    report = ok("report", "finance", "--month", "2026-10", "--format", "json").json()
    path = tmp_path / "finance.pdf"
    ok("report", "finance", "--month", "2026-10", "--format", "pdf", "--output", str(path))
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(path.read_bytes())).pages)
    total = fmt_amount(Decimal(report["total"]), 2)
    assert f"total {total} USD" in text
    for team in report["teams"]:
        assert fmt_amount(Decimal(team["amount"]), 2) in text, team
    for platform in report["platforms"]:
        assert f"{platform['platform']} " in text and fmt_amount(Decimal(platform["total"]), 2) in text


def test_table_and_csv_forms_and_bad_periods(engine: sa.Engine, cli_env) -> None:
    seed(engine)
    table = ok("report", "finance", "--month", "2026-10").stdout
    assert "Per team" in table and "unallocated" in table and "Idle seats" in table
    rows = ok("report", "finance", "--month", "2026-10", "--format", "csv").stdout.splitlines()
    assert rows[0].startswith("section,name,seat_cost") and any(r.startswith("team,research,") for r in rows)
    assert run("report", "finance", "--month", "2026-13").exit_code == 2
    assert run("report", "finance", "--month", "2026-10", "--quarter", "2026-Q4").exit_code == 2
    assert run("report", "finance", "--month", "2026-10", "--format", "pdf").exit_code == 2


def test_amounts_in_another_currency_are_converted_at_the_days_ecb_rate(engine: sa.Engine, cli_env,
                                                                          tmp_path) -> None:
    from datetime import timedelta

    from tallybook.pricing.fx import import_ecb_csv

    seed(engine)
    bill = tmp_path / "bill.csv"
    bill.write_text("date,vendor,description,amount,currency\n2026-10-15,deepl,API usage,100.00,EUR\n")
    ok("import", "csv", str(bill), "--source", "bills", "--mapping", "vendor-bill")
    missing = run("report", "finance", "--month", "2026-10", "--format", "json")
    assert missing.exit_code == 1 and "tallybook fx import" in missing.stderr  # no rate: said, not guessed
    days = [datetime(2026, 8, 25) + timedelta(days=i) for i in range(70)]
    rates = "Date,USD,\n" + "".join(f"{d:%Y-%m-%d},{'1.2500' if d.day == 15 else '1.1000'},\n" for d in days)
    with engine.begin() as conn:
        import_ecb_csv(conn, rates)
    report = ok("report", "finance", "--month", "2026-10", "--format", "json").json()
    deepl = next(p for p in report["platforms"] if p["platform"] == "deepl")
    assert Decimal(deepl["usage_cost"]) == Decimal(125)  # 100 EUR at the 15th's rate, 1.25 USD a euro
    assert Decimal(report["usage_total"]) == ledger_spend(engine, *OCT, currency="USD") + 125
    in_euros = ok("report", "finance", "--month", "2026-10", "--currency", "EUR", "--format", "json").json()
    cursor = next(p for p in in_euros["platforms"] if p["platform"] == "cursor")
    # two seats, at the 1st's rate (JSON carries nine decimals)
    assert Decimal(cursor["seat_cost"]) == (Decimal(80) / Decimal("1.1")).quantize(Decimal("1e-9"))
    assert in_euros["currency"] == "EUR"
