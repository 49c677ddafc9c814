"""Rows as an Arrow table and a Parquet file: money as decimal128, never float.

    arrow_table(rows, columns, schema=None) -> pa.Table     types inferred per column unless a schema is given
    write_parquet(rows, columns, target, schema=None)        target: a path or a binary file object

Inference: int -> int64, Decimal -> decimal128(38, 12) (every ledger amount has at most 9 places),
bool -> bool, datetime -> timestamp(us, UTC), dict/list -> JSON text, anything else -> string.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

DECIMAL_SCALE = 12
DECIMAL = pa.decimal128(38, DECIMAL_SCALE)
_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)


def _kind(values: Sequence[Any]) -> pa.DataType:
    sample = [v for v in values if v is not None]
    if not sample:
        return pa.string()
    if all(isinstance(v, bool) for v in sample):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in sample):
        return pa.int64()
    if all(isinstance(v, Decimal | int) and not isinstance(v, bool) for v in sample):
        return DECIMAL
    if all(isinstance(v, datetime) for v in sample):
        return pa.timestamp("us", tz="UTC")
    return pa.string()


def _cell(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_decimal(kind):
        return Decimal(value).quantize(Decimal(1).scaleb(-kind.scale), rounding=ROUND_HALF_EVEN)
    if pa.types.is_timestamp(kind):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    if pa.types.is_string(kind):
        if isinstance(value, dict | list):
            return json.dumps(value, sort_keys=True, default=str)
        if isinstance(value, Decimal):
            return format(value, "f")
        if isinstance(value, datetime | date):
            return value.isoformat()
        return str(value)
    return value


def arrow_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], schema: pa.Schema | None = None) -> pa.Table:
    if schema is None:
        schema = pa.schema([pa.field(c, _kind([r.get(c) for r in rows])) for c in columns])
    arrays = [pa.array([_cell(r.get(f.name), f.type) for r in rows], type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet(rows: Sequence[dict[str, Any]], columns: Sequence[str], target: str | IO[bytes],
                  schema: pa.Schema | None = None) -> pa.Table:
    table = arrow_table(rows, columns, schema)
    pq.write_table(table, target, compression="zstd")
    return table
