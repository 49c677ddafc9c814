"""Acceptance: `kill -9` the gateway (supervisor and workers) under load, start it again: every request
whose response completed at the client is in the ledger exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tallybook.fakes.openai_chat import OpenAIChatFake
from tallybook.fakes.server import serve_in_thread
from tallybook.ledger import schema as t
from tallybook.ledger.db import connect
from tests.cli.helpers import ok
from tests.gateway.gateway_process import free_port, start_gateway

pytestmark = pytest.mark.slow
CLIENTS = 8


def stored_ids(cli_env: dict[str, str], *, distinct: bool = True) -> Any:
    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            ids = list(conn.execute(sa.select(t.usage_events.c.event_id)).scalars())
    finally:
        engine.dispose()
    return set(ids) if distinct else ids


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the spool and its replay know no database
def test_every_answer_the_client_completed_survives_kill_9_exactly_once(cli_env: dict[str, str],
                                                                        tmp_path: Path) -> None:
    fake = OpenAIChatFake()
    with serve_in_thread(fake.app) as upstream:
        env = {**cli_env, "TALLYBOOK_GATEWAY_SPOOL_DIR": str(tmp_path / "spool")}
        ok("providers", "add", "openai", "--base-url", upstream.url, env={**env, "OPENAI_API_KEY": "sk-test"})
        secret = ok("keys", "create", "--name", "k", "--customer", "acme", "--format", "json", env=env).json()["secret"]
        port = free_port()
        gateway = start_gateway(env, tmp_path / "gateway.log", workers=2, port=port)
        completed: list[str] = []  # event ids of answers that reached the client whole
        broken = Counter[str]()
        stop = threading.Event()

        def client(number: int) -> None:
            with httpx.Client(base_url=gateway.url, timeout=10,
                              headers={"authorization": f"Bearer {secret}"}) as http:
                sent = 0
                while not stop.is_set():
                    sent += 1
                    body = {"model": "gpt-4o-mini", "stream": sent % 2 == 0,
                            "messages": [{"role": "user", "content": f"client {number} request {sent}"}]}
                    try:
                        with http.stream("POST", "/v1/chat/completions", json=body) as response:
                            content = response.read()
                        if response.status_code == 200 and (not body["stream"] or b"[DONE]" in content):
                            completed.append(response.headers["x-tallybook-event-id"])
                    except httpx.HTTPError as exc:  # the gateway died under this request
                        broken[type(exc).__name__] += 1
                        time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(4)
            gateway.kill()  # mid-load: requests in flight, events in the spool not yet in the ledger
            stop.set()
            for thread in threads:
                thread.join(20)
        finally:
            if gateway.process.poll() is None:
                gateway.kill()
        assert len(completed) >= 100 and broken, (len(completed), broken)
        waiting = set(completed) - stored_ids(cli_env)
        assert waiting, "every event was in the ledger before the kill: the test proves nothing"
        restarted = start_gateway(env, tmp_path / "gateway.log", workers=1, port=port)  # replays the spool
        assert restarted.stop() == 0, restarted.output()

    stored = Counter(stored_ids(cli_env, distinct=False))
    print(f"{len(completed)} answered, {len(waiting)} of them only in the spool at the kill; {broken}")
    assert len(completed) == len(set(completed))
    missing = set(completed) - set(stored)
    assert not missing, f"{len(missing)} of {len(completed)} answered requests are not in the ledger"
    assert max(stored.values()) == 1
