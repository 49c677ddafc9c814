"""Rows as CSV: exact decimals as plain text (no exponent, no float), datetimes as ISO 8601 UTC,
dicts (e.g. a usage report's `quantities`) and lists as JSON, None as an empty cell."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value.tzinfo is None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def write_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str], target: IO[str]) -> int:
    """Write a header and one line per row; returns the number of rows."""
    writer = csv.writer(target, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return len(rows)
