"""The dashboard's interface strings, kept apart from the code: one TOML catalog per language.

    t("overview.title", "fr")                   -> "Vue d'ensemble"
    t("sync.last", "en", when="2026-11-20")     -> "Last sync 2026-11-20"   (str.format placeholders)

A key missing from a catalog falls back to English, then to the key itself, so a gap shows up on
the page instead of crashing it; tests/web/test_i18n.py keeps the catalogs complete and in step.
The language is the one the user chose (cookie `tallybook_lang`), else the browser's best match
in Accept-Language, else English. API error messages stay English and do not come from here.
"""

from __future__ import annotations

import tomllib
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("en", "fr")
DEFAULT = "en"
COOKIE = "tallybook_lang"
HERE = Path(__file__).parent


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = str(value)
    return flat


@cache
def catalog(lang: str) -> dict[str, str]:
    """Every key of `lang`'s catalog, dotted (`section.key`)."""
    if lang not in LANGUAGES:
        raise KeyError(f"No catalog for {lang!r}; choose from {', '.join(LANGUAGES)}.")
    return _flatten(tomllib.loads((HERE / f"{lang}.toml").read_text(encoding="utf-8")))


def t(key: str, lang: str = DEFAULT, /, **kw: Any) -> str:
    """The string for `key` in `lang` (English when missing), with `kw` filled in."""
    text = catalog(lang if lang in LANGUAGES else DEFAULT).get(key) or catalog(DEFAULT).get(key) or key
    return text.format(**kw) if kw else text


def has(key: str) -> bool:
    return key in catalog(DEFAULT)


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The user's language: the cookie's when valid, else the best of Accept-Language, else English."""
    if cookie in LANGUAGES:
        return cookie
    best, best_q = DEFAULT, -1.0
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        if lang not in LANGUAGES:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q and q > 0:
            best, best_q = lang, q - position * 1e-6  # ties go to the first listed
    return best


def number(value: Decimal | float | None, lang: str, places: int | None = None) -> str:
    """A number as people of `lang` write it: 1,234.50 in English, 1 234,50 in French."""
    if value is None:
        return "–"
    if places is not None:
        value = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = f"{value:,}" if isinstance(value, int) else f"{Decimal(value):,f}"
    if lang == "fr":
        text = text.replace(",", "\u202f").replace(".", ",")
    return text


def money(value: Decimal | None, currency: str, lang: str, places: int = 2) -> str:
    if value is None:
        return "–"
    return f"{number(value, lang, places)} {currency}"


def percent(share: Decimal | None, lang: str, places: int = 1) -> str:
    """A share (0.125) as a percentage (12.5 %)."""
    if share is None:
        return "–"
    return f"{number(Decimal(share) * 100, lang, places)}\u00a0%"
