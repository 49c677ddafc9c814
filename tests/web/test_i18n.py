"""The dashboard's catalogs: complete in both languages, every key the pages use exists, the
language is chosen as users expect, numbers are written the way each language writes them."""

from __future__ import annotations

import re
import string
from decimal import Decimal
from pathlib import Path

import pytest

from tallybook.web import i18n

WEB = Path(i18n.__file__).parent.parent
LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_0-9]+)["']""")
TITLE_KEY = re.compile(r"""(?:title|note|empty|label)=["']([a-z_]+\.[a-z_0-9]+)["']""")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_english_and_french_have_the_same_keys_and_placeholders() -> None:
    en, fr = i18n.catalog("en"), i18n.catalog("fr")
    assert set(en) == set(fr), f"only in en: {set(en) - set(fr)}; only in fr: {set(fr) - set(en)}"
    for key in en:
        assert _fields(en[key]) == _fields(fr[key]), key
        assert fr[key].strip(), key


def test_every_key_the_pages_and_templates_name_is_in_the_catalog() -> None:
    used: set[str] = set()
    for path in [*WEB.glob("templates/*.html"), *WEB.glob("pages/*.py")]:
        text = path.read_text()
        used |= set(LITERAL_KEY.findall(text)) | set(TITLE_KEY.findall(text))
    assert len(used) > 100  # the scan itself works
    missing = sorted(k for k in used if not i18n.has(k))
    assert not missing, missing


def test_every_column_a_table_shows_has_a_label() -> None:
    from tallybook.web.pages import benchmark, optimise, overview, reconcile, spend

    columns = [*overview.RATE_COLUMNS, *overview.MARKET_COLUMNS, *overview.SPEND_COLUMNS, *overview.TREND_COLUMNS,
               *overview.FORECAST_COLUMNS, *overview.PROVIDER_COLUMNS, *optimise.SAVING_COLUMNS,
               *optimise.COMMIT_COLUMNS, *optimise.MONTH_COLUMNS, *benchmark.COLUMNS, *reconcile.COLUMNS,
               *spend.TOKEN_COLUMNS]
    missing = sorted({c.label or f"col.{c.key}" for c in columns} - set(i18n.catalog("en")))
    assert not missing, missing
    for dim in spend.DIMENSIONS:
        assert i18n.has(f"dim.{dim}")


def test_a_missing_key_falls_back_to_english_then_to_the_key() -> None:
    assert i18n.t("nav.overview", "fr") == "Vue d'ensemble"
    assert i18n.t("nav.overview", "de") == "Overview"
    assert i18n.t("no.such_key", "fr") == "no.such_key"
    assert i18n.t("setup.password_hint", "fr", n=10) == "Au moins 10 caractères."


@pytest.mark.parametrize(("cookie", "header", "expected"), [
    (None, None, "en"),
    (None, "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", "fr"),
    (None, "de-DE,de;q=0.9,en;q=0.5,fr;q=0.4", "en"),
    (None, "en;q=0.3, fr;q=0.8", "fr"),
    (None, "fr;q=0", "en"),
    ("fr", "en-GB", "fr"),  # the switch wins over the browser
    ("xx", "fr", "fr"),  # an unknown cookie is ignored
])
def test_the_language_is_the_switch_then_accept_language(cookie: str | None, header: str | None,
                                                         expected: str) -> None:
    assert i18n.choose(cookie, header) == expected


def test_numbers_and_money_are_written_as_each_language_writes_them() -> None:
    assert i18n.money(Decimal("1234567.891"), "USD", "en") == "1,234,567.89 USD"
    assert i18n.money(Decimal("1234567.891"), "EUR", "fr") == "1\u202f234\u202f567,89 EUR"
    assert i18n.number(1234, "en") == "1,234"
    assert i18n.percent(Decimal("0.125"), "en") == "12.5\u00a0%"
    assert i18n.money(None, "USD", "en") == "–"
