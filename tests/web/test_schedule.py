"""An organisation's own daily sync schedule: set by an admin in Settings or through the API, read by the
scheduler, audited; bad values refused with what to write; others may not change it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import time

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tallybook.config import Settings
from tallybook.ledger import schema_ops as ops
from tallybook.web.auth.users import org_id_for
from tallybook.web.scheduler import schedule_for
from tests.web.conftest import form_csrf, signed_in


def effective(engine: sa.Engine, settings: Settings, org: str = "acme") -> time | None:
    with engine.connect() as conn:
        return schedule_for(conn, org_id_for(conn, org), settings)


def audited(engine: sa.Engine) -> list[dict[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ops.audit_log.c.details).where(
            ops.audit_log.c.action == "sync_schedule.changed").order_by(ops.audit_log.c.seq)).scalars()
        return [json.loads(row) for row in rows]


def test_an_admin_sets_and_clears_the_schedule_in_settings(client: TestClient, member: Callable[..., int],
                                                           engine: sa.Engine, web_settings: Settings) -> None:
    member("ada@acme.test")
    signed_in(client, "ada@acme.test")
    token = form_csrf(client)
    assert effective(engine, web_settings) is None  # the deployment's schedule in these tests is off

    saved = client.post("/settings/schedule", data={"csrf_token": token, "schedule": " Daily@4:30 "})
    assert saved.status_code == 303 and saved.headers["location"] == "/settings?done=schedule_changed"
    page = client.get("/settings?done=schedule_changed").text
    assert 'data-schedule="04:30"' in page and 'value="daily@04:30"' in page and "Sync schedule saved." in page
    assert effective(engine, web_settings) == time(4, 30)

    refused = client.post("/settings/schedule", data={"csrf_token": token, "schedule": "weekly@02:00"})
    assert refused.status_code == 400 and "daily@HH:MM (UTC), off, or leave it empty" in refused.text
    assert effective(engine, web_settings) == time(4, 30)  # unchanged

    assert client.post("/settings/schedule", data={"csrf_token": token, "schedule": ""}).status_code == 303
    assert effective(engine, web_settings) is None
    assert 'value=""' in client.get("/settings").text
    assert [(e["from"], e["to"]) for e in audited(engine)] == [("deployment default", "daily@04:30"),
                                                              ("daily@04:30", "deployment default")]
    assert client.post("/settings/schedule", data={"csrf_token": "forged", "schedule": "off"}).status_code == 403


def test_only_admins_change_the_schedule(client: TestClient, member: Callable[..., int], engine: sa.Engine,
                                         web_settings: Settings) -> None:
    member("ann@acme.test", role="analyst")
    signed_in(client, "ann@acme.test")
    answer = client.post("/settings/schedule", data={"csrf_token": form_csrf(client), "schedule": "daily@01:00"})
    assert answer.status_code == 403
    assert effective(engine, web_settings) is None


def test_the_api_reads_and_sets_the_schedule(client: TestClient, member: Callable[..., int],
                                             bearer: Callable[..., dict[str, str]], engine: sa.Engine,
                                             web_settings: Settings) -> None:
    member("ada@acme.test")
    member("ann@acme.test", role="analyst")
    admin, analyst = bearer("ada@acme.test"), bearer("ann@acme.test")
    assert client.get("/api/v1/sync/schedule", headers=analyst).json() == {
        "schedule": None, "deployment": "off", "effective": "off"}

    put = client.put("/api/v1/sync/schedule", headers=admin, json={"schedule": "daily@23:05"})
    assert put.status_code == 200
    assert put.json() == {"schedule": "daily@23:05", "deployment": "off", "effective": "daily@23:05"}
    assert effective(engine, web_settings) == time(23, 5)

    bad = client.put("/api/v1/sync/schedule", headers=admin, json={"schedule": "daily@25:00"})
    assert bad.status_code == 422 and "daily@HH:MM" in bad.json()["error"]["message"]
    assert client.put("/api/v1/sync/schedule", headers=analyst, json={"schedule": "off"}).status_code == 403

    off = client.put("/api/v1/sync/schedule", headers=admin, json={"schedule": "off"}).json()
    assert off == {"schedule": "off", "deployment": "off", "effective": "off"}
    cleared = client.put("/api/v1/sync/schedule", headers=admin, json={"schedule": None}).json()
    assert cleared["schedule"] is None
    assert len(audited(engine)) == 3
