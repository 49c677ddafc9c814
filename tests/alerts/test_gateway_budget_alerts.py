"""A budget crossed through the gateway is alerted within 60 s, once per channel and level, with two
gateway processes (each with its own background alert checker) sharing one PostgreSQL ledger."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tallybook.fakes.openai_chat import OpenAIChatFake
from tallybook.fakes.server import serve_in_thread
from tests.alerts.receivers import HttpReceiver, start_http_receiver
from tests.cli.helpers import ok
from tests.gateway.gateway_process import start_gateway

BUDGET = "0.02"  # USD per day: a few dozen small gpt-4o requests


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = start_http_receiver()
    yield receiver
    receiver.close()


def subjects(http: HttpReceiver, prefix: str) -> list[str]:
    return [json.loads(r.body)["subject"] if prefix == "/hook" else json.loads(r.body)["blocks"][0]["text"]["text"]
            for r in list(http.received) if r.path.startswith(prefix)]


@pytest.mark.slow
@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_budget_crossed_through_two_gateways_alerts_once_per_channel_within_60_s(
        cli_env: dict[str, str], http: HttpReceiver, tmp_path: Path) -> None:
    fake = OpenAIChatFake()
    with serve_in_thread(fake.app) as upstream:
        env = {**cli_env, "TALLYBOOK_ALERTS_INTERVAL": "3"}
        ok("providers", "add", "openai", "--base-url", upstream.url, env={**env, "OPENAI_API_KEY": "sk-test"})
        key = ok("keys", "create", "--name", "bot", "--budget", BUDGET, "--period", "day", "--format", "json",
                 env=env).json()
        ok("alerts", "channels", "add", "ops", "--kind", "slack", "--url", http.url + "/slack", env=env)
        ok("alerts", "channels", "add", "hook", "--kind", "webhook", "--url", http.url + "/hook", env=env)
        ok("alerts", "add", "bot-budget", "--kind", "budget", "--scope", f"key:{key['id']}", "--amount", BUDGET,
           "--period", "day", "--thresholds", "50,100", "--channel", "ops", "--channel", "hook", env=env)
        gateways = [start_gateway({**env, "TALLYBOOK_GATEWAY_SPOOL_DIR": str(tmp_path / f"spool{i}")},
                                  tmp_path / f"gateway{i}.log") for i in range(2)]
        try:
            clients = [openai.OpenAI(base_url=g.url + "/v1", api_key=key["secret"], max_retries=0) for g in gateways]
            refused_at = None
            for i in range(400):
                try:
                    clients[i % 2].chat.completions.create(  # max_tokens keeps each admission's upper bound small
                        model="gpt-4o", max_tokens=30, messages=[{"role": "user", "content": f"question {i} " * 40}])
                except openai.RateLimitError as e:
                    assert e.response.json()["error"]["type"] in ("budget_exceeded", "rate_limit_exceeded")
                    refused_at = refused_at or time.monotonic()
                    if i > 20 and all(_refused(c) for c in clients):
                        break
            assert refused_at is not None, "the budget never ran out"
            deadline = refused_at + 60
            while time.monotonic() < deadline and not (
                    any(s.startswith("Budget spent") for s in subjects(http, "/slack"))
                    and any(s.startswith("Budget spent") for s in subjects(http, "/hook"))):
                time.sleep(0.5)
            took = time.monotonic() - refused_at
            time.sleep(7)  # two more checks by each gateway: nothing more may arrive
        finally:
            for g in gateways:
                g.stop()
    for channel in ("/slack", "/hook"):
        said = Counter(s.split(":")[0] for s in subjects(http, channel))
        assert said["Budget spent"] == 1, (channel, said, took)
        assert set(said) <= {"Budget spent", "Budget 50 % reached"} and max(said.values()) == 1, said
    print(f"'Budget spent' reached both channels {took:.1f} s after the first 429")


def _refused(client: openai.OpenAI) -> bool:
    try:
        client.chat.completions.create(model="gpt-4o", max_tokens=30, messages=[{"role": "user", "content": "one more"}])
    except openai.RateLimitError:
        return True
    return False
