"""`tallybook import csv ...`: vendor exports and bills with no API, through a mapping."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from tallybook.cli.common import Context, Format, FormatOption, OrgOption, err, handle_errors, jsonable, out
from tallybook.connectors.csv_import import ImportResult, ParsedFile, import_csv, parse_csv
from tallybook.connectors.csv_mapping import builtin_names, load_mapping
from tallybook.errors import ImportFileError
from tallybook.money import fmt_amount

import_app = typer.Typer(help="Import spend that has no API: console exports, seat invoices, billing "
                         "exports, vendor bills.", no_args_is_help=True)
PREVIEW_ROWS = 10


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
    app.add_typer(import_app, name="import")


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImportFileError(str(path), None, None, f"cannot read the file ({exc.strerror}).") from None


@import_app.command("csv")
@handle_errors
def import_csv_command(
    file: Path = typer.Argument(..., help="The CSV file to import."),
    source: str = typer.Option(..., "--source", help="A name for where it comes from; stored as csv:NAME."),
    mapping: str = typer.Option(..., "--mapping", help=f"A mapping file (.toml) or a built-in mapping: "
                                f"{', '.join(builtin_names())}."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the whole file and preview it; write nothing."),
    replace: bool = typer.Option(False, "--replace", help="The file replaces this source's records of the days "
                                 "it covers (a corrected export); default: upsert row by row."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Import a CSV file of costs (and token usage) into the ledger, all rows or none.

    Every row is checked before anything is written: a bad date, amount, currency or missing column
    is refused with its line and column, and nothing is imported. Importing the same file again
    changes nothing (rows are keyed on day and dimensions). Figures are stored as vendor-reported.

    Example: tallybook import csv billing.csv --source vertex-prod --mapping vertex-billing --dry-run
    """
    chosen = load_mapping(mapping)
    parsed = parse_csv(read_file(file), chosen, source=source, path=str(file))
    if dry_run:
        _preview(parsed, fmt)
        return
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        result = import_csv(conn, ctx.org_id, parsed, replace=replace)
    _report(result, fmt)


def _preview(parsed: ParsedFile, fmt: Format) -> None:
    totals = parsed.totals()
    if fmt is Format.json:
        rows = [{"line": line, "day": r.bucket_start.date(), "provider": r.provider, "line_item": r.line_item,
                 "model": r.model, "project": r.project, "amount": r.amount, "currency": r.currency}
                for line, r in zip(parsed.lines[:PREVIEW_ROWS], parsed.costs)]
        sys.stdout.write(json.dumps(jsonable({
            "dry_run": True, "source": parsed.source, "mapping": parsed.mapping.name, "rows": len(parsed.costs),
            "first_day": parsed.first_day, "last_day": parsed.last_day, "origin": "reported",
            "preview": rows, "totals": [{"currency": c, "amount": a} for c, a in totals.items()]}), indent=2) + "\n")
        return
    table = Table(title=f"{parsed.file_name} as {parsed.source} ({parsed.mapping.name}, {parsed.mapping.kind}): "
                  f"first {min(PREVIEW_ROWS, len(parsed.costs))} of {len(parsed.costs)} rows")
    for col in ("line", "day", "provider", "line item / model", "project", "amount", "currency"):
        table.add_column(col, justify="right" if col in ("line", "amount") else "left")
    for line, r in zip(parsed.lines[:PREVIEW_ROWS], parsed.costs):
        table.add_row(str(line), f"{r.bucket_start:%Y-%m-%d}", r.provider, r.line_item or r.model or "-",
                      r.project or "-", fmt_amount(r.amount, 2), r.currency)
    out.print(table)
    for currency, amount in totals.items():
        out.print(f"  total {fmt_amount(amount, 2)} {currency} (vendor-reported), "
                  f"{parsed.first_day:%Y-%m-%d} .. {parsed.last_day:%Y-%m-%d}")
    err.print("Dry run: nothing was written. Run again without --dry-run to import.")


def _report(result: ImportResult, fmt: Format) -> None:
    if fmt is Format.json:
        sys.stdout.write(json.dumps(jsonable(result.as_dict()), indent=2) + "\n")
        return
    money = ", ".join(f"{fmt_amount(a, 2)} {c}" for c, a in result.totals.items())
    out.print(f"Imported {result.rows:,} rows as {result.source} ({result.records:,} ledger records), "
              f"{result.first_day:%Y-%m-%d} .. {result.last_day:%Y-%m-%d}: {money} (vendor-reported).")
