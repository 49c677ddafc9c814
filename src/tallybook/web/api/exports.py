"""CSV downloads of the API's tables: `?format=csv` or `Accept: text/csv`, for analysts and admins.

A CSV holds the same rows as the JSON answer, written the way `tallybook report ... --format csv`
writes them (empty cell for none, `true`/`false`, decimals to nine places, `unit=qty; ...` for a map).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Query, Request, Response

from tallybook.money import fmt_amount
from tallybook.web.auth import Principal
from tallybook.web.errors import forbidden

FormatOption = Annotated[Literal["json", "csv"] | None, Query(
    alias="format", description="`csv` downloads the rows as CSV (analysts and admins); default JSON, "
                                "or CSV when the Accept header asks for text/csv.")]
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}},
          "description": "The rows as JSON, or as CSV with `format=csv`."},
}


def wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Decimal):
        return fmt_amount(value, 9)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}={cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(cell(v) for v in value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def csv_response(principal: Principal, rows: Iterable[Mapping[str, Any]], columns: Sequence[str],
                 filename: str) -> Response:
    """The rows as a CSV attachment; exports are for analysts and admins."""
    if not principal.can("analyst"):
        raise forbidden("Exports are for analysts and admins; ask an admin of the organisation for the role.")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def columns_of(rows: Sequence[Mapping[str, Any]], first: Sequence[str]) -> list[str]:
    """`first`, then every other key the rows have, in the order they first appear."""
    found = list(first)
    for row in rows:
        found.extend(k for k in row if k not in found)
    return found
