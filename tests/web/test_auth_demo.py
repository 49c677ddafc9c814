"""`tallybook demo` ends by serving the dashboard with a demo login; `--no-serve` ends after the summary."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tallybook.config import Settings
from tallybook.web.app import create_app
from tests.cli.helpers import ok
from tests.web.test_auth_serve import free_port

LOGIN = re.compile(r"Dashboard: (http://\S+)\s+sign in as (\S+) with password (\S+)")


def fake_ports() -> list[str]:
    return ["--openai-port", str(free_port()), "--anthropic-port", str(free_port()),
            "--cursor-port", str(free_port())]


@pytest.mark.slow  # a two-day sync of four demo connections
def test_demo_no_serve_prints_a_login_that_signs_in(cli_env: dict[str, str], engine: sa.Engine) -> None:
    result = ok("demo", "--days", "2", "--no-serve", "--org", "demo", *fake_ports())
    assert "tallybook demo" in result.stdout  # the summary is still there
    found = LOGIN.search(result.stdout)
    assert found, result.stdout
    url, email, password = found.groups()
    assert url == "http://127.0.0.1:8000/"
    app = create_app(Settings(database_url=cli_env["TALLYBOOK_DATABASE_URL"],
                              master_key_file=cli_env["TALLYBOOK_MASTER_KEY_FILE"]), engine=engine)
    client = TestClient(app, follow_redirects=False)
    client.cookies.set("tallybook_csrf", "x" * 43)  # as the sign-in page would have set it
    signed = client.post("/login", data={"email": email, "password": password, "csrf_token": "x" * 43})
    assert signed.status_code == 303 and "tallybook_session" in client.cookies
    # running the demo again keeps one demo user, and the same login still works
    again = LOGIN.search(ok("demo", "--days", "1", "--no-serve", "--org", "demo", *fake_ports()).stdout)
    assert again and again.groups()[1:] == (email, password)


@pytest.mark.slow
def test_demo_serves_the_dashboard_until_interrupted(cli_env: dict[str, str]) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tallybook.cli", "demo", "--days", "1", "--web-port", str(port), *fake_ports()],
        env={**os.environ, **cli_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert health is not None and health.status_code == 200
        page = httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json")
        assert page.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    found = LOGIN.search(stderr)
    assert found and found.group(1) == f"http://127.0.0.1:{port}/", stderr
    assert "scheduled sync" not in stderr  # the demo has just synced: today's run is marked done
