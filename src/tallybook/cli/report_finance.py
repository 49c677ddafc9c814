"""`tallybook report finance`: the monthly (or quarterly) finance report."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from tallybook.analytics.finance import FinanceReport, finance_report, parse_period
from tallybook.cli.common import Context, OrgOption, err, handle_errors, jsonable, out
from tallybook.cli.report import report_app
from tallybook.errors import ConfigError
from tallybook.money import fmt_amount


class FinanceFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    pdf = "pdf"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py): `finance` joins
    the `report` group."""
    report_app.command("finance")(finance)


def money(value: Any) -> str:
    return "-" if value is None else fmt_amount(value, 2)


def exact(value: Any) -> str:
    """A CSV cell: every decimal place kept (to the nano-unit), no exponent."""
    return "" if value is None else fmt_amount(value, 9)


def pct(value: Any) -> str:
    return "-" if value is None else f"{value:+.2f} %"


def sections(report: FinanceReport) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report as (heading, columns, rows of text): what the table, CSV and PDF forms all print."""
    c = report.currency
    platforms = [[p["platform"], money(p["seat_cost"]), money(p["usage_cost"]), money(p["total"]),
                  money(p["previous_total"]), pct(p["change_pct"]), money(p["vendor_reported"]),
                  money(p["difference"])] for p in report.platforms]
    platforms.append(["TOTAL", money(report.seat_total), money(report.usage_total), money(report.total),
                      money(report.previous_total), pct(report.as_dict()["change_pct"]), "", ""])
    share = [["name", f"amount ({c})", "share", f"seats ({c})", f"usage ({c})"]]
    return [
        (f"Per platform ({c}; seats estimated from plan prices, usage vendor-reported)",
         ["platform", "seats", "usage", "total", "previous", "change", "vendor-reported", "difference"], platforms),
        ("Per team", share[0], [[r["name"], money(r["amount"]), f"{r['share_pct']} %", money(r["seat_cost"]),
                                 money(r["usage_cost"])] for r in report.teams]),
        ("Per cost centre", share[0], [[r["name"], money(r["amount"]), f"{r['share_pct']} %", money(r["seat_cost"]),
                                        money(r["usage_cost"])] for r in report.cost_centres]),
        ("Top users", ["person", "team", f"amount ({c})", "share"],
         [[r["name"], r.get("team") or "-", money(r["amount"]), f"{r['share_pct']} %"] for r in report.top_users]),
        (f"Unallocated: {money(report.unallocated['amount'])} {c} ({report.unallocated['share_pct']} %), largest",
         ["platform: key, e-mail or project", f"amount ({c})"],
         [[u["subject"], money(u["amount"])] for u in report.unallocated["largest"]]),
        ("Idle seats (no activity in 30 days; monthly saving if released, estimated)",
         ["platform", "plan", "email", "team", "last active", "monthly saving"],
         [[s.platform, s.plan, s.email, s.team or "-", f"{s.last_active:%Y-%m-%d}" if s.last_active else "never",
           f"{money(s.monthly_cost)} {s.currency or ''}".strip()] for s in report.idle_seats]),
    ]


def title(report: FinanceReport, org: str) -> str:
    return f"Finance report {report.period.label} - {org} - total {money(report.total)} {report.currency}"


@handle_errors
def finance(
    month: str = typer.Option(None, "--month", help="A calendar month, YYYY-MM."),
    quarter: str = typer.Option(None, "--quarter", help="A quarter instead, YYYY-Qn."),
    currency: str = typer.Option(None, "--currency", help="Report in this currency (default: the organisation's)."),
    top: int = typer.Option(10, "--top", min=1, help="How many top users to list."),
    fmt: FinanceFormat = typer.Option(FinanceFormat.table, "--format", "-f", help="table, json, csv or pdf."),
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file (required for pdf)."),
    org: str = OrgOption,
) -> None:
    """The finance report: per platform seat and usage cost, month over month and beside the vendors'
    invoices; per team, cost centre and top users through the identity map; unallocated spend; idle seats.

    Example: tallybook report finance --month 2026-10 --format pdf --output finance-2026-10.pdf
    """
    if bool(month) == bool(quarter):
        raise typer.BadParameter("Give --month YYYY-MM or --quarter YYYY-Qn.")
    try:
        period = parse_period(month or quarter)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--month" if month else "--quarter") from None
    if fmt is FinanceFormat.pdf and output is None:
        raise ConfigError("A PDF needs --output FILE.pdf.")
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        report = finance_report(conn, ctx.org_id, period, currency=currency, top=top)
    if fmt is FinanceFormat.pdf:
        output.write_bytes(pdf_bytes(report, ctx.org_slug))
        err.print(f"Wrote {output}.")
        return
    text = render(report, fmt, ctx.org_slug)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        err.print(f"Wrote {output}.")
    elif fmt is FinanceFormat.table:
        out.print(text, highlight=False, markup=False)
    else:
        sys.stdout.write(text)


def pdf_bytes(report: FinanceReport, org: str) -> bytes:
    """The report as a PDF (also what the monthly report email attaches)."""
    from tallybook.exports.pdf import PdfDocument  # fpdf2 (and Pillow) only when a PDF is asked for

    period = report.period
    doc = PdfDocument(title(report, org), subtitle=f"{period.start:%Y-%m-%d} to "
                      f"{period.end:%Y-%m-%d} (exclusive), amounts in {report.currency}")
    for heading, columns, rows in sections(report):
        doc.heading(heading)
        if rows:
            doc.table(columns, rows)
        else:
            doc.paragraph("None.")
    return doc.output()


def render(report: FinanceReport, fmt: FinanceFormat, org: str) -> str:
    if fmt is FinanceFormat.json:
        return json.dumps(jsonable(report.as_dict()), indent=2) + "\n"
    buffer = io.StringIO()
    if fmt is FinanceFormat.csv:
        writer = csv.writer(buffer, lineterminator="\n")
        d = exact
        writer.writerow(["section", "name", "seat_cost", "usage_cost", "total", "previous_total", "vendor_reported",
                         "difference", "share_pct", "currency"])
        for p in report.platforms:
            writer.writerow(["platform", p["platform"], d(p["seat_cost"]), d(p["usage_cost"]), d(p["total"]),
                             d(p["previous_total"]), d(p["vendor_reported"]), d(p["difference"]), "", report.currency])
        for section, rows in (("team", report.teams), ("cost_centre", report.cost_centres),
                              ("top_user", report.top_users)):
            for r in rows:
                writer.writerow([section, r["name"], d(r["seat_cost"]), d(r["usage_cost"]), d(r["amount"]), "", "",
                                 "", r["share_pct"], report.currency])
        writer.writerow(["total", "", d(report.seat_total), d(report.usage_total), d(report.total),
                         d(report.previous_total), "", "", "100", report.currency])
        return buffer.getvalue()
    lines = [title(report, org), ""]
    for heading, columns, text_rows in sections(report):
        lines.append(heading)
        widths = [max([len(c)] + [len(r[i]) for r in text_rows]) for i, c in enumerate(columns)]
        for row in [columns, *text_rows]:
            lines.append("  " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in
                                          enumerate(zip(row, widths))))
        if not text_rows:
            lines.append("  none")
        lines.append("")
    return "\n".join(lines) + "\n"
