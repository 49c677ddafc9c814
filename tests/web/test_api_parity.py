"""The CLI and the API give the same numbers for the same question, on a ledger synced from the faithful fakes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tallybook.fakes.launcher import DEMO_KEYS, FakeCloud, start_fakes
from tests.cli.helpers import ok
from tests.support import FAKE_NOW

SINCE, UNTIL = "2026-09-01", "2026-10-15"  # inclusive UTC days, inside the fakes' 120 days


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    fakes = start_fakes(now=FAKE_NOW)
    yield fakes
    fakes.stop()


def cli_json(env: dict[str, str], *args: str) -> Any:
    return ok(*args, "--format", "json", env=env).json()


def api_json(client: TestClient, headers: dict[str, str], path: str, **params: str) -> Any:
    response = client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def as_text(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Both sides' JSON read with Decimals as the strings they were printed as."""
    return [{k: str(v) if isinstance(v, Decimal) else v for k, v in row.items()} for row in rows]


@pytest.mark.slow
def test_cli_and_api_answer_the_same_numbers(cloud: FakeCloud, cli_env: dict[str, str], client: TestClient,
                                             member: Callable[..., int], bearer: Callable[..., dict[str, str]]) -> None:
    for provider in ("openai", "anthropic"):
        var = "OPENAI_ADMIN_KEY" if provider == "openai" else "ANTHROPIC_ADMIN_KEY"
        ok("connect", provider, "--base-url", cloud.base_url(provider), env={**cli_env, var: DEMO_KEYS[provider]})
    ok("sync", "--since", SINCE, "--until", UNTIL, env=cli_env)
    member("analyst@parity.test", "default", "analyst")  # the CLI's organisation when --org is not given
    headers = bearer("analyst@parity.test", "default")
    window = {"from": SINCE, "to": UNTIL}

    # report usage, grouped by provider and model: every measure of every row
    cli = cli_json(cli_env, "report", "usage", "--from", SINCE, "--to", UNTIL, "--group-by", "provider,model")
    api = api_json(client, headers, "/api/v1/usage", **window, group_by="provider,model")
    assert len(cli) >= 4 and as_text(api["rows"]) == as_text(cli)
    assert (api["first_day"], api["last_day"]) == (SINCE, UNTIL)

    # report costs, grouped by provider and line item: every amount to the nano-unit
    cli = cli_json(cli_env, "report", "costs", "--from", SINCE, "--to", UNTIL, "--group-by", "provider,line_item")
    api = api_json(client, headers, "/api/v1/costs", **window, group_by="provider,line_item")
    assert len(cli) >= 4 and as_text(api["rows"]) == as_text(cli)

    # report rates for a month: effective rates, list cost and discount per provider and model
    cli = cli_json(cli_env, "report", "rates", "--month", "2026-09", "--group-by", "provider,model")
    api = api_json(client, headers, "/api/v1/rates", month="2026-09", group_by="provider,model")
    assert any(r["blended_rate_mtok"] for r in cli) and as_text(api["rows"]) == as_text(cli)

    # the provider-spend summary of a month is `report costs --group-by provider` over that month
    cli = cli_json(cli_env, "report", "costs", "--month", "2026-09", "--group-by", "provider")
    api = api_json(client, headers, "/api/v1/costs/summary", period="monthly", at="2026-09-17")
    assert (api["first_day"], api["last_day"], api["complete"]) == ("2026-09-01", "2026-09-30", True)
    assert {p["provider"]: (p["amount"], p["currency"]) for p in api["providers"]} == {
        r["provider"]: (str(r["amount"]), r["currency"]) for r in cli}
    assert Decimal(api["total"]) == sum(Decimal(str(r["amount"])) for r in cli) > 0
    assert api["last_updated"] is not None and all(p["last_sync_at"] for p in api["providers"])

    # the monthly trend per provider, with its changes
    cli = cli_json(cli_env, "report", "trend", "--period", "month", "--from", SINCE, "--to", UNTIL,
                   "--group-by", "provider")
    api = api_json(client, headers, "/api/v1/trend", period="month", **window, group_by="provider")
    assert len(cli) == 4 and as_text(api["rows"]) == as_text(cli)

    # the finance report of a month (its times are UTC in the API: ...Z)
    cli = ok("report", "finance", "--month", "2026-09", "--format", "json", env=cli_env).json()
    api = api_json(client, headers, "/api/v1/finance", month="2026-09")
    assert api.pop("start") == cli.pop("start") + "Z" and api.pop("end") == cli.pop("end") + "Z"
    assert Decimal(cli["usage_total"]) > 0 and api == json.loads(json.dumps(cli, default=str))

    # the CSV export holds the JSON's rows
    csv = client.get("/api/v1/costs", headers=headers, params={**window, "group_by": "provider", "format": "csv"})
    lines = csv.text.splitlines()
    assert lines[0] == "provider,amount,currency,origin"
    json_rows = api_json(client, headers, "/api/v1/costs", **window, group_by="provider")["rows"]
    assert lines[1:] == [f"{r['provider']},{r['amount']},{r['currency']},reported" for r in json_rows]
