"""`tallybook serve` as a user runs it: a real process on a real port, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.cli.helpers import run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # a fresh interpreter imports the whole app: 5-20 s on a busy machine
def test_serve_answers_until_interrupted_and_points_to_setup(cli_env: dict[str, str]) -> None:
    port = free_port()
    env = {**os.environ, **cli_env, "TALLYBOOK_SYNC_SCHEDULE": "daily@02:00"}
    process = subprocess.Popen([sys.executable, "-m", "tallybook.cli", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, health = time.monotonic() + 60, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None and health.json() == {"status": "ok"}, process.stderr and process.stderr.read()
        spec = httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json").json()
        assert spec["info"]["title"] == "tallybook"
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/_nothing").status_code in (401, 404)
        assert "server" not in httpx.get(f"http://127.0.0.1:{port}/healthz").headers
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}/" in stderr
    assert f"First run: open http://127.0.0.1:{port}/setup" in stderr
    assert "Sync schedule: daily@02:00" in stderr


def test_serve_on_a_busy_port_says_so(cli_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run("serve", "--port", str(busy.getsockname()[1]))
    assert result.exit_code == 2
    assert "already in use; choose another with --port" in result.stderr
