"""`tallybook report trend|anomalies|forecast` end to end: records written through the ledger's write door,
figures read back as JSON and checked against sums computed here, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from tallybook.ledger import store
from tallybook.ledger.db import connect
from tallybook.ledger.records import CostRecord
from tests.analytics.synthetic import daily
from tests.cli.helpers import ok, run

# OpenAI: weekday-heavy spend with one spike; Anthropic: a steady linear climb. Both end on 15 October.
OPENAI = daily(date(2026, 7, 6), 102, weekday=120.0, weekend=15.0, slope=0.004, noise=0.08, seed=7)
SPIKE = date(2026, 9, 23)
OPENAI[SPIKE] = Decimal("900.00")
ANTHROPIC = daily(date(2026, 8, 1), 92, weekday=40.0, slope=0.02, noise=0.03, seed=11)  # to 31 October
THROUGH = date(2026, 10, 15)


def total(series: dict[date, Decimal], first: date, last: date) -> Decimal:
    return sum((v for d, v in series.items() if first <= d <= last), Decimal(0))


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    with engine.begin() as conn:
        org = store.ensure_org(conn, "default")
        for provider, series in (("openai", OPENAI), ("anthropic", ANTHROPIC)):
            source = f"{provider}_admin"
            costs = [CostRecord(source=source, stream="costs", bucket_width="1d", provider=provider,
                                bucket_start=datetime.combine(d, datetime.min.time()), amount=v,
                                currency="usd", line_item="tokens")
                     for d, v in series.items() if d <= THROUGH]
            store.replace_window(conn, org_id=org, connection_id=1, source=source, stream="costs",
                                 bucket_width="1d", start=datetime(2026, 7, 1), end=datetime(2026, 11, 1),
                                 costs=costs)
    engine.dispose()
    return cli_env


def test_trend_by_month_per_provider(env: dict[str, str]) -> None:
    rows = ok("report", "trend", "--period", "month", "--from", "2026-07-01", "--to", "2026-09-30",
              "--group-by", "provider", "--format", "json", env=env).json()
    got = {(r["provider"], r["period"]): r for r in rows}
    assert set(got) == {(p, m) for p in ("anthropic", "openai") for m in ("2026-07", "2026-08", "2026-09")}
    months = {"2026-07": (date(2026, 7, 1), date(2026, 7, 31)),
              "2026-08": (date(2026, 8, 1), date(2026, 8, 31)),
              "2026-09": (date(2026, 9, 1), date(2026, 9, 30))}
    for (provider, month), row in got.items():
        series = OPENAI if provider == "openai" else ANTHROPIC
        assert Decimal(row["amount"]) == total(series, *months[month])
        assert (row["currency"], row["origin"], row["complete"]) == ("USD", "reported", True)
    july, august = total(OPENAI, *months["2026-07"]), total(OPENAI, *months["2026-08"])
    row = got[("openai", "2026-08")]
    assert Decimal(row["change"]) == august - july
    assert Decimal(row["change_pct"]) == ((august - july) * 100 / july).quantize(Decimal("0.01"))
    assert got[("openai", "2026-07")]["change"] is None
    assert got[("anthropic", "2026-08")]["change_pct"] is None  # July was zero


def test_trend_by_quarter_and_year(env: dict[str, str]) -> None:
    quarters = ok("report", "trend", "--period", "quarter", "--from", "2026-07-01", "--to", "2026-12-31",
                  "--format", "json", env=env).json()
    q3 = sum(total(s, date(2026, 7, 1), date(2026, 9, 30)) for s in (OPENAI, ANTHROPIC))
    q4 = sum(total(s, date(2026, 10, 1), THROUGH) for s in (OPENAI, ANTHROPIC))
    assert [(r["period"], Decimal(r["amount"]), r["change"] and Decimal(r["change"])) for r in quarters] == [
        ("2026-Q3", q3, None), ("2026-Q4", q4, q4 - q3)]
    years = ok("report", "trend", "--period", "year", "--from", "2025-01-01", "--to", "2026-12-31",
               "--format", "json", env=env).json()
    assert [(r["period"], Decimal(r["amount"])) for r in years] == [("2025", 0), ("2026", q3 + q4)]
    assert years[1]["change_pct"] is None


def test_anomalies_flag_the_spike_only(env: dict[str, str]) -> None:
    rows = ok("report", "anomalies", "--from", "2026-09-01", "--to", "2026-10-15", "--group-by", "provider",
              "--format", "json", env=env).json()
    assert [(r["day"], r["provider"], r["direction"], r["currency"]) for r in rows] == [
        (SPIKE.isoformat(), "openai", "spike", "USD")]
    spike = rows[0]
    assert Decimal(spike["actual"]) == Decimal(900)
    assert Decimal(spike["low"]) < Decimal(spike["expected"]) < Decimal(spike["high"]) < Decimal(900)
    assert (spike["origin"], spike["expected_origin"]) == ("reported", "estimated")
    table = ok("report", "anomalies", "--from", "2026-09-01", "--to", "2026-10-15", "--group-by", "provider",
               env=env)
    assert "spike" in table.stdout and "USD" in table.stdout


def test_forecast_of_october(env: dict[str, str]) -> None:
    rows = ok("report", "forecast", "--month", "2026-10", "--to", "2026-10-15", "--group-by", "provider",
              "--format", "json", env=env).json()
    got = {r["provider"]: r for r in rows}
    assert set(got) == {"anthropic", "openai"}
    row = got["anthropic"]
    truth = total(ANTHROPIC, date(2026, 10, 1), date(2026, 10, 31))
    assert Decimal(row["spent_to_date"]) == total(ANTHROPIC, date(2026, 10, 1), THROUGH)
    assert abs(Decimal(row["forecast"]) - truth) <= truth * Decimal("0.02")
    assert Decimal(row["low"]) <= truth <= Decimal(row["high"])
    assert (row["currency"], row["spent_origin"], row["origin"], row["interval"]) == (
        "USD", "reported", "estimated", Decimal("0.8"))
    assert (row["days_observed"], row["days_remaining"], row["history_days"], row["through"]) == (
        15, 16, 56, "2026-10-15")
    assert Decimal(got["openai"]["spent_to_date"]) == total(OPENAI, date(2026, 10, 1), THROUGH)
    csv = ok("report", "forecast", "--month", "2026-10", "--to", "2026-10-15", "--format", "csv",
             env=env).stdout
    assert csv.splitlines()[0].startswith("month,spent_to_date,forecast,low,high,currency,interval,method")


def test_bad_options_name_the_fix(env: dict[str, str]) -> None:
    result = run("report", "trend", "--period", "fortnight", env=env)
    assert result.exit_code == 2 and "--period" in result.stderr
    result = run("report", "anomalies", "--group-by", "day", env=env)
    assert result.exit_code == 2 and "provider, model, project" in result.stderr
