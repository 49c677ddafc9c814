"""Rules files a team keeps in version control: `rules.toml`, or the `.tally` block format.

    read_rules(path) -> list[Rule]                              by suffix: .toml or .tally
    parse_rules(text, *, path="<rules>", fmt="toml"|"tally") -> list[Rule]
    build_rule(rule_id, values) -> Rule                         the same fields from the CLI or API

Both formats hold the same fields per rule (docs/pricing.md has the full schema):

    id / rule "<id>"  the rule's name, unique in the file
    provider          "openai", "anthropic", ... (omit, or "*", for every provider)
    model             fnmatch pattern, default "*" (alias: model_pattern)
    markup            0.20 or "20%"                       -> kind markup
    discount          0.10 or "10%"                       -> kind discount
    rates / negotiated  { input_mtok = 2.4, output_mtok = 12 }, or the *_mtok keys directly -> negotiated
    tiers             [{ min_spend = 10000, discount = 0.05 }, ...]  (.tally: one `tier { }` block each)
                                                                      -> kind commitment
    kind              optional; must agree with the figure given
    currency          default "USD"
    effective_from    2026-01-01 (alias: effective_date); effective_to (exclusive, optional)
    note              free text

A `.tally` file is a list of blocks; keys are separated by white space (commas optional); strings are
double-quoted; `#` and `//` start comments:

    rule "gpt4o-markup" { provider = "openai" model = "gpt-4o*" markup = 0.20 effective_date = "2026-01-01" }

Every error is a RuleFileError reading `path:line:column: what was expected`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tallybook.errors import PricingError, RuleFileError
from tallybook.pricing.rules import NEGOTIABLE, CommitmentTier, Rule

ALIASES = {"model_pattern": "model", "effective_date": "effective_from", "negotiated": "rates"}
KEYS = ("kind", "provider", "model", "markup", "discount", "rates", "tiers", "currency", "effective_from",
        "effective_to", "note", *NEGOTIABLE)


@dataclass(frozen=True, slots=True)
class Field:
    value: Any
    line: int
    column: int


def read_rules(path: str | Path) -> list[Rule]:
    path = Path(path)
    fmt = {".toml": "toml", ".tally": "tally"}.get(path.suffix.lower())
    if fmt is None:
        raise PricingError(f"{path}: rules files end in .toml or .tally (see docs/pricing.md).")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PricingError(f"Cannot read {path}: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise PricingError(f"{path} is not UTF-8 text.") from None
    return parse_rules(text, path=str(path), fmt=fmt)


def parse_rules(text: str, *, path: str = "<rules>", fmt: str = "toml") -> list[Rule]:
    blocks = _toml_blocks(text, path) if fmt == "toml" else _TallyParser(text, path).parse()
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for rule_id, at, fields in blocks:
        if rule_id in seen:
            raise RuleFileError(path, at.line, at.column, f"rule {rule_id!r} is defined twice "
                                f"(first at line {seen[rule_id]}); each id may appear once")
        seen[rule_id] = at.line
        rules.append(_build(rule_id, at, fields, path))
    return rules


# --- from fields to a Rule ------------------------------------------------------------------------

def build_rule(rule_id: str, values: dict[str, Any]) -> Rule:
    """A rule from the same fields a file holds (numbers may be strings: "0.20", "20%"), for the CLI and
    API; errors are PricingErrors without a file position."""
    fields = {ALIASES.get(k, k): Field(v, 0, 0) for k, v in values.items() if v is not None}
    return _build(rule_id, Field(None, 0, 0), fields, None)


def parse_pairs(text: str, sep: str, example: str) -> list[tuple[str, str]]:
    """The short form of rates and commitment tiers, as the CLI's --rate/--tier and the Settings page take
    them: `input_mtok=2.4, output_mtok=9.6` (sep "=") or `10000:0.05; 50000:8%` (sep ":"), in order."""
    pairs: list[tuple[str, str]] = []
    for part in text.replace(";", ",").split(","):
        if not part.strip():
            continue
        key, found, value = part.partition(sep)
        if not found or not key.strip() or not value.strip():
            raise PricingError(f"{part.strip()!r} should look like {example}.")
        pairs.append((key.strip(), value.strip()))
    if not pairs:
        raise PricingError(f"Give at least one, e.g. {example}.")
    return pairs


def _build(rule_id: str, at: Field, fields: dict[str, Field], path: str | None) -> Rule:
    def fail(field: Field, message: str) -> PricingError:
        if path is None:
            return PricingError(message[0].upper() + message[1:] + ".")
        return RuleFileError(path, field.line, field.column, message)

    for key, field in fields.items():
        if key not in KEYS:
            raise fail(field, f"unknown key {key!r} in rule {rule_id!r}; expected one of: "
                              f"{', '.join(k for k in KEYS if k not in NEGOTIABLE)} or a rate such as input_mtok")
    flat_rates = {k: f for k, f in fields.items() if k in NEGOTIABLE}
    figures = [k for k in ("markup", "discount", "rates", "tiers") if k in fields] + (["rates"] if flat_rates else [])
    kinds = {"markup": "markup", "discount": "discount", "rates": "negotiated", "tiers": "commitment"}
    if not figures:
        raise fail(at, f"rule {rule_id!r} has no figure: give markup, discount, rates or tiers")
    if len(set(figures)) > 1 or ("rates" in fields and flat_rates):
        raise fail(at, f"rule {rule_id!r} gives {' and '.join(sorted(set(figures)))}; one rule has one kind "
                       "(split it into several rules)")
    kind = kinds[figures[0]]
    if "kind" in fields and _text(fields["kind"], "kind", fail) != kind:
        raise fail(fields["kind"], f"kind {fields['kind'].value!r} does not match the figure given ({kind})")
    if "effective_from" not in fields:
        raise fail(at, f"rule {rule_id!r} needs effective_from (or effective_date), e.g. 2026-01-01")
    provider = _text(fields["provider"], "provider", fail).lower() if "provider" in fields else None
    values: dict[str, Any] = {
        "provider": None if provider in ("*", "any", "") else provider,
        "model_pattern": _text(fields["model"], "model", fail) if "model" in fields else "*",
        "currency": _text(fields["currency"], "currency", fail).upper() if "currency" in fields else "USD",
        "effective_from": _when(fields["effective_from"], fail),
        "effective_to": _when(fields["effective_to"], fail) if "effective_to" in fields else None,
        "note": _text(fields["note"], "note", fail) if "note" in fields else "",
    }
    if kind in ("markup", "discount"):
        values["fraction"] = _fraction(fields[kind], kind, fail)
    elif kind == "negotiated":
        table = flat_rates or _table(fields["rates"], "rates", fail)
        for key, field in table.items():
            if key not in NEGOTIABLE:
                raise fail(field, f"cannot negotiate {key!r}; rates are per unit: {', '.join(NEGOTIABLE)}")
        values["rates"] = {key: _number(field, key, fail) for key, field in table.items()}
    else:
        values["tiers"] = tuple(_tier(item, fail) for item in _items(fields["tiers"], fail))
    try:
        return Rule(rule_id, kind, **values)
    except PricingError as exc:
        raise fail(at, str(exc).rstrip(".")) from None


def _text(field: Field, key: str, fail: Any) -> str:
    if not isinstance(field.value, str):
        raise fail(field, f"{key} must be a string in double quotes, found {_show(field.value)}")
    return field.value


def _number(field: Field, key: str, fail: Any) -> Decimal:
    value = field.value
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise fail(field, f"{key} must be a number, found {_show(value)}")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise fail(field, f"{key} must be a number, found {_show(value)}") from None
    if not number.is_finite():
        raise fail(field, f"{key} must be a finite number, found {_show(value)}")
    return number


def _fraction(field: Field, key: str, fail: Any) -> Decimal:
    value = field.value
    if isinstance(value, str) and value.strip().endswith("%"):
        return _number(Field(value.strip()[:-1], field.line, field.column), key, fail) / 100
    number = _number(field, key, fail)
    if number >= 1 and key == "discount":
        raise fail(field, f"discount {value} is not a fraction: write 0.10 or \"10%\" for ten percent")
    return number


def _when(field: Field, fail: Any) -> datetime:
    value = field.value
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime.combine(value, time())
    if isinstance(value, str):
        try:
            return _when(Field(datetime.fromisoformat(value.strip()), field.line, field.column), fail)
        except ValueError:
            pass
    raise fail(field, f"expected a date such as 2026-01-01 (UTC), found {_show(value)}")


def _table(field: Field, key: str, fail: Any) -> dict[str, Field]:
    if not isinstance(field.value, dict):
        raise fail(field, f"{key} must be a table such as {{ input_mtok = 2.4, output_mtok = 12 }}")
    return {k: v if isinstance(v, Field) else Field(v, field.line, field.column) for k, v in field.value.items()}


def _items(field: Field, fail: Any) -> list[Field]:
    if not isinstance(field.value, list) or not field.value:
        raise fail(field, "tiers must be a list of { min_spend = ..., discount = ... }")
    return [v if isinstance(v, Field) else Field(v, field.line, field.column) for v in field.value]


def _tier(item: Field, fail: Any) -> CommitmentTier:
    table = _table(item, "each tier", fail)
    extra = sorted(set(table) - {"min_spend", "discount"})
    if extra or "min_spend" not in table or "discount" not in table:
        raise fail(item, "each tier has exactly min_spend and discount, e.g. { min_spend = 10000, discount = 0.05 }")
    return CommitmentTier(_number(table["min_spend"], "min_spend", fail),
                          _fraction(table["discount"], "discount", fail))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value).lower() if isinstance(value, bool) else str(value)


# --- TOML -----------------------------------------------------------------------------------------

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_RULE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*rule[ \t]*\]\]", re.MULTILINE)


def _toml_blocks(text: str, path: str) -> Iterator[tuple[str, Field, dict[str, Field]]]:
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_POSITION.search(message)
        line, column = (int(found.group(1)), int(found.group(2))) if found else (1, 1)
        raise RuleFileError(path, line, column, _TOML_POSITION.sub("", message).strip() + " (TOML syntax)") from None
    extra = sorted(set(data) - {"rule"})
    if extra or not isinstance(data.get("rule", []), list):
        raise RuleFileError(path, 1, 1, f"expected only [[rule]] tables, found {', '.join(extra) or 'rule'}")
    lines = text.splitlines()
    headers = [text.count("\n", 0, m.start()) + 1 for m in _RULE_HEADER.finditer(text)]
    for index, table in enumerate(data.get("rule", [])):
        start = headers[index] if index < len(headers) else 1
        end = headers[index + 1] if index + 1 < len(headers) else len(lines) + 1
        at = Field(None, start, 1)

        def locate(key: str, value: Any, start: int = start, end: int = end) -> Field:
            pattern = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=")
            for number in range(start, end):
                if pattern.match(lines[number - 1]):
                    return Field(value, number, lines[number - 1].index(key) + 1)
            return Field(value, start, 1)

        if "id" not in table:
            raise RuleFileError(path, start, 1, f"rule #{index + 1} has no id; add id = \"...\"")
        rule_id = table.pop("id")
        if not isinstance(rule_id, str) or not rule_id:
            raise RuleFileError(path, locate("id", None).line, 1, "id must be a non-empty string")
        fields = {}
        for key, value in table.items():
            name = ALIASES.get(key, key)
            if name in fields:
                raise RuleFileError(path, locate(key, None).line, 1, f"{name!r} is given twice in rule {rule_id!r}")
            fields[name] = locate(key, value)
        yield rule_id, at, fields


# --- .tally ---------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+) | (?P<comment>(?:\#|//)[^\n]*) |
    (?P<string>"(?:[^"\\\n]|\\.)*") | (?P<unterminated>"[^\n]*) |
    (?P<date>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?(?![\w.:-])) |
    (?P<number>[-+]?\d+(?:\.\d+)?%?(?![\w.])) |
    (?P<ident>[A-Za-z_][A-Za-z0-9_.\-*]*) | (?P<punct>[{}=,;])
""", re.VERBOSE)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # string | date | number | ident | punct | end
    text: str
    line: int
    column: int

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the file"
        return f"'{self.text}'" if self.kind == "punct" else f"{self.kind} {self.text}"


class _TallyParser:
    """rule "<id>" { key = value ... }, with nested `rates { ... }` and repeated `tier { ... }` blocks."""

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.tokens = list(self._tokenize(text))
        self.pos = 0

    def _tokenize(self, text: str) -> Iterator[_Tok]:
        line, line_start, pos = 1, 0, 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            column = pos - line_start + 1
            if match is None:
                raise RuleFileError(self.path, line, column, f"unexpected character {text[pos]!r}")
            kind = match.lastgroup or ""
            if kind == "unterminated":
                raise RuleFileError(self.path, line, column, "string not closed: expected '\"' before the end of the line")
            if kind not in ("space", "comment"):
                yield _Tok(kind, match.group(), line, column)
            newlines = match.group().count("\n")
            if newlines:
                line += newlines
                line_start = pos + match.group().rindex("\n") + 1
            pos = match.end()
        yield _Tok("end", "", line, pos - line_start + 1)

    def peek(self) -> _Tok:
        return self.tokens[self.pos]

    def take(self) -> _Tok:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, kind: str, text: str | None, what: str) -> _Tok:
        tok = self.take()
        if tok.kind != kind or (text is not None and tok.text != text):
            raise RuleFileError(self.path, tok.line, tok.column, f"expected {what}, found {tok.describe()}")
        return tok

    def parse(self) -> list[tuple[str, Field, dict[str, Field]]]:
        blocks = []
        while self.peek().kind != "end":
            head = self.expect("ident", "rule", "'rule' to start a rule block")
            name = self.expect("string", None, 'the rule\'s id in double quotes after \'rule\', e.g. rule "gpt4o-markup"')
            rule_id = _unquote(name.text)
            if not rule_id:
                raise RuleFileError(self.path, name.line, name.column, "the rule's id must not be empty")
            fields = self.block(f'rule "{rule_id}"', nested=True)
            blocks.append((rule_id, Field(None, head.line, head.column), fields))
        return blocks

    def block(self, owner: str, *, nested: bool) -> dict[str, Field]:
        opened = self.expect("punct", "{", f"'{{' to open {owner}")
        fields: dict[str, Field] = {}
        while True:
            tok = self.take()
            if tok.kind == "punct" and tok.text == "}":
                return fields
            if tok.kind == "punct" and tok.text in ",;":
                continue
            if tok.kind == "end":
                raise RuleFileError(self.path, tok.line, tok.column,
                                    f"expected '}}' to close {owner} opened at line {opened.line}")
            if tok.kind != "ident":
                raise RuleFileError(self.path, tok.line, tok.column,
                                    f"expected a key such as provider or markup in {owner}, found {tok.describe()}")
            key = ALIASES.get(tok.text, tok.text)
            nxt = self.peek()
            if nested and nxt.kind == "punct" and nxt.text == "{" and key in ("rates", "tier"):
                inner = self.block(f"{tok.text} in {owner}", nested=False)
                if key == "tier":
                    tiers = fields.setdefault("tiers", Field([], tok.line, tok.column))
                    tiers.value.append(Field(inner, tok.line, tok.column))
                    continue
                value: Any = inner
            else:
                self.expect("punct", "=", f"'=' after {tok.text!r}")
                value = self.value(tok.text)
            if key in fields:
                first = fields[key]
                raise RuleFileError(self.path, tok.line, tok.column,
                                    f"{tok.text!r} is given twice in {owner} (first at line {first.line})")
            fields[key] = Field(value, tok.line, tok.column)

    def value(self, key: str) -> Any:
        tok = self.take()
        if tok.kind == "string":
            return _unquote(tok.text)
        if tok.kind == "number":
            return tok.text if tok.text.endswith("%") else Decimal(tok.text)
        if tok.kind == "date":
            return tok.text
        if tok.kind == "ident" and tok.text in ("true", "false"):
            return tok.text == "true"
        raise RuleFileError(self.path, tok.line, tok.column,
                            f"expected a value for {key!r} (a \"string\", a number or a date), found {tok.describe()}")


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)
