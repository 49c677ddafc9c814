"""Organisations are strictly apart, roles hold, and no answer carries a secret: checked on EVERY operation
of the API, enumerated from its own OpenAPI document (a new route is covered the day it is added)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pypdf import PdfReader

from tallybook.config import Settings
from tallybook.security.vault import Vault
from tallybook.web.auth import list_tokens, revoke_token
from tallybook.web.auth.users import find_user_id, org_id_for
from tests.web.api_data import FIRST_DAY, Seeded, seed_org

# A valid body for each write operation, so that what answers is the route's own check, not validation.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/v1/members"): {"email": "new-member@a.test", "role": "viewer"},
    ("patch", "/api/v1/members/{user_id}"): {"role": "viewer"},
    ("post", "/api/v1/connections"): {"provider": "openai", "key": "sk-admin-" + "z" * 30,
                                      "base_url": "http://127.0.0.1:9/v1"},
    ("post", "/api/v1/connections/{connection_id}/rotate"): {"key": "sk-admin-" + "r" * 30},
    ("post", "/api/v1/pricing/rules"): {"rule_id": "new-rule", "discount": "0.1", "effective_from": "2026-01-01"},
    ("post", "/api/v1/keys"): {"name": "new key"},
    ("patch", "/api/v1/keys/{key_id}"): {"name": "renamed"},
    ("post", "/api/v1/sync"): {"from": "2026-10-01", "to": "2026-10-02"},
    ("put", "/api/v1/sync/schedule"): {"schedule": "daily@04:30"},
    ("post", "/api/v1/alerts/channels"): {"name": "new-hook", "kind": "webhook", "url": "http://127.0.0.1:9/hook"},
    ("post", "/api/v1/alerts/channels/{channel_id}/test"): {},
    ("post", "/api/v1/alerts/rules"): {"name": "new-rule", "kind": "anomaly", "channels": ["new-hook"]},
    ("post", "/api/v1/billing/customers"): {"customer": "new-customer", "stripe_customer_id": "cus_new"},
    ("post", "/api/v1/billing/meters"): {"name": "new-meter", "event_name": "new_meter"},
}
WINDOW = {"from": f"{FIRST_DAY:%Y-%m-%d}", "to": "2026-10-05"}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    role: str
    parameters: tuple[str, ...]  # query parameter names
    formats: tuple[str, ...]  # what its `format` parameter accepts

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    def url(self, ids: dict[str, Any]) -> str:
        return self.path.format(**{p: ids[p] for p in self.path_params})

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


@dataclass
class World:
    client: TestClient
    a: Seeded
    b: Seeded
    a_ids: dict[str, Any]
    b_ids: dict[str, Any]
    headers: dict[str, dict[str, str]]  # admin, analyst, viewer of org A; "b" = org B's admin
    operations: list[Operation]

    def call(self, op: Operation, who: str, ids: dict[str, Any], params: dict[str, str] | None = None) -> Any:
        body = BODIES.get((op.method, op.path))
        return self.client.request(op.method.upper(), op.url(ids), headers=self.headers[who], params=params,
                                   json=body)


def pdf_text(content: bytes) -> str:
    assert content.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def operations(client: TestClient) -> list[Operation]:
    doc = client.get("/api/v1/openapi.json").json()
    found = []
    for path, ops in doc["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, op in ops.items():
            query = [p for p in op.get("parameters", []) if p["in"] == "query"]
            formats = tuple(re.findall(r"'enum': \[([^\]]*)\]", str([p["schema"] for p in query
                                                                        if p["name"] == "format"])))
            found.append(Operation(method, path, op.get("x-tallybook-role"), tuple(p["name"] for p in query),
                                   tuple(re.findall(r"'(\w+)'", ",".join(formats)))))
    return found


@pytest.fixture
def world(client: TestClient, engine: sa.Engine, web_settings: Settings, member: Callable[..., int],
          bearer: Callable[..., dict[str, str]]) -> Iterator[World]:
    member("admin@a.test", "org-a", "admin")
    member("analyst@a.test", "org-a", "analyst")
    member("viewer@a.test", "org-a", "viewer")
    b_admin = member("admin@b.test", "org-b", "admin")
    b_viewer = member("viewer@b.test", "org-b", "viewer")
    with engine.connect() as conn:
        a_org, b_org = org_id_for(conn, "org-a"), org_id_for(conn, "org-b")
        a_viewer = find_user_id(conn, "viewer@a.test")
    vault = Vault.from_settings(web_settings)
    a = seed_org(engine, a_org, "alpha", scale=1, vault=vault)
    b = seed_org(engine, b_org, "bravo", scale=7, vault=vault)

    def ids(seeded: Seeded, user_id: int | None) -> dict[str, Any]:
        return {"connection_id": seeded.connection_id, "key_id": seeded.key_id, "rule_id": seeded.rule_id,
                "user_id": user_id, "job_id": seeded.job_id, "channel_id": seeded.channel_id,
                "alert_rule_id": seeded.alert_rule_id, "customer": seeded.customer}

    headers = {"admin": bearer("admin@a.test", "org-a"), "analyst": bearer("analyst@a.test", "org-a"),
               "viewer": bearer("viewer@a.test", "org-a"), "b": bearer("admin@b.test", "org-b")}
    yield World(client, a, b, ids(a, a_viewer), ids(b, b_viewer), headers, operations(client))
    del b_admin


def test_every_operation_states_its_role_and_has_a_sample_body(world: World) -> None:
    assert len(world.operations) >= 30
    for op in world.operations:
        assert op.role in ("viewer", "analyst", "admin"), f"{op} checks no principal"
        if op.method in ("post", "put", "patch") and op.path not in ("/api/v1/benchmark/share",):
            assert (op.method, op.path) in BODIES or op.path.endswith("/opt-in"), f"add a sample body for {op}"
        if op.method != "get":
            assert op.role == "admin", f"{op} changes something: admins only"


def test_objects_of_another_organisation_are_404(world: World, engine: sa.Engine) -> None:
    with_ids = [op for op in world.operations if op.path_params]
    assert {p for op in with_ids for p in op.path_params} == {"connection_id", "key_id", "rule_id", "user_id",
                                                               "job_id", "channel_id", "alert_rule_id", "customer"}
    for op in with_ids:
        response = world.call(op, "admin", world.b_ids)
        assert response.status_code == 404, f"{op} on org B's object answered {response.status_code}: {response.text}"
        assert response.json()["error"]["code"] == "not_found", op
    # ... and org B's objects are untouched.
    b = world.headers["b"]
    assert world.client.get(f"/api/v1/keys/{world.b.key_id}", headers=b).json()["status"] == "active"
    assert world.client.get(f"/api/v1/keys/{world.b.key_id}", headers=b).json()["name"] == "bravo-key"
    assert world.client.get(f"/api/v1/connections/{world.b.connection_id}", headers=b).status_code == 200
    members = world.client.get("/api/v1/members", headers=b).json()["members"]
    assert {m["email"]: m["role"] for m in members} == {"admin@b.test": "admin", "viewer@b.test": "viewer"}


def test_org_a_figures_never_include_org_b_data_and_no_answer_carries_a_secret(world: World) -> None:
    secrets = [world.a.admin_key, world.b.admin_key, world.a.key_secret, world.b.key_secret, world.a.channel_url,
               world.b.channel_url, world.a.channel_secret, world.b.channel_secret]
    for op in world.operations:
        if op.method != "get":
            continue
        params = dict(WINDOW) if "from" in op.parameters else {"month": "2026-10"} if "month" in op.parameters else {}
        if "customer" in op.parameters:
            params["customer"] = world.a.customer
        for fmt in ("json", *(f for f in op.formats if f != "json")):
            if fmt != "json":
                params["format"] = fmt
            response = world.call(op, "admin", world.a_ids, params)
            assert response.status_code == 200, f"{op} {params}: {response.status_code} {response.text}"
            text = response.text if fmt != "pdf" else pdf_text(response.content)
            if fmt == "pdf":
                assert "alpha@seat.test" in text, "the PDF's text is read (org A's idle seat is in it)"
            assert "bravo" not in text, f"{op} leaks org B's data: {text[:300]}"
            for secret in secrets:
                assert secret not in text, f"{op} returns a secret"
            assert not re.search(r"\$argon2", text) and "password" not in text.lower(), f"{op} returns a password hash"
    usage = world.client.get("/api/v1/usage", headers=world.headers["admin"], params=WINDOW).json()["rows"]
    assert [(r["model"], r["input_tokens"], r["output_tokens"]) for r in usage] == [
        ("alpha-model", world.a.input_tokens, world.a.output_tokens)]
    summary = world.client.get("/api/v1/costs/summary", headers=world.headers["admin"],
                               params={"period": "monthly", "at": "2026-10-15"}).json()
    assert summary["providers"][0]["amount"] == f"{world.a.cost:.2f}" and summary["total"] == f"{world.a.cost:.2f}"
    assert summary["last_updated"] is not None


@pytest.mark.parametrize("who, refused", [("viewer", ("analyst", "admin")), ("analyst", ("admin",))])
def test_roles_are_enforced_on_every_operation(world: World, who: str, refused: tuple[str, ...]) -> None:
    checked = 0
    for op in world.operations:
        if op.role not in refused:
            continue
        response = world.call(op, who, world.a_ids)
        assert response.status_code == 403, f"{who} on {op}: {response.status_code} {response.text}"
        assert response.json()["error"]["code"] == "forbidden", op
        checked += 1
    assert checked >= (12 if who == "analyst" else 17)
    # Nothing changed: the key is still active and named as before, the member still there.
    key = world.client.get(f"/api/v1/keys/{world.a.key_id}", headers=world.headers["admin"]).json()
    assert (key["status"], key["name"]) == ("active", "alpha-key")


def test_a_viewer_reads_dashboard_figures_but_exports_are_for_analysts(world: World) -> None:
    viewer, analyst = world.headers["viewer"], world.headers["analyst"]
    assert world.client.get("/api/v1/costs", headers=viewer, params=WINDOW).status_code == 200
    refused = world.client.get("/api/v1/costs", headers=viewer, params={**WINDOW, "format": "csv"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    by_accept = world.client.get("/api/v1/usage", headers={**viewer, "Accept": "text/csv"}, params=WINDOW)
    assert by_accept.status_code == 403
    csv = world.client.get("/api/v1/usage", headers={**analyst, "Accept": "text/csv"}, params=WINDOW)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[1].startswith(f"openai,alpha-model,{world.a.input_tokens},")


def test_a_revoked_token_is_401_on_every_operation(world: World, engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org_id = org_id_for(conn, "org-a")
        user_id = find_user_id(conn, "admin@a.test")
        for token in list_tokens(conn, org_id, user_id):
            revoke_token(conn, org_id, token.id)
    for op in world.operations:
        response = world.call(op, "admin", world.a_ids)
        assert response.status_code == 401, f"{op}: {response.status_code}"
        assert response.json()["error"]["code"] == "unauthenticated"
    assert world.client.get("/api/v1/orgs/current").status_code == 401  # and no token at all
