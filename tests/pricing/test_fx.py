"""ECB reference rates: import (both CSV shapes, idempotent) and EUR cross-rate conversion with the rate and
its date, using the latest ECB day on or before the day asked (weekends, holidays, missing cells)."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tallybook.errors import FxError, PricingError
from tallybook.ledger import schema as t
from tallybook.pricing.fx import convert, import_ecb_csv, load_rates, parse_ecb_csv, read_ecb

D = Decimal
DATA = Path(__file__).resolve().parent.parent / "data"
HIST = (DATA / "eurofxref-hist-sample.csv").read_text()
DAILY = (DATA / "eurofxref-daily-sample.csv").read_text()


@pytest.fixture
def rates(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        import_ecb_csv(conn, HIST, name="eurofxref-hist-sample.csv")
    return engine


def count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t.fx_rates)).scalar() or 0)


def test_importing_the_same_file_twice_changes_nothing(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        first = import_ecb_csv(conn, HIST)
    # 9 days x 4 currencies, less JPY on 2026-01-06 (N/A); CYP is N/A throughout
    assert (first.days, first.rates, first.first_day, first.last_day) == (9, 35, date(2025, 12, 29), date(2026, 1, 9))
    assert first.currencies == ("CHF", "GBP", "JPY", "USD")
    with engine.begin() as conn:
        import_ecb_csv(conn, HIST)
    assert count(engine) == 35
    # a corrected rate replaces the stored one
    with engine.begin() as conn:
        import_ecb_csv(conn, "Date,USD,\n2026-01-09,1.1655,\n")
        assert load_rates(conn, ["USD"]).per_euro("USD", date(2026, 1, 9)) == D("1.1655")
    assert count(engine) == 35


def test_the_daily_file_shape_reads_too(engine: sa.Engine) -> None:
    assert parse_ecb_csv(DAILY)[0] == (date(2026, 1, 12), "USD", D("1.1620"))
    with engine.begin() as conn:
        assert import_ecb_csv(conn, DAILY).rates == 4
        converted = convert(D(100), "EUR", "GBP", on=date(2026, 1, 12), rates=conn)
    assert (converted.amount, converted.rate_date) == (D("86.9"), date(2026, 1, 12))


def test_eur_to_usd_and_back_with_the_rate_and_its_date(rates: sa.Engine) -> None:
    with rates.connect() as conn:
        to_usd = convert(D(100), "EUR", "USD", on=date(2026, 1, 9), rates=conn)
        to_eur = convert(D("116.50"), "USD", "EUR", on=date(2026, 1, 9), rates=conn)
    assert (to_usd.amount, to_usd.rate, to_usd.rate_date) == (D("116.5"), D("1.165"), date(2026, 1, 9))
    assert to_eur.amount == D(100)  # 116.50 / 1.1650
    assert to_eur.rate == D(1) / D("1.1650")
    assert str(to_usd) == "116.50 USD (100.00 EUR at 1.165 USD/EUR, ECB 2026-01-09)"
    assert str(to_eur) == "100.00 EUR (116.50 USD at 0.858369 EUR/USD, ECB 2026-01-09)"


@pytest.mark.parametrize("on, rate_day", [
    (date(2026, 1, 10), date(2026, 1, 9)),  # Saturday
    (date(2026, 1, 11), date(2026, 1, 9)),  # Sunday
    (date(2026, 1, 1), date(2025, 12, 31)),  # New Year's Day: no fixing
    (datetime(2026, 1, 8, 23, 59), date(2026, 1, 8)),  # a time of day: that day's rate
])
def test_a_day_without_rates_uses_the_latest_before_it(rates: sa.Engine, on: date, rate_day: date) -> None:
    with rates.connect() as conn:
        converted = convert(D(1000), "USD", "EUR", on=on, rates=conn)
        usd = load_rates(conn, ["USD"]).per_euro("USD", rate_day)
    assert converted.rate_date == rate_day
    assert usd is not None and converted.amount == D(1000) / usd


def test_cross_rates_go_through_the_euro_on_one_ecb_day(rates: sa.Engine) -> None:
    with rates.connect() as conn:
        gbp = convert(D(100), "USD", "GBP", on=date(2026, 1, 7), rates=conn)
        # JPY is N/A on 2026-01-06: both currencies come from 2026-01-05 instead
        jpy = convert(D(100), "USD", "JPY", on=date(2026, 1, 6), rates=conn)
    assert gbp.rate == D("0.86700") / D("1.1700") and gbp.amount == D(100) * D("0.86700") / D("1.1700")
    assert gbp.amount.quantize(D("0.01")) == D("74.10")
    assert (jpy.rate_date, jpy.amount.quantize(D("0.01"))) == (date(2026, 1, 5), D("15661.83"))  # 100*183.40/1.1710


def test_loaded_rates_convert_without_the_database(rates: sa.Engine) -> None:
    with rates.connect() as conn:
        loaded = load_rates(conn)
    assert convert(D(50), "CHF", "USD", on=date(2026, 1, 3), rates=loaded).rate_date == date(2026, 1, 2)
    assert convert(D(50), "USD", "USD", on=date(2030, 1, 1), rates=loaded).amount == D(50)


@pytest.mark.parametrize("args, message", [
    (("USD", "EUR", date(2025, 12, 1)), "No ECB rate for USD/EUR on 2025-12-01"),  # before the first rate
    (("USD", "EUR", date(2026, 3, 1)), "in the 7 days before it"),  # the latest rate is too old
    (("USD", "CYP", date(2026, 1, 9)), "No ECB rate for USD/CYP"),  # N/A throughout the file
    (("XYZ", "EUR", date(2026, 1, 9)), "tallybook fx import"),
])
def test_no_rate_is_a_clear_error(rates: sa.Engine, args: tuple[str, str, date], message: str) -> None:
    with rates.connect() as conn, pytest.raises(FxError, match=message):
        convert(D(1), args[0], args[1], on=args[2], rates=conn)


def test_a_longer_max_age_accepts_an_older_rate(rates: sa.Engine) -> None:
    with rates.connect() as conn:
        converted = convert(D(1), "USD", "EUR", on=date(2026, 3, 1), rates=conn, max_age=timedelta(days=60))
    assert converted.rate_date == date(2026, 1, 9)


@pytest.mark.parametrize("text, message", [
    ("Day,USD\n2026-01-01,1.1\n", "not an ECB reference-rate CSV"),
    ("Date,USD,\n2026-01-09,1.1650,\n2026-01-08,one,\n", "<csv>:3: the USD rate 'one' is not a number"),
    ("Date,USD,\n9/1/2026,1.1650,\n", "<csv>:2: '9/1/2026' is not a date"),
    ("Date,US Dollar,\n2026-01-09,1.1650,\n", "not a currency code"),
])
def test_a_malformed_csv_names_the_line(text: str, message: str) -> None:
    with pytest.raises(PricingError, match=message):
        parse_ecb_csv(text)


def test_a_url_needs_a_connection_and_says_so_offline() -> None:
    def offline(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution", request=request)

    with httpx.Client(transport=httpx.MockTransport(offline)) as client, \
            pytest.raises(FxError, match="looks offline.*tallybook fx import eurofxref-hist.zip"):
        read_ecb("https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip", client=client)


def test_the_ecb_zip_is_unpacked() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("eurofxref-hist.csv", HIST)

    def ecb(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=archive.getvalue())

    with httpx.Client(transport=httpx.MockTransport(ecb)) as client:
        assert read_ecb("https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip", client=client) == HIST
