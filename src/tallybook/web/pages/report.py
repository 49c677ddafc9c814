"""The monthly report as PDF: the overview's tables for one month (rates, market index, spend, trend,
forecast, providers), in the reader's language, written by the generic `exports.pdf` writer."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tallybook.exports.pdf import PdfDocument
from tallybook.web.auth import Principal, page_principal
from tallybook.web.pages.base import (
    PageError,
    cell,
    lang_of,
    month_window,
    require_role,
    this_month,
    translator,
)
from tallybook.web.pages.overview import overview_data

router = APIRouter(include_in_schema=False)


@router.get("/report.pdf")
def monthly_report(request: Request, principal: Principal = Depends(page_principal)) -> Response:
    require_role(principal, "analyst")  # a download is an export
    month = request.query_params.get("month") or this_month().month or ""
    try:
        window = month_window(month)
    except ValueError:
        raise PageError(400, "error.bad_date") from None
    tr, lang = translator(request), lang_of(request)
    tables, _ = overview_data(request.app.state.engine, principal.org_id, window)
    doc = PdfDocument(tr("report.title", month=month), subtitle=tr("report.subtitle", org=principal.org_slug),
                      landscape=True)
    for table in tables:
        doc.heading(tr(table.title))
        if table.note:
            doc.paragraph(tr(table.note))
        if not table.rows:
            doc.paragraph(tr(table.empty))
            continue
        doc.table([tr(c.label or f"col.{c.key}") for c in table.columns],
                  [[cell(row, c, lang) for c in table.columns] for row in table.rows],
                  align="".join("R" if c.numeric else "L" for c in table.columns))
    doc.paragraph(tr("footer.origin"))
    filename = f"tallybook-{principal.org_slug}-{month}.pdf"
    return Response(doc.output(), media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
