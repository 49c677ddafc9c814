"""A small PDF writer for reports: a title, headings, paragraphs and tables (fpdf2), nothing else.

    doc = PdfDocument("Finance report 2026-10", subtitle="acme, in USD")
    doc.heading("Per platform")
    doc.table(["platform", "total"], [["openai", "1,204.50"]], align="LR")
    doc.paragraph("Seats are estimated from plan prices.")
    doc.save(path)            # or doc.output() -> bytes

Text is set in the core Helvetica font, which covers Latin-1 only; other characters are replaced
(`latin1`), so a name in another script never stops a report. Tables repeat their header on each
new page and shrink long cells to fit their column. The dashboard's monthly report reuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fpdf import FPDF

FONT = "Helvetica"
ROW_HEIGHT = 6.0
_REPLACE = {"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
            "\u2026": "...", "\u2212": "-", "\u00a0": " "}


def latin1(text: object) -> str:
    value = "" if text is None else str(text)
    for old, new in _REPLACE.items():
        value = value.replace(old, new)
    return value.encode("latin-1", errors="replace").decode("latin-1")


class PdfDocument:
    def __init__(self, title: str, *, subtitle: str | None = None, landscape: bool = False) -> None:
        self.pdf = FPDF(orientation="L" if landscape else "P", unit="mm", format="A4")
        self.pdf.set_auto_page_break(auto=True, margin=15)
        self.pdf.set_title(latin1(title))
        self.pdf.set_creator("tallybook")
        self.pdf.add_page()
        self.pdf.set_font(FONT, "B", 16)
        self.pdf.cell(0, 10, latin1(title), new_x="LMARGIN", new_y="NEXT")
        if subtitle:
            self.pdf.set_font(FONT, "", 10)
            self.pdf.cell(0, 6, latin1(subtitle), new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(2)

    @property
    def width(self) -> float:
        return float(self.pdf.epw)

    def heading(self, text: str) -> None:
        if self.pdf.get_y() > self.pdf.h - 40:
            self.pdf.add_page()
        self.pdf.ln(3)
        self.pdf.set_font(FONT, "B", 12)
        self.pdf.cell(0, 8, latin1(text), new_x="LMARGIN", new_y="NEXT")

    def paragraph(self, text: str) -> None:
        self.pdf.set_font(FONT, "", 9)
        self.pdf.multi_cell(0, 5, latin1(text), new_x="LMARGIN", new_y="NEXT")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[object]], *, align: str | None = None,
              widths: Sequence[float] | None = None) -> None:
        """`align`: one letter a column, L or R (default: L for the first, R for the rest)."""
        if not columns:
            return
        align = align or "L" + "R" * (len(columns) - 1)
        widths = list(widths) if widths else self._widths(columns, rows)
        self._row(columns, widths, align, bold=True)
        for row in rows:
            if self.pdf.get_y() + ROW_HEIGHT > self.pdf.h - self.pdf.b_margin:
                self.pdf.add_page()
                self._row(columns, widths, align, bold=True)
            self._row([latin1(v) for v in row], widths, align, bold=False)
        self.pdf.ln(1)

    def _widths(self, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> list[float]:
        self.pdf.set_font(FONT, "", 9)
        natural = [max([self.pdf.get_string_width(latin1(c)) + 4]
                       + [self.pdf.get_string_width(latin1(r[i])) + 4 for r in rows[:200] if i < len(r)])
                   for i, c in enumerate(columns)]
        total = sum(natural)
        return [w * self.width / total for w in natural] if total > self.width else natural

    def _row(self, cells: Sequence[object], widths: Sequence[float], align: str, *, bold: bool) -> None:
        self.pdf.set_font(FONT, "B" if bold else "", 9)
        for i, width in enumerate(widths):
            text = latin1(cells[i]) if i < len(cells) else ""
            while text and self.pdf.get_string_width(text) > width - 2:
                text = text[:-2] + "~" if len(text) > 2 else ""
            self.pdf.cell(width, ROW_HEIGHT, text, border="B" if bold else 0, align=align[i] if i < len(align) else "L")
        self.pdf.ln(ROW_HEIGHT)

    def output(self) -> bytes:
        return bytes(self.pdf.output())

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.output())
