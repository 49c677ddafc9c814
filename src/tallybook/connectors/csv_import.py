"""CSV imports: spend with no API (console exports, seat invoices, billing exports, vendor bills).

    parse_csv(data, mapping, *, source, path) -> ParsedFile     validate every row; raise on the first bad one
    import_csv(conn, org_id, parsed, *, replace=False) -> ImportResult   write it, in the caller's transaction

A file is all or nothing: `parse_csv` reads and checks the whole file before anything is written, and
names the line and column of the first problem (`ImportFileError`: a date that does not parse, a
negative or non-numeric amount, a missing column, bytes that are not in the mapping's encoding).

Rows become `CostRecord`s (and `UsageRecord`s when the mapping has token columns) in daily buckets,
with source `csv:<name>`, stream `cost` or `invoice` (`usage` for usage records) and origin
`reported`: the vendor's own figures. They go through `ledger.store`'s upserts on the natural key, so
importing the same file again gives the same totals; rows of one file with the same day and
dimensions are summed first. The daily rollups of the file's days are refreshed in the same transaction.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import Connection, insert

from tallybook.connectors.csv_mapping import TOKEN_FIELDS, Mapping
from tallybook.errors import ImportFileError
from tallybook.ledger import rollup, store
from tallybook.ledger import schema_identity as ti
from tallybook.ledger.records import CostRecord, UsageRecord
from tallybook.ledger.store import utcnow
from tallybook.money import fmt_amount

CONNECTION_ID = 0  # imports belong to no connection
CENT_UNITS = Decimal("0.01")


@dataclass
class ParsedFile:
    source: str
    mapping: Mapping
    file_name: str
    sha256: str
    costs: list[CostRecord] = field(default_factory=list)
    usage: list[UsageRecord] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the line each cost record came from

    @property
    def first_day(self) -> datetime | None:
        return min((r.bucket_start for r in self.costs), default=None)

    @property
    def last_day(self) -> datetime | None:
        return max((r.bucket_start for r in self.costs), default=None)

    def totals(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for r in self.costs:
            out[r.currency] = out.get(r.currency, Decimal(0)) + r.amount
        return dict(sorted(out.items()))


@dataclass(frozen=True)
class ImportResult:
    source: str
    mapping: str
    rows: int
    records: int  # ledger rows written (rows with one day and dimensions are one record)
    first_day: datetime | None
    last_day: datetime | None
    totals: dict[str, Decimal]
    origin: str = "reported"

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "mapping": self.mapping, "rows": self.rows, "records": self.records,
                "first_day": self.first_day, "last_day": self.last_day, "origin": self.origin,
                "totals": [{"currency": c, "amount": a} for c, a in self.totals.items()]}


def source_name(name: str) -> str:
    clean = name.strip().lower()
    if not clean or not all(ch.isalnum() or ch in "-_." for ch in clean):
        raise ImportFileError(name, None, None, "--source must be letters, digits, '-', '_' or '.', "
                              "e.g. --source vertex-prod.")
    return clean if clean.startswith("csv:") else f"csv:{clean}"


def parse_csv(data: bytes, mapping: Mapping, *, source: str, path: str) -> ParsedFile:
    """Every row of `data` as records, or `ImportFileError` naming the first bad line and column."""
    text = _decode(data, mapping, path)
    parsed = ParsedFile(source=source_name(source), mapping=mapping, file_name=Path(path).name,
                        sha256=hashlib.sha256(data).hexdigest())
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=mapping.delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ImportFileError(path, None, None, "the file is empty; it needs a header row.") from None
    except csv.Error as exc:
        raise ImportFileError(path, 1, None, f"not readable as CSV ({exc}).") from None
    missing = [col for col in mapping.columns.values() if col not in header]
    if missing:
        raise ImportFileError(path, 1, missing[0], f"the header has no column {missing[0]!r} that mapping "
                              f"{mapping.name!r} needs (found: {', '.join(header)}).")
    index = {f: header.index(col) for f, col in mapping.columns.items()}
    for line, row in _rows(reader, path):
        if len(row) != len(header):
            raise ImportFileError(path, line, None, f"{len(row)} fields where the header has {len(header)}.")
        _parse_row(parsed, mapping, index, row, line, path)
    if not parsed.costs:
        raise ImportFileError(path, None, None, "no data rows after the header.")
    return parsed


def _rows(reader: Iterator[list[str]], path: str) -> Iterator[tuple[int, list[str]]]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(path, reader.line_num, None, f"not readable as CSV ({exc}).") from None  # type: ignore[attr-defined]
        if any(cell.strip() for cell in row):
            yield reader.line_num, row  # type: ignore[attr-defined]


def _decode(data: bytes, mapping: Mapping, path: str) -> str:
    encoding = "utf-8-sig" if mapping.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else mapping.encoding
    try:
        return data.decode(encoding)
    except LookupError:
        raise ImportFileError(path, None, None, f"mapping {mapping.name!r} names an unknown encoding "
                              f"{mapping.encoding!r}.") from None
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        header = data.split(b"\n", 1)[0].decode(encoding, errors="replace").strip().split(mapping.delimiter)
        position = data[line_start:exc.start].count(mapping.delimiter.encode())
        column = header[position].strip() if position < len(header) else None
        raise ImportFileError(path, line, column, f"byte 0x{data[exc.start]:02x} is not {mapping.encoding}; "
                              f"save the file as {mapping.encoding} (or set `encoding` in the mapping).") from None


def _parse_row(parsed: ParsedFile, mapping: Mapping, index: dict[str, int], row: list[str], line: int,
               path: str) -> None:
    def raw(name: str) -> str | None:
        if name in index:
            value = row[index[name]].strip()
            return value or None
        return mapping.constants.get(name)

    def fail(name: str, message: str) -> ImportFileError:
        return ImportFileError(path, line, mapping.columns.get(name), message)

    day = _parse_date(raw("date"), mapping, fail)
    amount = _parse_amount(raw("amount"), mapping, fail)
    currency = (raw("currency") or "").upper()
    if len(currency) != 3 or not currency.isalpha():
        raise fail("currency", f"{currency or 'an empty value'!r} is not a 3-letter currency code (USD, EUR).")
    provider = raw("provider")
    if not provider:
        raise fail("provider", "no provider (vendor) on this row.")
    quantity = None
    if raw("quantity") is not None:
        try:
            quantity = Decimal(_strip(raw("quantity") or "", mapping))
        except InvalidOperation:
            raise fail("quantity", f"{raw('quantity')!r} is not a number.") from None
    dims = {k: raw(k) for k in ("model", "project", "api_key", "line_item", "token_type", "cost_type",
                                "service_tier")}
    provider = provider.strip().lower()
    parsed.costs.append(CostRecord(
        source=parsed.source, stream=mapping.kind, bucket_start=day, bucket_width="1d", provider=provider,
        amount=amount, currency=currency, quantity=quantity, quantity_unit=raw("quantity_unit"),
        origin="reported", user=_lower(raw("user")), **dims))
    parsed.lines.append(line)
    if mapping.writes_usage:
        tokens = {}
        for name in TOKEN_FIELDS:
            value = _strip(raw(name) or "0", mapping)
            if not value.isdigit():
                raise fail(name, f"{raw(name)!r} is not a whole, non-negative number of {name}.")
            tokens[name] = int(value)
        parsed.usage.append(UsageRecord(
            source=parsed.source, stream="usage", bucket_start=day, bucket_width="1d", provider=provider,
            model=dims["model"], project=dims["project"], api_key=dims["api_key"], user=_lower(raw("user")),
            service_tier=dims["service_tier"], origin="reported", **tokens))  # type: ignore[arg-type]  # counts


def _lower(value: str | None) -> str | None:
    """E-mail addresses as the identity map and the coding tools store them."""
    return value.lower() if value and "@" in value else value


def _strip(value: str, mapping: Mapping) -> str:
    value = value.strip()
    if mapping.thousands_separator:
        value = value.replace(mapping.thousands_separator, "")
    return value


def _parse_date(value: str | None, mapping: Mapping, fail: Callable[[str, str], ImportFileError]) -> datetime:
    if not value:
        raise fail("date", "no date on this row.")
    try:
        if mapping.date_format:
            moment = datetime.strptime(value, mapping.date_format)
        else:
            moment = datetime.fromisoformat(value)
    except ValueError:
        shape = mapping.date_format or "ISO 8601 (YYYY-MM-DD)"
        raise fail("date", f"{value!r} is not a date in the mapping's format {shape}.") from None
    if moment.tzinfo is not None:
        moment = (moment - moment.utcoffset()).replace(tzinfo=None)  # type: ignore[operator]
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _parse_amount(value: str | None, mapping: Mapping, fail: Callable[[str, str], ImportFileError]) -> Decimal:
    if value is None:
        raise fail("amount", "no amount on this row.")
    try:
        amount = Decimal(_strip(value, mapping))
    except InvalidOperation:
        raise fail("amount", f"{value!r} is not an amount (digits and a '.' decimal point).") from None
    if not amount.is_finite():
        raise fail("amount", f"{value!r} is not an amount.")
    if amount < 0 and not mapping.allow_negative:
        raise fail("amount", f"negative amount {value}; credits and refunds need a mapping with "
                   "allow_negative = true.")
    return amount * CENT_UNITS if mapping.amount_unit == "cents" else amount


def import_csv(conn: Connection, org_id: int, parsed: ParsedFile, *, replace: bool = False) -> ImportResult:
    """Write a parsed file through the ledger's write door and refresh its days' rollups.

    With `replace`, the source's records of every day from the file's first to its last are replaced
    by the file's (a corrected export drops the rows it no longer has); otherwise each record is
    upserted on its natural key and other records of those days stay.
    Call inside `with engine.begin() as conn:` so the file commits whole or not at all.
    """
    cost_rows = store.cost_rows(org_id, CONNECTION_ID, parsed.costs)
    usage_rows = store.usage_rows(org_id, CONNECTION_ID, parsed.usage)
    first, last = parsed.first_day, parsed.last_day
    assert first is not None and last is not None  # parse_csv refuses a file with no rows
    if replace:
        for stream, usage, costs in (("usage", parsed.usage, []), (parsed.mapping.kind, [], parsed.costs)):
            store.replace_window(conn, org_id=org_id, connection_id=CONNECTION_ID, source=parsed.source,
                                 stream=stream, bucket_width="1d", start=first, end=last + timedelta(days=1),
                                 usage=usage, costs=costs)
    else:
        store.upsert_costs(conn, cost_rows)
        if usage_rows:
            store.upsert_usage(conn, usage_rows)
    rollup.refresh_daily(conn, org_id, first, last + timedelta(days=1), source=parsed.source)
    totals = parsed.totals()
    conn.execute(insert(ti.import_runs).values(
        org_id=org_id, source=parsed.source, mapping=parsed.mapping.name, file_name=parsed.file_name[:300],
        file_sha256=parsed.sha256, rows=len(parsed.costs), first_day=first, last_day=last,
        totals=json.dumps({c: fmt_amount(a, 9) for c, a in totals.items()}), imported_at=utcnow()))
    return ImportResult(source=parsed.source, mapping=parsed.mapping.name, rows=len(parsed.costs),
                        records=len(cost_rows) + len(usage_rows), first_day=first, last_day=last, totals=totals)
