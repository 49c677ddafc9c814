"""Connecting a provider through the API against the fake admin APIs: the key is checked, sealed with the
same vault context as `tallybook connect` (so `tallybook sync` can use it), rotated, removed, never returned."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tallybook.config import get_settings
from tallybook.fakes.launcher import DEMO_KEYS, FakeCloud, start_fakes
from tallybook.ledger import schema as t
from tallybook.web.app import create_app
from tallybook.web.auth import add_member, create_token, create_user
from tallybook.web.auth.users import org_id_for
from tests.cli.helpers import ok
from tests.support import FAKE_NOW

WRONG_KEY = "sk-admin-wrong-" + "9" * 24


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    fakes = start_fakes(now=FAKE_NOW)
    yield fakes
    fakes.stop()


@pytest.fixture
def api(cli_env: dict[str, str], engine: sa.Engine) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app on the CLI's settings (same ledger, same master key) and an admin token of the CLI's org."""
    with engine.begin() as conn:
        user_id = create_user(conn, "admin@acme.test", "correct horse battery staple")
        org_id = org_id_for(conn, "default", create=True)
        add_member(conn, org_id, user_id, "admin")
        _, token = create_token(conn, org_id, user_id, "test", ("read", "write"))
    with TestClient(create_app(get_settings(), engine=engine)) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_connect_rotate_and_remove_a_provider(cloud: FakeCloud, cli_env: dict[str, str],
                                              api: tuple[TestClient, dict[str, str]], engine: sa.Engine) -> None:
    client, admin = api
    url = cloud.base_url("openai")
    refused = client.post("/api/v1/connections", headers=admin,
                          json={"provider": "openai", "key": WRONG_KEY, "base_url": url})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "key_rejected"
    assert WRONG_KEY not in refused.text
    assert client.get("/api/v1/connections", headers=admin).json() == {"connections": []}

    made = client.post("/api/v1/connections", headers=admin,
                       json={"provider": "openai", "key": DEMO_KEYS["openai"], "base_url": url})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["rotated"] is False and body["check"]["permissions"] == ["usage.read"]
    connection = body["connection"]
    assert (connection["name"], connection["key"]) == ("openai", f"sk-admin-...{DEMO_KEYS['openai'][-4:]}")
    with engine.connect() as conn:
        sealed = conn.execute(sa.select(t.connections.c.secret_sealed)).scalar_one()
    assert DEMO_KEYS["openai"] not in sealed
    again = client.post("/api/v1/connections", headers=admin,
                        json={"provider": "openai", "key": DEMO_KEYS["openai"], "base_url": url})
    assert again.status_code == 409

    # the CLI syncs with the key the API stored, and the API sees the sync
    ok("sync", "--since", "2026-10-01", "--until", "2026-10-03", env=cli_env)
    listed = client.get("/api/v1/connections", headers=admin).json()["connections"]
    assert listed[0]["last_sync_at"] is not None and listed[0]["status"] == "active"
    runs = client.get("/api/v1/sync/runs", headers=admin).json()["runs"]
    assert [(r["connection"], r["status"]) for r in runs] == [("openai", "succeeded")] and runs[0]["rows"] > 0

    cid = connection["id"]
    bad_rotation = client.post(f"/api/v1/connections/{cid}/rotate", headers=admin, json={"key": WRONG_KEY})
    assert bad_rotation.status_code == 422
    assert client.get(f"/api/v1/connections/{cid}", headers=admin).json()["key"] == connection["key"]
    rotated = client.post(f"/api/v1/connections/{cid}/rotate", headers=admin, json={"key": DEMO_KEYS["openai"]})
    assert rotated.status_code == 200 and rotated.json()["rotated"] is True
    assert rotated.json()["connection"]["rotated_at"] is not None

    for answer in (made, again, rotated, client.get("/api/v1/connections", headers=admin)):
        assert DEMO_KEYS["openai"] not in answer.text and WRONG_KEY not in answer.text
    assert client.delete(f"/api/v1/connections/{cid}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/connections/{cid}", headers=admin).status_code == 404
    assert client.get("/api/v1/usage", headers=admin, params={"from": "2026-10-01", "to": "2026-10-03"}
                      ).json()["rows"], "the usage already synced stays"


def test_an_unknown_provider_is_a_422(api: tuple[TestClient, dict[str, str]]) -> None:
    client, admin = api
    answer = client.post("/api/v1/connections", headers=admin, json={"provider": "acme-ai", "key": "k" * 20})
    assert answer.status_code == 422 and "Unknown provider 'acme-ai'" in answer.json()["error"]["message"]


def test_a_sync_started_through_the_api_runs_in_the_background(cloud: FakeCloud,
                                                               api: tuple[TestClient, dict[str, str]]) -> None:
    client, admin = api
    made = client.post("/api/v1/connections", headers=admin, json={
        "provider": "anthropic", "key": DEMO_KEYS["anthropic"], "base_url": cloud.base_url("anthropic")})
    cid = made.json()["connection"]["id"]
    started = client.post("/api/v1/sync", headers=admin, json={"connection_id": cid, "from": "2026-10-01",
                                                               "to": "2026-10-03"})
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    deadline = time.monotonic() + 60
    while True:
        job = client.get(f"/api/v1/sync/jobs/{job_id}", headers=admin).json()
        if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    [run] = job["runs"]
    assert run["connection"] == "anthropic" and run["tasks_done"] == run["tasks_total"] > 0 and run["rows"] > 0
    assert [j["id"] for j in client.get("/api/v1/sync/jobs", headers=admin).json()["jobs"]] == [job_id]
    usage = client.get("/api/v1/usage", headers=admin, params={"from": "2026-10-01", "to": "2026-10-03",
                                                               "group_by": "provider"}).json()["rows"]
    assert [r["provider"] for r in usage] == ["anthropic"] and usage[0]["input_tokens"] > 0
    missing = client.post("/api/v1/sync", headers=admin, json={"connection_id": cid + 100})
    assert missing.status_code == 404
