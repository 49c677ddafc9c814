"""The monthly finance report as an alert: once a month has ended, a `monthly_report` rule sends its
headline figures to every channel, and to email channels the full report as a PDF attachment
(`tallybook report finance --format pdf`), rendered when the email is sent."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Connection

from tallybook.alerts.message import Message
from tallybook.analytics.finance import finance_report, parse_period
from tallybook.ledger import schema as t
from tallybook.money import fmt_amount


def last_month(now: datetime) -> str:
    first = now.date().replace(day=1)
    previous = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    return f"{previous:%Y-%m}"


def report_message(conn: Connection, org_id: int, rule: str, month: str, link: str | None) -> Message:
    report = finance_report(conn, org_id, parse_period(month))
    def money(value: Decimal) -> str:
        return f"{fmt_amount(value, 2)} {report.currency}"

    change = "" if not report.previous_total else (
        f" ({(report.total - report.previous_total) / report.previous_total * 100:+.1f} % on the month before)")
    lines = ((f"AI spend in {month}: {money(report.total)}{change}: seats {money(report.seat_total)}, "
             f"usage {money(report.usage_total)}."),
             f"Unallocated: {money(report.unallocated['amount'])} ({report.unallocated['share_pct']} %).",
             "The full report is attached to the email (PDF).")
    figures = {"Total": money(report.total), "Seats": money(report.seat_total), "Usage": money(report.usage_total),
               "Previous month": money(report.previous_total)}
    return Message(rule, "monthly_report", f"Finance report {month}", lines, figures, link,
                   attachment=f"finance_report:{org_id}:{month}")


def render_attachment(conn: Connection, reference: str) -> tuple[str, bytes, str]:
    """`finance_report:<org_id>:YYYY-MM` -> (file name, PDF bytes, MIME type)."""
    from tallybook.cli.report_finance import pdf_bytes  # the one PDF layout of the finance report

    kind, org_id, month = reference.split(":")
    if kind != "finance_report":
        raise ValueError(f"unknown attachment {reference!r}")
    slug = conn.execute(t.organisations.select().where(t.organisations.c.id == int(org_id))).one().slug
    report = finance_report(conn, int(org_id), parse_period(month))
    return f"tallybook-finance-{slug}-{month}.pdf", pdf_bytes(report, slug), "application/pdf"
