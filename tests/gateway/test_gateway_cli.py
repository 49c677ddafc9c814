"""`tallybook gateway` end to end: providers add, keys create, the gateway process, the SDK, and the
request's usage in the ledger after a graceful stop (spool -> flusher), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa

from tallybook.fakes.openai_chat import OpenAIChatFake
from tallybook.fakes.server import RunningServer, serve_in_thread
from tallybook.ledger import schema as t
from tallybook.ledger.db import connect
from tests.cli.helpers import ok, run


@pytest.fixture
def upstream() -> Iterator[tuple[OpenAIChatFake, RunningServer]]:
    fake = OpenAIChatFake()
    with serve_in_thread(fake.app) as server:
        yield fake, server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_gateway_command_meters_into_the_ledger(cli_env, upstream, tmp_path: Path) -> None:
    fake, server = upstream
    env = {**cli_env, "TALLYBOOK_GATEWAY_SPOOL_DIR": str(tmp_path / "spool")}
    refused = run("gateway", "--port", "1", env=env)
    assert refused.exit_code == 2 and "tallybook providers add openai" in refused.stderr

    ok("providers", "add", "openai", "--base-url", server.url, env={**env, "OPENAI_API_KEY": "sk-live-test"})
    secret = ok("keys", "create", "--name", "cli-app", "--customer", "acme", "--format", "json", env=env).json()["secret"]
    port = free_port()
    log = tmp_path / "gateway.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "tallybook.cli", "gateway", "--port", str(port)],
                                   env={**os.environ, **env}, stderr=stderr)
    try:
        deadline = time.monotonic() + 60  # a loaded 2-core machine needs ~20 s (imports, tokenizer)
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.1)
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=secret, max_retries=0) as client:
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content
        assert fake.served.last().api_key == "sk-live-test"  # the vault's key went upstream, not the virtual one
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(t.usage_events)).all()
    finally:
        engine.dispose()
    assert len(rows) == 1
    row = rows[0]
    truth = fake.served.last().tokens
    assert (row.customer, row.provider, row.model, row.outcome) == ("acme", "openai", "gpt-4o-mini", "ok")
    assert (row.input_tokens, row.output_tokens) == (truth.input_tokens, truth.output_tokens)
    assert row.usage_origin == "metered" and row.list_cost_nanos > 0
