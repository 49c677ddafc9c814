"""Acceptance: two `tallybook gateway` processes on one PostgreSQL database, one virtual key with a
budget, concurrent load through both: the spend admitted exceeds the budget by at most one request
per process, the budget counter holds exactly the spend in the ledger, and from then on every request
to either process gets 429 with the documented body."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tallybook.fakes.openai_chat import OpenAIChatFake
from tallybook.fakes.server import serve_in_thread
from tallybook.ledger import schema as t
from tallybook.ledger.budgets import NANOS
from tallybook.ledger.db import connect
from tests.cli.helpers import ok
from tests.gateway.gateway_process import start_gateway

BUDGET = Decimal("0.05")  # USD a day: ~150 requests of gpt-4o at ~0.0003 USD
CLIENTS_PER_PROCESS = 4


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_gateways_hold_one_budget_to_one_request_each(cli_env: dict[str, str], tmp_path: Path) -> None:
    fake = OpenAIChatFake(chunk_delay=0.002)
    with serve_in_thread(fake.app) as upstream:
        env = {**cli_env, "TALLYBOOK_GATEWAY_SPOOL_DIR": str(tmp_path / "spool")}
        ok("providers", "add", "openai", "--base-url", upstream.url, env={**env, "OPENAI_API_KEY": "sk-test"})
        created = ok("keys", "create", "--name", "capped", "--budget", str(BUDGET), "--period", "day",
                     "--format", "json", env=env).json()
        secret, key_id = created["secret"], created["id"]
        gateways = [start_gateway({**env, "TALLYBOOK_GATEWAY_SPOOL_DIR": str(tmp_path / f"spool{n}")},
                                  tmp_path / f"gateway{n}.log") for n in (1, 2)]
        admitted: list[int] = []
        refusals: list[httpx.Response] = []

        def client(url: str, number: int) -> None:
            with httpx.Client(base_url=url, timeout=20, headers={"authorization": f"Bearer {secret}"}) as http:
                refused_since, sent = None, 0
                # Refused for 3 s on end: past the flushes that hand out the last crumbs of the budget.
                while refused_since is None or time.monotonic() - refused_since < 3:
                    sent += 1
                    body = {"model": "gpt-4o", "max_tokens": 50, "stream": sent % 3 == 0,
                            "messages": [{"role": "user", "content": f"client {number} asks {sent}"}]}
                    with http.stream("POST", "/v1/chat/completions", json=body) as response:
                        response.read()
                    if response.status_code == 429:
                        refused_since = refused_since or time.monotonic()
                        refusals.append(response)
                        time.sleep(0.1)
                    else:
                        assert response.status_code == 200, response.text
                        refused_since = None
                        admitted.append(1)

        threads = [threading.Thread(target=client, args=(g.url, n))
                   for n, g in enumerate(gateways * CLIENTS_PER_PROCESS)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert not any(thread.is_alive() for thread in threads)
            after = [httpx.post(g.url + "/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                                json={"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
                     for g in gateways for _ in range(3)]
        finally:
            for gateway in gateways:
                assert gateway.stop() == 0, gateway.output()

    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            costs = list(conn.execute(sa.select(t.usage_events.c.list_cost_nanos)
                                      .where(t.usage_events.c.outcome == "ok")).scalars())
            spent, reserved = conn.execute(sa.select(t.budget_spend.c.spent_nanos, t.budget_spend.c.reserved_nanos)
                                           .where(t.budget_spend.c.scope == f"key:{key_id}")).one()
    finally:
        engine.dispose()
    limit = int(BUDGET * NANOS)
    largest = sorted(costs)[-2:]
    print(f"{len(costs)} admitted, spend {sum(costs) / NANOS} of {BUDGET}; largest {largest}")
    assert len(costs) == len(admitted) >= 100 and all(c > 0 for c in costs)
    assert (spent, reserved) == (sum(costs), 0)  # the counter is the ledger's spend: nothing lost or doubled
    assert limit - max(costs) <= spent <= limit + sum(largest)  # spent up to the cap, over by one request each

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    for response in [*after, *refusals[-2:]]:
        assert response.status_code == 429
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "rate_limit_exceeded"
        assert f"Budget key:{key_id} of {BUDGET} USD per day is spent; it resets at {tomorrow}" in error["message"]
        assert 0 < int(response.headers["retry-after"]) <= 86_400
