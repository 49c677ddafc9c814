"""CSV mappings: which column of a vendor's export holds which field of our records.

A mapping is a small TOML file (the built-in ones are in `mappings/`; see docs/imports.md):

    name = "vertex-billing"
    description = "Google Cloud billing export (BigQuery standard usage cost table, as CSV)"
    kind = "cost"                     # cost: spend | invoice: a vendor's bill, shown beside our figures
    date_format = "%Y-%m-%d %H:%M:%S %Z"   # strptime; leave out for ISO 8601 dates and times
    encoding = "utf-8"                # the file must decode strictly in it (a BOM is allowed)

    [columns]                         # our field = the CSV header that holds it
    date = "usage_start_time"         # required
    amount = "cost"                   # required
    currency = "currency"
    project = "project.id"

    [constants]                       # our field = a value every row gets (when no column holds it)
    provider = "google"

Fields: date, amount, currency, provider, model, project, api_key, user, line_item, token_type,
cost_type, service_tier, quantity, quantity_unit, and the token measures (input_tokens,
cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, output_tokens, requests): a mapping
with any token measure also writes usage records. Options: `amount_unit` ("main" or "cents"),
`thousands_separator`, `allow_negative` (credit lines), `delimiter`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tallybook.errors import ImportFileError

BUILTIN_DIR = Path(__file__).parent / "mappings"
KINDS = ("cost", "invoice")
TOKEN_FIELDS = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
                "output_tokens", "requests")
TEXT_FIELDS = ("provider", "model", "project", "api_key", "user", "line_item", "token_type", "cost_type",
               "service_tier", "quantity_unit", "currency")
FIELDS = ("date", "amount", "quantity", *TEXT_FIELDS, *TOKEN_FIELDS)
OPTIONS = {"name", "description", "kind", "date_format", "encoding", "delimiter", "amount_unit",
           "thousands_separator", "allow_negative", "columns", "constants", "sample"}


@dataclass(frozen=True)
class Mapping:
    name: str
    description: str = ""
    kind: str = "cost"
    columns: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    date_format: str | None = None
    encoding: str = "utf-8"
    delimiter: str = ","
    amount_unit: str = "main"
    thousands_separator: str | None = None
    allow_negative: bool = False
    sample: str | None = None  # the sample file under docs/samples/ that shows the shape

    @property
    def writes_usage(self) -> bool:
        return any(f in self.columns for f in TOKEN_FIELDS)


def builtin_names() -> list[str]:
    return sorted(p.stem.replace("_", "-") for p in BUILTIN_DIR.glob("*.toml"))


def load_mapping(name_or_path: str) -> Mapping:
    """A built-in mapping by name (`vertex-billing`) or a mapping file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = BUILTIN_DIR / f"{name_or_path.replace('-', '_')}.toml"
        if not path.is_file():
            raise ImportFileError(name_or_path, None, None,
                                  f"no such built-in mapping; choose from {', '.join(builtin_names())} "
                                  "or give a mapping file (.toml).")
    if not path.is_file():
        raise ImportFileError(str(path), None, None, "mapping file not found.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ImportFileError(str(path), None, None, f"not a valid TOML mapping ({exc}).") from None
    return parse_mapping(data, where=str(path))


def parse_mapping(data: dict[str, object], *, where: str) -> Mapping:
    unknown = sorted(set(data) - OPTIONS)
    if unknown:
        raise ImportFileError(where, None, None, f"unknown mapping option(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(OPTIONS))}.")
    columns = _table(data, "columns", where)
    constants = _table(data, "constants", where)
    for section, values in (("columns", columns), ("constants", constants)):
        bad = sorted(set(values) - set(FIELDS))
        if bad:
            raise ImportFileError(where, None, None, f"[{section}] has unknown field(s) {', '.join(bad)}; "
                                  f"fields: {', '.join(FIELDS)}.")
    for required in ("date", "amount"):
        if required not in columns:
            raise ImportFileError(where, None, None, f"[columns] must say which column holds `{required}`.")
    for needed in ("currency", "provider"):
        if needed not in columns and needed not in constants:
            raise ImportFileError(where, None, None, f"give `{needed}` in [columns] or [constants].")
    kind = str(data.get("kind", "cost"))
    if kind not in KINDS:
        raise ImportFileError(where, None, None, f"kind {kind!r} must be one of {', '.join(KINDS)}.")
    amount_unit = str(data.get("amount_unit", "main"))
    if amount_unit not in ("main", "cents"):
        raise ImportFileError(where, None, None, "amount_unit must be main or cents.")
    name = str(data.get("name") or Path(where).stem.replace("_", "-"))
    separator = data.get("thousands_separator")
    return Mapping(
        name=name, description=str(data.get("description", "")), kind=kind, columns=columns,
        constants=constants, date_format=_opt_str(data.get("date_format")),
        encoding=str(data.get("encoding", "utf-8")), delimiter=str(data.get("delimiter", ",")),
        amount_unit=amount_unit, thousands_separator=None if separator is None else str(separator),
        allow_negative=bool(data.get("allow_negative", False)), sample=_opt_str(data.get("sample")),
    )


def _table(data: dict[str, object], key: str, where: str) -> dict[str, str]:
    value = data.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ImportFileError(where, None, None, f"[{key}] must be a table of field = \"text\".")
    return dict(value)


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
