"""`report costs` in the organisation's (or a chosen) currency, converted day by day at ECB rates."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

from tallybook.ledger import store
from tallybook.ledger.db import connect
from tallybook.ledger.records import CostRecord
from tests.cli.helpers import ok, run

SAMPLE = Path(__file__).parents[1] / "data" / "eurofxref-hist-sample.csv"


def seed(env: dict[str, str]) -> None:
    engine = connect(env["TALLYBOOK_DATABASE_URL"])
    with engine.begin() as conn:
        org = store.ensure_org(conn, "default")
        costs = [CostRecord(source="openai_admin", stream="costs", bucket_start=datetime(2026, 1, d), bucket_width="1d",
                            provider="openai", model="gpt-4o", amount=Decimal(a), currency="USD", line_item="x")
                 for d, a in ((8, "50.00"), (9, "100.00"), (10, "20.00"))]
        store.replace_window(conn, org_id=org, connection_id=1, source="openai_admin", stream="costs",
                             bucket_width="1d", start=datetime(2026, 1, 8), end=datetime(2026, 1, 11), costs=costs)
    engine.dispose()


def test_costs_in_euro_show_rate_and_date(cli_env: dict[str, str]) -> None:
    seed(cli_env)
    missing = run("report", "costs", "--from", "2026-01-08", "--to", "2026-01-10", "--currency", "EUR",
                  env=cli_env)
    assert missing.exit_code != 0 and "fx import" in missing.stderr  # no rates yet: says how to get them
    ok("fx", "import", str(SAMPLE), env=cli_env)
    [day9] = ok("report", "costs", "--from", "2026-01-09", "--to", "2026-01-09", "--currency", "EUR",
                "--group-by", "provider", "--format", "json", env=cli_env).json()
    assert day9["currency"] == "EUR" and day9["original_currency"] == "USD"
    assert Decimal(day9["original_amount"]) == Decimal(100)
    assert Decimal(day9["amount"]).quantize(Decimal("0.0001")) == (Decimal(100) / Decimal("1.1650")).quantize(Decimal("0.0001"))
    assert day9["fx_rate_date"] == "2026-01-09"
    rows = ok("report", "costs", "--from", "2026-01-08", "--to", "2026-01-10", "--currency", "EUR",
              "--group-by", "day", "--format", "json", env=cli_env).json()
    by_day = {r["day"]: r for r in rows}
    assert by_day["2026-01-10"]["fx_rate_date"] == "2026-01-09"  # Saturday: Friday's rate
    assert Decimal(by_day["2026-01-08"]["amount"]).quantize(Decimal("0.0001")) == \
        (Decimal(50) / Decimal("1.1680")).quantize(Decimal("0.0001"))
    [total] = ok("report", "costs", "--from", "2026-01-08", "--to", "2026-01-10", "--currency", "EUR",
                 "--group-by", "provider", "--format", "json", env=cli_env).json()
    assert total["fx_rate_date"] == "2026-01-08..2026-01-09"
    assert Decimal(total["amount"]).quantize(Decimal("0.000001")) == \
        sum(Decimal(r["amount"]) for r in rows).quantize(Decimal("0.000001"))  # JSON prints 9 places
    # in the vendor's own currency nothing is converted
    [usd] = ok("report", "costs", "--from", "2026-01-08", "--to", "2026-01-10", "--group-by", "provider",
               "--format", "json", env=cli_env).json()
    assert usd["currency"] == "USD" and Decimal(usd["amount"]) == Decimal(170) and "fx_rate" not in usd
