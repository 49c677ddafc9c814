"""`tallybook pricing ...` and `tallybook fx ...` against a fresh ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tests.cli.helpers import ok, run

D = Decimal
DATA = Path(__file__).resolve().parent.parent / "data"

RULES_V1 = """\
[[rule]]
id = "gpt4o-markup"
provider = "openai"
model = "gpt-4o*"
markup = 0.20
effective_from = 2026-01-01

[[rule]]
id = "anthropic-discount"
provider = "anthropic"
discount = "8%"
effective_from = 2026-01-01
"""


def test_show_lists_prices_per_unit_and_the_rules_in_force(cli_env: dict[str, str]) -> None:
    ok("pricing", "set", "--id", "gpt4o-markup", "--provider", "openai", "--model", "gpt-4o*", "--markup", "0.20",
       "--from", "2026-06-01", env=cli_env)
    before = ok("pricing", "show", "gpt-4o-2024-08-06", "--at", "2026-05-31", "--format", "json", env=cli_env).json()[0]
    after = ok("pricing", "show", "gpt-4o-2024-08-06", "--at", "2026-06-01", "--format", "json", env=cli_env).json()[0]
    prices = {row["unit"]: row for row in after["prices"]}
    assert (after["provider"], after["catalog_model"], after["known"]) == ("openai", "gpt-4o", True)
    assert D(prices["input_mtok"]["price"]) == D("2.5") and D(prices["output_mtok"]["price"]) == D(10)
    assert D(prices["cache_read_mtok"]["price"]) == D("1.25") and D(prices["input_mtok"]["batch"]) == D("1.25")
    assert prices["cache_write_5m_mtok"]["source"].startswith("derived")
    assert before["rules"] == []
    assert [(r["rule_id"], r["figures"]) for r in after["rules"]] == [("gpt4o-markup", "+20 %")]
    table = ok("pricing", "show", "claude-sonnet-4-20250514", "--at", "2026-03-01", env=cli_env)
    assert "cache_write_1h_mtok" in table.stdout and "3.75" in table.stdout  # full prices, not rounded to cents


def test_show_says_when_a_model_is_unknown(cli_env: dict[str, str]) -> None:
    result = run("pricing", "show", "gpt-99-turbo", env=cli_env)
    assert result.exit_code == 2
    assert "openai/gpt-99-turbo is not in genai-prices" in result.stderr
    assert "priced as unknown" in result.stderr


def test_apply_twice_changes_nothing_and_a_change_is_a_new_version(cli_env: dict[str, str], tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_V1)
    checked = ok("pricing", "apply", str(rules), "--check", "--format", "json", env=cli_env).json()
    assert [r["action"] for r in checked] == ["created", "created"]
    assert ok("pricing", "rules", "list", "--format", "json", env=cli_env).json() == []  # --check wrote nothing
    first = ok("pricing", "apply", str(rules), "--format", "json", env=cli_env).json()
    again = ok("pricing", "apply", str(rules), "--format", "json", env=cli_env).json()
    assert [r["action"] for r in first] == ["created", "created"]
    assert [r["action"] for r in again] == ["unchanged", "unchanged"]
    rules.write_text(RULES_V1.replace("markup = 0.20\neffective_from = 2026-01-01",
                                      "markup = 0.25\neffective_from = 2026-07-01"))
    changed = ok("pricing", "apply", str(rules), "--format", "json", env=cli_env).json()
    assert [(r["rule_id"], r["action"], r["version"]) for r in changed] == [
        ("gpt4o-markup", "updated", 2), ("anthropic-discount", "unchanged", 1)]
    history = ok("pricing", "rules", "list", "--all-versions", "--format", "json", env=cli_env).json()
    markups = [(r["version"], r["figures"], r["effective_from"], r["effective_to"]) for r in history
               if r["rule_id"] == "gpt4o-markup"]
    assert markups == [(1, "+20 %", "2026-01-01T00:00:00", "2026-07-01T00:00:00"),
                       (2, "+25 %", "2026-07-01T00:00:00", None)]
    current = ok("pricing", "rules", "list", "--format", "json", env=cli_env).json()
    assert sorted((r["rule_id"], r["version"]) for r in current) == [("anthropic-discount", 1), ("gpt4o-markup", 2)]


def test_a_tally_file_applies_and_its_syntax_errors_name_the_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    good = tmp_path / "rules.tally"
    good.write_text('rule "gpt4o-markup" { provider = "openai" model = "gpt-4o*" markup = 0.20 '
                    'effective_date = "2026-01-01" }\n')
    assert ok("pricing", "apply", str(good), "--format", "json", env=cli_env).json()[0]["action"] == "created"
    bad = tmp_path / "broken.tally"
    bad.write_text('rule "a" {\n  provider = "openai"\n  markup 0.2\n  effective_date = "2026-01-01"\n}\n')
    result = run("pricing", "apply", str(bad), env=cli_env)
    assert result.exit_code == 2
    assert f"{bad}:3:10: expected '=' after 'markup'" in result.stderr.replace("\n", "")


def test_set_validates_its_options(cli_env: dict[str, str]) -> None:
    result = run("pricing", "set", "--id", "x", "--discount", "15", "--from", "2026-01-01", env=cli_env)
    assert result.exit_code == 2 and "not a fraction" in result.stderr
    created = ok("pricing", "set", "--id", "contract", "--provider", "anthropic", "--model", "claude-*",
                 "--rate", "input_mtok=2.4", "--rate", "output_mtok=12", "--from", "2026-01-01", "--format", "json",
                 env=cli_env).json()
    assert (created[0]["action"], created[0]["version"]) == ("created", 1)
    listed = ok("pricing", "rules", "list", "--format", "json", env=cli_env).json()
    assert listed[0]["figures"] == "input_mtok 2.4, output_mtok 12 USD"
    shaky = run("pricing", "set", "--id", "deal", "--tier", "10000-0.05", "--from", "2026-01-01", env=cli_env)
    assert shaky.exit_code == 2 and "should look like 10000:0.05" in shaky.stderr.replace("\n", " ")


def test_set_takes_commitment_tiers_and_several_rates_in_one_option(cli_env: dict[str, str]) -> None:
    ok("pricing", "set", "--id", "deal", "--provider", "openai", "--tier", "10000:0.05", "--tier", "50000:8%",
       "--from", "2026-01-01", env=cli_env)
    ok("pricing", "set", "--id", "contract", "--provider", "anthropic", "--rate", "input_mtok=2.4, output_mtok=12",
       "--from", "2026-01-01", env=cli_env)
    listed = {r["rule_id"]: r["figures"] for r in ok("pricing", "rules", "list", "--format", "json", env=cli_env).json()}
    assert listed == {"deal": ">= 10000 USD/month: -5 %; >= 50000 USD/month: -8 %",
                      "contract": "input_mtok 2.4, output_mtok 12 USD"}


def test_fx_import_and_show_with_the_rate_date(cli_env: dict[str, str]) -> None:
    missing = run("fx", "show", "--currency", "EUR", "--date", "2026-01-10", env=cli_env)
    assert missing.exit_code == 1 and "tallybook fx import" in missing.stderr
    imported = ok("fx", "import", str(DATA / "eurofxref-hist-sample.csv"), "--format", "json", env=cli_env).json()
    assert (imported[0]["days"], imported[0]["rates"]) == (9, 35)
    ok("fx", "import", str(DATA / "eurofxref-hist-sample.csv"), env=cli_env)  # again: harmless
    [row] = ok("fx", "show", "--currency", "EUR", "--date", "2026-01-10", "--format", "json", env=cli_env).json()
    assert (row["base"], row["currency"], row["rate_date"]) == ("USD", "EUR", "2026-01-09")  # Saturday: Friday's rate
    assert D(row["rate"]) == D("0.858369")  # 1 / 1.1650


def test_fx_import_of_a_url_fails_clearly_when_offline(cli_env: dict[str, str]) -> None:
    result = run("fx", "import", "http://127.0.0.1:9/eurofxref-hist.zip", env=cli_env)
    assert result.exit_code == 1
    assert "looks offline" in result.stderr.replace("\n", " ")
