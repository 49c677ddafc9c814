"""The finance team's CSV files: the identity map, seat plans and seat assignments.

    parse_identities(data, path) -> list[IdentityRow]
        kind,value,person,team,cost_centre[,effective_from]
        kind: api_key (key id or name) | email | project (project or workspace id)
    parse_plans(data, path) -> list[SeatPlan]
        platform,plan,price,currency,period[,effective_from]
    parse_assignments(data, path) -> list[SeatAssignment]
        platform,plan,email[,assigned_from[,assigned_to]]

Each parser reads the whole file first and raises `ImportFileError` naming the line and column of
the first bad cell, so a file is applied whole or not at all. Dates are YYYY-MM-DD (UTC).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation

from tallybook.errors import ImportFileError
from tallybook.ledger.identities import KINDS, SINCE_ALWAYS, Identity, IdentityRow
from tallybook.ledger.seats import PERIODS, SeatAssignment, SeatPlan

ALIASES = {"cost_center": "cost_centre", "costcentre": "cost_centre", "workspace": "project"}


def _rows(data: bytes, path: str, required: tuple[str, ...],
          optional: tuple[str, ...]) -> Iterator[tuple[int, Callable[[str], str | None], Callable[..., ImportFileError]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportFileError(path, line, None, "the file is not UTF-8; save it as CSV UTF-8.") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [ALIASES.get(h.strip().lower(), h.strip().lower()) for h in next(reader, [])]
    for name in required:
        if name not in header:
            raise ImportFileError(path, 1, name, f"the header needs the columns {', '.join(required)} "
                                  f"(and may have {', '.join(optional)}); found {', '.join(header) or 'none'}.")
    index = {h: i for i, h in enumerate(header)}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ImportFileError(path, line, None, f"{len(row)} fields where the header has {len(header)}.")

        def cell(name: str, row: list[str] = row) -> str | None:
            value = row[index[name]].strip() if name in index else ""
            return value or None

        def fail(name: str, message: str, line: int = line) -> ImportFileError:
            return ImportFileError(path, line, name, message)

        yield line, cell, fail


def _day(value: str | None, name: str, fail: Callable[..., ImportFileError]) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise fail(name, f"{value!r} is not a date; use YYYY-MM-DD.") from None


def parse_identities(data: bytes, path: str) -> list[IdentityRow]:
    rows = []
    for line, cell, fail in _rows(data, path, ("kind", "value", "person", "team", "cost_centre"),
                                  ("effective_from",)):
        kind = ALIASES.get((cell("kind") or "").lower(), (cell("kind") or "").lower())
        if kind not in KINDS:
            raise fail("kind", f"{cell('kind')!r} is not one of {', '.join(KINDS)}.")
        value = cell("value")
        if value is None:
            raise fail("value", f"no {kind} on this row.")
        identity = Identity(cell("person"), cell("team"), cell("cost_centre"))
        if identity == Identity(None, None, None):
            raise fail("person", "give a person, a team or a cost centre.")
        rows.append(IdentityRow(kind, value, identity, _day(cell("effective_from"), "effective_from", fail), line))
    return rows


def parse_plans(data: bytes, path: str) -> list[SeatPlan]:
    plans = []
    for _, cell, fail in _rows(data, path, ("platform", "plan", "price", "currency", "period"), ("effective_from",)):
        price = parse_price(cell("price"), fail)
        currency = (cell("currency") or "").upper()
        if len(currency) != 3 or not currency.isalpha():
            raise fail("currency", f"{cell('currency')!r} is not a 3-letter currency code.")
        period = (cell("period") or "").lower()
        if period not in PERIODS:
            raise fail("period", f"{cell('period')!r} is not one of {', '.join(PERIODS)}.")
        platform, plan = (cell("platform") or "").lower(), (cell("plan") or "").lower()
        if not platform or not plan:
            raise fail("platform" if not platform else "plan", "platform and plan are required.")
        plans.append(SeatPlan(platform, plan, price, currency, period,
                              _day(cell("effective_from"), "effective_from", fail) or SINCE_ALWAYS))
    return plans


def parse_price(value: str | None, fail: Callable[..., ImportFileError]) -> Decimal:
    try:
        price = Decimal(value or "")
    except InvalidOperation:
        raise fail("price", f"{value!r} is not a price.") from None
    if not price.is_finite() or price < 0:
        raise fail("price", f"{value!r} is not a price of zero or more.")
    return price


def parse_assignments(data: bytes, path: str) -> list[SeatAssignment]:
    seats = []
    for _, cell, fail in _rows(data, path, ("platform", "plan", "email"), ("assigned_from", "assigned_to")):
        email = (cell("email") or "").lower()
        if "@" not in email:
            raise fail("email", f"{cell('email')!r} is not an e-mail address.")
        start = _day(cell("assigned_from"), "assigned_from", fail) or SINCE_ALWAYS
        end = _day(cell("assigned_to"), "assigned_to", fail)
        if end is not None and end <= start:
            raise fail("assigned_to", "assigned_to must be after assigned_from.")
        seats.append(SeatAssignment((cell("platform") or "").lower(), (cell("plan") or "").lower(), email,
                                    start, end, "import"))
    return seats
