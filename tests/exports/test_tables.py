"""`tallybook export usage|costs`: the report's rows, unchanged, as CSV and as Parquet (decimals, never floats)."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tallybook.exports.focus import FOCUS_SCHEMA
from tests.cli.helpers import ok
from tests.exports.conftest import SINCE, UNTIL

WINDOW = ("--from", SINCE, "--to", UNTIL)


def report(env: dict[str, str], kind: str, group_by: str) -> list[dict[str, Any]]:
    return ok("report", kind, *WINDOW, "--group-by", group_by, "--format", "json", env=env).json()


def from_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_usage_round_trips_through_csv_and_parquet(synced: dict[str, str], tmp_path: Path) -> None:
    group_by = "day,provider,model,project"
    want = report(synced, "usage", group_by)
    assert len(want) > 50
    text = ok("export", "usage", *WINDOW, "--group-by", group_by, env=synced).stdout
    got_csv = from_csv(text)
    target = tmp_path / "usage.parquet"
    ok("export", "usage", *WINDOW, "--group-by", group_by, "--format", "parquet", "-o", str(target), env=synced)
    table = pq.read_table(target)
    assert table.schema.field("input_tokens").type == pa.int64()
    got_parquet = table.to_pylist()
    assert len(got_csv) == len(got_parquet) == len(want)
    for expected, as_csv, as_parquet in zip(want, got_csv, got_parquet, strict=True):
        for column, value in expected.items():
            if column == "quantities":
                assert json.loads(as_csv[column]) == value == json.loads(as_parquet[column])
            elif isinstance(value, int):
                assert int(as_csv[column]) == value == as_parquet[column], column
            else:
                assert (as_csv[column] or None) == value == as_parquet[column], column


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_costs_round_trip_to_the_nano(synced: dict[str, str], tmp_path: Path, fmt: str) -> None:
    group_by = "day,provider,line_item,project"
    want = report(synced, "costs", group_by)
    target = tmp_path / f"costs.{fmt}"
    ok("export", "costs", *WINDOW, "--group-by", group_by, "--format", fmt, "--output", str(target), env=synced)
    if fmt == "csv":
        got = from_csv(target.read_text(encoding="utf-8"))
    else:
        table = pq.read_table(target)
        assert pa.types.is_decimal(table.schema.field("amount").type)
        got = table.to_pylist()
    assert len(got) == len(want)
    for expected, row in zip(want, got, strict=True):
        assert Decimal(str(row["amount"])) == Decimal(expected["amount"])
        assert {k: row[k] or None for k in ("day", "provider", "line_item", "project", "currency")} == {
            k: expected[k] for k in ("day", "provider", "line_item", "project", "currency")}
    total = sum(Decimal(str(r["amount"])) for r in got)
    assert total == sum(Decimal(r["amount"]) for r in want) > 0
    exported = ok("audit", "list", "--action", "export.costs", "--format", "json", env=synced).json()
    assert exported[-1]["details"]["rows"] == len(want) and exported[-1]["details"]["format"] == fmt


def test_bigquery_load_job_configuration() -> None:
    bigquery = pytest.importorskip(
        "google.cloud.bigquery",
        reason='the optional BigQuery extra is not installed (pip install "tallybook[bigquery]")')
    from tallybook.exports.bigquery import load_job_config

    config = load_job_config(FOCUS_SCHEMA)
    assert config.source_format == bigquery.SourceFormat.PARQUET
    assert config.write_disposition == bigquery.WriteDisposition.WRITE_APPEND
    assert config.create_disposition == bigquery.CreateDisposition.CREATE_IF_NEEDED
    fields = {f.name: f.field_type for f in config.schema}
    assert list(fields) == FOCUS_SCHEMA.names
    assert fields["BilledCost"] == fields["ListCost"] == "BIGNUMERIC"
    assert fields["ChargePeriodStart"] == "TIMESTAMP" and fields["ServiceCategory"] == "STRING"
    assert config.to_api_repr()["load"]["decimalTargetTypes"] == ["BIGNUMERIC"]
    replacing = load_job_config(FOCUS_SCHEMA, replace=True)
    assert replacing.write_disposition == bigquery.WriteDisposition.WRITE_TRUNCATE


def test_bigquery_load_runs_the_job_with_that_configuration(tmp_path: Path) -> None:
    pytest.importorskip("google.cloud.bigquery",
                        reason='the optional BigQuery extra is not installed (pip install "tallybook[bigquery]")')
    from tallybook.exports.bigquery import load_parquet
    from tallybook.exports.parquet import write_parquet

    path = tmp_path / "focus.parquet"
    write_parquet([], FOCUS_SCHEMA.names, str(path), FOCUS_SCHEMA)
    calls: list[tuple[str, Any]] = []

    class Job:
        job_id = "job_123"

        def result(self) -> None:
            calls.append(("result", None))

    class Client:  # the one method the load uses, recording what it was given
        def load_table_from_file(self, source: Any, destination: str, job_config: Any) -> Job:
            calls.append((destination, job_config.source_format))
            assert source.read(4) == b"PAR1"
            return Job()

    assert load_parquet(str(path), "my-project.finops.focus_ai", FOCUS_SCHEMA, client=Client()) == "job_123"
    assert calls == [("my-project.finops.focus_ai", "PARQUET"), ("result", None)]
