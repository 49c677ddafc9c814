"""Foreign exchange: the ECB's euro reference rates in the ledger, and conversion through EUR cross rates.

    read_ecb(source, *, client=None) -> str                 CSV text from a file or URL (.csv or .zip)
    import_ecb_csv(conn, text) -> FxImport                  idempotent upsert into `fx_rates`
    load_rates(conn, currencies=None) -> FxRates            rates in memory, for many conversions
    convert(amount, from_ccy, to_ccy, *, on, rates) -> Converted
    org_currency(conn, org_id) -> str                       the currency an organisation reports in

Amounts stay in the vendor's currency in the ledger; reports convert them with `convert` and show the
rate and its date beside every converted figure (`str(Converted)`).

The ECB publishes, each TARGET working day around 16:00 CET, how many units of each currency one euro
buys. Any pair is a cross rate of one ECB day: USD -> GBP is `amount * GBP / USD`, and the rate shown is
`GBP / USD`. Weekends and holidays have no rates, so `on` uses the latest ECB day on or before it on
which both currencies have a rate, and says which (`rate_date`); a rate older than `max_age` is refused
rather than silently used. Both ECB CSV shapes are read: eurofxref-hist.csv (`Date,USD,JPY,...,` with
`N/A` for missing rates and a trailing comma) and the daily eurofxref.csv (`Date, USD, ...` and
`9 January 2026, 1.1650, ...`).
"""

from __future__ import annotations

import bisect
import csv
import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from tallybook.errors import FxError, PricingError
from tallybook.ledger import schema as t
from tallybook.money import fmt_amount

ECB_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip"
BASE = "EUR"
MAX_AGE = timedelta(days=7)  # longer than any ECB closure (Easter, Christmas to New Year)
IMPORT_HINT = ("import the ECB's reference rates with `tallybook fx import eurofxref-hist.csv` "
               "(or `tallybook fx import` when online)")


@dataclass(frozen=True, slots=True)
class Converted:
    """An amount converted at one ECB day's rate: `amount` = `original` x `rate`."""

    amount: Decimal  # in to_ccy
    rate: Decimal  # units of to_ccy per one from_ccy
    rate_date: date  # the ECB day the rate is from (on or before the day asked)
    from_ccy: str
    to_ccy: str
    original: Decimal  # in from_ccy
    source: str = "ecb"

    def __str__(self) -> str:
        return (f"{fmt_amount(self.amount, 2)} {self.to_ccy} ({fmt_amount(self.original, 2)} {self.from_ccy} at "
                f"{_fmt_rate(self.rate)} {self.to_ccy}/{self.from_ccy}, {self.source.upper()} {self.rate_date})")


@dataclass(frozen=True, slots=True)
class FxImport:
    days: int
    rates: int
    first_day: date | None
    last_day: date | None
    currencies: tuple[str, ...]


@dataclass
class FxRates:
    """Euro reference rates by currency: sorted days and the rate (units per euro) on each."""

    days: dict[str, list[date]] = field(default_factory=dict)
    values: dict[tuple[str, date], Decimal] = field(default_factory=dict)

    def add(self, currency: str, day: date, rate: Decimal) -> None:
        if (currency, day) not in self.values:
            bisect.insort(self.days.setdefault(currency, []), day)
        self.values[(currency, day)] = rate

    def per_euro(self, currency: str, day: date) -> Decimal | None:
        return Decimal(1) if currency == BASE else self.values.get((currency, day))

    def common_day(self, currencies: Iterable[str], on: date, max_age: timedelta) -> date | None:
        """The latest day on or before `on`, no older than `max_age`, with a rate for every currency."""
        wanted = [c for c in dict.fromkeys(currencies) if c != BASE]
        if not wanted:
            return on
        days = self.days.get(wanted[0], [])
        for index in range(bisect.bisect_right(days, on) - 1, -1, -1):
            day = days[index]
            if on - day > max_age:
                return None
            if all((c, day) in self.values for c in wanted[1:]):
                return day
        return None


def convert(amount: Decimal, from_ccy: str, to_ccy: str, *, on: date | datetime, rates: FxRates | Connection,
            max_age: timedelta = MAX_AGE) -> Converted:
    """`amount` of `from_ccy` in `to_ccy` at the ECB rate of `on` (or the latest before it)."""
    from_ccy, to_ccy = from_ccy.upper(), to_ccy.upper()
    day = on.date() if isinstance(on, datetime) else on
    if from_ccy == to_ccy:
        return Converted(amount, Decimal(1), day, from_ccy, to_ccy, amount, source="identity")
    if isinstance(rates, Connection):
        rates = load_rates(rates, {from_ccy, to_ccy}, since=day - max_age, until=day)
    rate_day = rates.common_day((from_ccy, to_ccy), day, max_age)
    if rate_day is None:
        raise FxError(f"No ECB rate for {from_ccy}/{to_ccy} on {day} or in the {max_age.days} days before it: "
                      f"{IMPORT_HINT}.")
    source, target = rates.per_euro(from_ccy, rate_day), rates.per_euro(to_ccy, rate_day)
    assert source is not None and target is not None
    return Converted(amount * target / source, target / source, rate_day, from_ccy, to_ccy, amount)


def load_rates(conn: Connection, currencies: Iterable[str] | None = None, *, since: date | None = None,
               until: date | None = None) -> FxRates:
    c = t.fx_rates.c
    query = select(c.day, c.currency, c.rate).where(c.base == BASE)
    if currencies is not None:
        query = query.where(c.currency.in_(sorted({x.upper() for x in currencies} - {BASE})))
    if since is not None:
        query = query.where(c.day >= datetime.combine(since, datetime.min.time()))
    if until is not None:
        query = query.where(c.day <= datetime.combine(until, datetime.min.time()))
    rates = FxRates()
    for day, currency, rate in conn.execute(query.order_by(c.day)):
        rates.add(currency, day.date(), Decimal(rate))
    return rates


def org_currency(conn: Connection, org_id: int) -> str:
    found = conn.execute(select(t.organisations.c.currency).where(t.organisations.c.id == org_id)).scalar()
    return str(found or "USD")


# --- importing ------------------------------------------------------------------------------------

def parse_ecb_csv(text: str, *, name: str = "<csv>") -> list[tuple[date, str, Decimal]]:
    """(day, currency, units per euro) for every published rate; `N/A` and empty cells are skipped."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), skipinitialspace=True))
    if not rows or not rows[0] or rows[0][0].strip() != "Date":
        raise PricingError(f"{name} is not an ECB reference-rate CSV: its first column should be `Date` "
                           "(download eurofxref-hist.csv from the ECB).")
    header = [cell.strip().upper() for cell in rows[0]]
    for column, code in enumerate(header[1:], start=2):
        if code and not (len(code) == 3 and code.isalpha()):
            raise PricingError(f"{name}:1: column {column} is {code!r}, not a currency code such as USD.")
    found = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        day = _ecb_day(row[0].strip(), f"{name}:{line}")
        for code, cell in zip(header[1:], row[1:], strict=False):
            value = cell.strip()
            if not code or not value or value.upper() == "N/A":
                continue
            try:
                rate = Decimal(value)
            except InvalidOperation:
                raise PricingError(f"{name}:{line}: the {code} rate {value!r} is not a number.") from None
            if not rate.is_finite() or rate <= 0:
                raise PricingError(f"{name}:{line}: the {code} rate {value!r} is not a positive number.")
            found.append((day, code, rate))
    return found


def import_ecb_csv(conn: Connection, text: str, *, name: str = "<csv>", source: str = "ecb") -> FxImport:
    """Write every rate in an ECB CSV into `fx_rates`; importing the same file again changes nothing."""
    parsed = parse_ecb_csv(text, name=name)
    rows = [{"day": datetime.combine(day, datetime.min.time()), "base": BASE, "currency": code,
             "rate": format(rate, "f"), "source": source} for day, code, rate in parsed]
    dialect = conn.dialect.name
    stmt: Any = postgresql.insert(t.fx_rates) if dialect == "postgresql" else sqlite.insert(t.fx_rates)
    stmt = stmt.on_conflict_do_update(index_elements=["day", "base", "currency"],
                                      set_={"rate": stmt.excluded.rate, "source": stmt.excluded.source})
    for start in range(0, len(rows), 5000):
        conn.execute(stmt, rows[start:start + 5000])
    days = sorted({day for day, _, _ in parsed})
    return FxImport(len(days), len(rows), days[0] if days else None, days[-1] if days else None,
                    tuple(sorted({code for _, code, _ in parsed})))


def read_ecb(source: str, *, client: httpx.Client | None = None) -> str:
    """The CSV text of a local file or an http(s) URL; a .zip (as the ECB serves it) is unpacked."""
    if source.startswith(("http://", "https://")):
        data = _download(source, client)
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise PricingError(f"Cannot read {source}: {exc.strerror}.") from None
    if data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                member = next((n for n in archive.namelist() if n.lower().endswith(".csv")), None)
                if member is None:
                    raise PricingError(f"{source} is a zip file without a .csv inside.")
                data = archive.read(member)
        except zipfile.BadZipFile:
            raise PricingError(f"{source} looks like a zip file but cannot be opened.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PricingError(f"{source} is not a text CSV file.") from None


def _download(url: str, client: httpx.Client | None) -> bytes:
    own = client is None
    http = client or httpx.Client(timeout=30, follow_redirects=True)
    try:
        response = http.get(url)
    except httpx.HTTPError as exc:
        raise FxError(f"Cannot download {url} ({type(exc).__name__}: {exc}); this machine looks offline. "
                      "Download eurofxref-hist.zip where there is internet access and run "
                      "`tallybook fx import eurofxref-hist.zip`.") from None
    finally:
        if own:
            http.close()
    if response.status_code >= 400:
        raise FxError(f"{url} answered HTTP {response.status_code}; check the URL (default {ECB_URL}).")
    return response.content


def _ecb_day(text: str, where: str) -> date:
    for parse in (date.fromisoformat, lambda s: datetime.strptime(s, "%d %B %Y").date()):
        try:
            return parse(text)
        except ValueError:
            continue
    raise PricingError(f"{where}: {text!r} is not a date (expected 2026-01-09 or 9 January 2026).")


def _fmt_rate(rate: Decimal) -> str:
    text = f"{rate.quantize(Decimal('0.000001')):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
