"""Rules files: `rules.toml` and the `.tally` block format read to the same rules; errors name the line."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tallybook.errors import PricingError, RuleFileError
from tallybook.pricing.rulefile import parse_rules, read_rules
from tallybook.pricing.rules import CommitmentTier

D = Decimal

TOML = """\
# rules.toml: the team's pricing rules
[[rule]]
id = "gpt4o-markup"
provider = "openai"
model = "gpt-4o*"
markup = 0.20
effective_from = 2026-01-01

[[rule]]
id = "sonnet-contract"
provider = "anthropic"
model = "claude-sonnet-4*"
rates = { input_mtok = 2.40, output_mtok = 12 }
effective_from = 2026-02-01
note = "2026 contract"

[[rule]]
id = "openai-commit"
provider = "openai"
tiers = [ { min_spend = 10000, discount = "5%" }, { min_spend = 50000, discount = 0.12 } ]
effective_from = 2026-01-01
effective_to = 2027-01-01
"""

TALLY = """\
# the same rules, in the block format
rule "gpt4o-markup" { provider = "openai" model = "gpt-4o*" markup = 0.20 effective_date = "2026-01-01" }

rule "sonnet-contract" {
  provider = "anthropic"
  model = "claude-sonnet-4*"
  rates { input_mtok = 2.40, output_mtok = 12 }
  effective_from = 2026-02-01
  note = "2026 contract"
}

rule "openai-commit" {
  provider = "openai"
  tier { min_spend = 10000 discount = 5% }   // one block per tier
  tier { min_spend = 50000 discount = 0.12 }
  effective_from = "2026-01-01"; effective_to = 2027-01-01
}
"""


def test_both_formats_read_to_the_same_rules() -> None:
    from_toml = parse_rules(TOML, path="rules.toml", fmt="toml")
    from_tally = parse_rules(TALLY, path="rules.tally", fmt="tally")
    assert [r.content_hash() for r in from_toml] == [r.content_hash() for r in from_tally]
    markup, contract, commit = from_tally
    assert (markup.kind, markup.provider, markup.model_pattern, markup.fraction, markup.effective_from) == (
        "markup", "openai", "gpt-4o*", D("0.2"), datetime(2026, 1, 1))
    assert (contract.kind, contract.rates, contract.note) == (
        "negotiated", {"input_mtok": D("2.4"), "output_mtok": D(12)}, "2026 contract")
    assert commit.tiers == (CommitmentTier(D(10000), D("0.05")), CommitmentTier(D(50000), D("0.12")))
    assert commit.effective_to == datetime(2027, 1, 1)


def test_read_rules_picks_the_format_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "rules.tally").write_text(TALLY)
    (tmp_path / "rules.toml").write_text(TOML)
    assert len(read_rules(tmp_path / "rules.tally")) == len(read_rules(tmp_path / "rules.toml")) == 3
    (tmp_path / "rules.yaml").write_text("")
    with pytest.raises(PricingError, match=r"\.toml or \.tally"):
        read_rules(tmp_path / "rules.yaml")


def test_flat_rate_keys_make_a_negotiated_rule() -> None:
    [rule] = parse_rules('rule "x" { provider = "anthropic" input_mtok = 2.4 effective_from = 2026-01-01 }',
                         fmt="tally")
    assert (rule.kind, rule.rates) == ("negotiated", {"input_mtok": D("2.4")})


@pytest.mark.parametrize("text, line, column, message", [
    ('rule "a" { provider "openai" }', 1, 21, "expected '=' after 'provider', found string \"openai\""),
    ('rule "a" {\n  markup = 0.2\n  effective_from = 2026-01-01\n', 4, 1,
     "expected '}' to close rule \"a\" opened at line 1"),
    ('\n\nrule "a" { note = "never closed }', 3, 19, "string not closed"),
    ('rule a { }', 1, 6, "expected the rule's id in double quotes"),
    ('rules "a" { }', 1, 1, "expected 'rule' to start a rule block"),
    ('rule "a" {\n  markup = 0.2\n  markup = 0.3\n  effective_from = 2026-01-01 }', 3, 3,
     "'markup' is given twice in rule \"a\" (first at line 2)"),
    ('rule "a" {\n  effective_from = 2026-01-01\n  markups = 0.2\n}', 3, 3, "unknown key 'markups'"),
    ('rule "a" {\n  markup = abc\n  effective_from = 2026-01-01 }', 2, 12, "expected a value for 'markup'"),
    ('rule "a" {\n  markup = 0.2\n  effective_from = "first of January"\n}', 3, 3, "expected a date such as 2026-01-01"),
    ('rule "a" {\n  provider = "openai"\n}', 1, 1, "has no figure"),
    ('rule "a" { markup = 0.2 }', 1, 1, "needs effective_from"),
    ('rule "a" { markup = 0.2 discount = 0.1 effective_from = 2026-01-01 }', 1, 1, "one rule has one kind"),
    ('rule "a" {\n  discount = 10\n  effective_from = 2026-01-01 }', 2, 3, "write 0.10 or \"10%\""),
    ('rule "a" { kind = "discount" markup = 0.2 effective_from = 2026-01-01 }', 1, 12, "does not match"),
    ('rule "a" { rates { input_tokens = 2 } effective_from = 2026-01-01 }', 1, 20, "cannot negotiate 'input_tokens'"),
    ('rule "a" { markup = 0.2 effective_from = 2026-01-01 }\nrule "a" { markup = 0.3 effective_from = 2026-01-01 }',
     2, 1, "rule 'a' is defined twice (first at line 1)"),
    ('rule "a" {\n  markup = 0.2 ? \n}', 2, 16, "unexpected character '?'"),
    ('rule "a" { markup = 0.2 effective_from = 2026-02-01 effective_to = 2026-01-01 }', 1, 1,
     "effective_to must be after effective_from"),
])
def test_tally_errors_name_the_line(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_rules(text, path="team.tally", fmt="tally")
    assert (caught.value.line, caught.value.column) == (line, column), str(caught.value)
    assert str(caught.value).startswith(f"team.tally:{line}:{column}: ")
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("text, line, message", [
    ('[[rule]]\nid = "a"\nmarkup = = 0.2\n', 3, "TOML syntax"),
    ('[[rule]]\nid = "a"\nmarkup = 0.2\neffective_from = 2026-01-01\n\n[[rule]]\nprovider = "openai"\n', 6,
     "rule #2 has no id"),
    ('[[rule]]\nid = "a"\neffective_from = 2026-01-01\nmarkup = "lots"\n', 4, "markup must be a number"),
    ('[[rule]]\nid = "a"\nmarkup = 0.2\neffective_from = 2026-01-01\nmodell = "gpt-4o"\n', 5, "unknown key 'modell'"),
    ('[[rule]]\nid = "a"\nmarkup = 0.2\n', 1, "needs effective_from"),
    ('[rules]\nid = "a"\n', 1, "expected only [[rule]] tables"),
])
def test_toml_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_rules(text, path="rules.toml", fmt="toml")
    assert caught.value.line == line, str(caught.value)
    assert message in str(caught.value)
