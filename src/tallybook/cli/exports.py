"""`tallybook export ...`: usage and cost as CSV or Parquet, and the FOCUS 1.2 export."""

from __future__ import annotations

import sys
import tempfile
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import pyarrow as pa
import typer

from tallybook import audit
from tallybook.analytics.currency import converted_cost_report
from tallybook.analytics.rollups import (
    COST_GROUPS,
    TOKEN_COLUMNS,
    USAGE_GROUPS,
    ReportError,
    ReportQuery,
    cost_report,
    usage_report,
)
from tallybook.cli.common import Context, OrgOption, err, handle_errors
from tallybook.cli.report import (
    FromOption,
    ModelFilter,
    MonthOption,
    ProjectFilter,
    ProviderFilter,
    SourceFilter,
    ToOption,
    build_query,
    window,
)
from tallybook.errors import ConfigError
from tallybook.exports.bigquery import check_destination, load_parquet
from tallybook.exports.csv import write_csv
from tallybook.exports.focus import COLUMN_NAMES, FOCUS_SCHEMA, focus_rows
from tallybook.exports.parquet import write_parquet
from tallybook.pricing.fx import org_currency

export_app = typer.Typer(help="Usage and costs as CSV or Parquet files, and the FOCUS 1.2 export.",
                         no_args_is_help=True)

USAGE_EXPORT = (*TOKEN_COLUMNS, "cache_write_tokens", "total_tokens", "quantities")
COST_EXPORT = ("amount", "currency", "origin")
FX_COLUMNS = ("original_amount", "original_currency", "fx_rate", "fx_rate_date")


class FileFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"


FileFormatOption = typer.Option(FileFormat.csv, "--format", "-f", help="csv or parquet.")
OutputOption = typer.Option(None, "--output", "-o", help="File to write (default: stdout).")


def write(rows: list[dict[str, Any]], columns: list[str] | tuple[str, ...], fmt: FileFormat, output: Path | None,
          schema: pa.Schema | None = None) -> None:
    """Write rows as CSV or Parquet to `output`, or to stdout (Parquet only when stdout is not a terminal)."""
    if fmt is FileFormat.csv:
        if output is None:
            write_csv(rows, columns, sys.stdout)
        else:
            with output.open("w", newline="", encoding="utf-8") as target:
                write_csv(rows, columns, target)
        return
    if output is None:
        if sys.stdout.isatty():
            raise ConfigError("Parquet is binary: give --output FILE, or redirect stdout to a file.")
        write_parquet(rows, columns, sys.stdout.buffer, schema)
        sys.stdout.buffer.flush()
    else:
        write_parquet(rows, columns, str(output), schema)


def _audited(ctx: Context, action: str, query: ReportQuery, fmt: FileFormat, output: Path | None, rows: int,
             **extra: Any) -> None:
    """Exports are sensitive reads: each is recorded in the audit chain."""
    with ctx.engine.begin() as conn:
        audit.record(conn, ctx.org_id, audit.cli_actor(), action, "export", None, {
            "from": query.start, "to": query.end, "group_by": list(query.group_by),
            "filters": {k: list(v) for k, v in query.filters.items()}, "format": fmt.value,
            "output": str(output) if output else "stdout", "rows": rows, **extra})


@export_app.command("usage")
@handle_errors
def export_usage(
    date_from: str = FromOption, date_to: str = ToOption, month: str = MonthOption,
    group_by: str = typer.Option("provider,model", "--group-by", "-g",
                                 help=f"Comma-separated, from: {', '.join(USAGE_GROUPS)}."),
    provider: list[str] = ProviderFilter, model: list[str] = ModelFilter, project: list[str] = ProjectFilter,
    source: list[str] = SourceFilter, fmt: FileFormat = FileFormatOption, output: Path = OutputOption,
    org: str = OrgOption,
) -> None:
    """The `report usage` query as a file: every token measure, `quantities` as JSON.

    Example: tallybook export usage --month 2026-10 --group-by day,provider,model --format parquet -o usage.parquet
    """
    ctx = Context(org)
    query = build_query(ctx, date_from, date_to, month, group_by,
                        {"provider": provider, "model": model, "project": project, "source": source})
    try:
        with ctx.engine.connect() as conn:
            rows = usage_report(conn, query)
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    names = [f"{g}_name" for g in query.group_by if rows and f"{g}_name" in rows[0]]
    write(rows, [*query.group_by, *names, *USAGE_EXPORT], fmt, output)
    _audited(ctx, "export.usage", query, fmt, output, len(rows))
    err.print(f"Exported {len(rows):,} usage rows{f' to {output}' if output else ''}.")


@export_app.command("costs")
@handle_errors
def export_costs(
    date_from: str = FromOption, date_to: str = ToOption, month: str = MonthOption,
    group_by: str = typer.Option("provider,model", "--group-by", "-g",
                                 help=f"Comma-separated, from: {', '.join(COST_GROUPS)}."),
    provider: list[str] = ProviderFilter, model: list[str] = ModelFilter, project: list[str] = ProjectFilter,
    source: list[str] = SourceFilter,
    currency: str = typer.Option(None, "--currency", help="Convert to this currency (default: the organisation's) "
                                 "at the ECB rate of each day, as `report costs` does."),
    fmt: FileFormat = FileFormatOption, output: Path = OutputOption, org: str = OrgOption,
) -> None:
    """The `report costs` query as a file: vendor-reported amounts as exact decimals (decimal128 in Parquet).

    Example: tallybook export costs --from 2026-10-01 --to 2026-10-31 --group-by day,provider,line_item -o costs.csv
    """
    ctx = Context(org)
    query = build_query(ctx, date_from, date_to, month, group_by,
                        {"provider": provider, "model": model, "project": project, "source": source})
    extra: tuple[str, ...] = ()
    try:
        with ctx.engine.connect() as conn:
            rows = cost_report(conn, query)
            target = (currency or org_currency(conn, ctx.org_id)).upper()
            if any(r["currency"] != target for r in rows):
                rows = converted_cost_report(conn, query, target)
                extra = FX_COLUMNS
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    names = [f"{g}_name" for g in query.group_by if rows and f"{g}_name" in rows[0]]
    write(rows, [*query.group_by, *names, *COST_EXPORT, *extra], fmt, output)
    _audited(ctx, "export.costs", query, fmt, output, len(rows))
    err.print(f"Exported {len(rows):,} cost rows{f' to {output}' if output else ''}.")


@export_app.command("focus")
@handle_errors
def export_focus(
    date_from: str = FromOption, date_to: str = ToOption, month: str = MonthOption,
    fmt: FileFormat = FileFormatOption, output: Path = OutputOption,
    bigquery: str = typer.Option(None, "--bigquery", help="Also load the rows into this BigQuery table, "
                                 "PROJECT.DATASET.TABLE (needs the `bigquery` extra)."),
    replace: bool = typer.Option(False, "--replace", help="With --bigquery: replace the table's rows "
                                 "instead of appending."),
    org: str = OrgOption,
) -> None:
    """A FOCUS 1.2 cost and usage dataset: one row per vendor-reported daily cost line, with list,
    contracted, billed and effective cost (see docs/exports.md for the column mapping).

    Example: tallybook export focus --from 2026-10-01 --to 2026-10-31 --format parquet --output focus.parquet
    """
    if bigquery:
        check_destination(bigquery)
    ctx = Context(org)
    start, end = window(date_from, date_to, month)
    with ctx.engine.connect() as conn:
        rows = focus_rows(conn, ctx.org_id, start, end)
    write(rows, COLUMN_NAMES, fmt, output, FOCUS_SCHEMA if fmt is FileFormat.parquet else None)
    job = None
    if bigquery:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "focus.parquet")
            write_parquet(rows, COLUMN_NAMES, path, FOCUS_SCHEMA)
            job = load_parquet(path, bigquery, FOCUS_SCHEMA, replace=replace)
    _audited(ctx, "export.focus", ReportQuery(ctx.org_id, start, end), fmt, output, len(rows),
             bigquery=bigquery, bigquery_job=job)
    where = f" to {output}" if output else ""
    err.print(f"Exported {len(rows):,} FOCUS 1.2 rows ({start:%Y-%m-%d} .. {end - timedelta(days=1):%Y-%m-%d})"
              f"{where}{f'; loaded into {bigquery} (job {job})' if job else ''}.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
    app.add_typer(export_app, name="export")
