"""The REST API's write routes and its errors: virtual keys, pricing rules, members, benchmark opt-in,
and one clear 422 for every kind of bad parameter."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tallybook import audit
from tallybook.config import Settings
from tallybook.gateway.keys import KeyCache
from tallybook.security.vault import Vault
from tallybook.web.auth.users import org_id_for
from tests.web.api_data import seed_org
from tests.web.conftest import HASH_SHAPE

Headers = dict[str, str]


@pytest.fixture
def admin(member: Callable[..., int], bearer: Callable[..., Headers]) -> Headers:
    member("admin@acme.test", "acme", "admin")
    return bearer("admin@acme.test", "acme")


def test_a_virtual_key_secret_is_shown_once_and_works(client: TestClient, admin: Headers, engine: sa.Engine) -> None:
    made = client.post("/api/v1/keys", headers=admin, json={"name": "support bot", "customer": "acme",
                                                            "budget": "100", "period": "month", "rpm": 600})
    assert made.status_code == 201, made.text
    key = made.json()
    secret = key["secret"]
    assert secret.startswith("tb-") and key["hint"] == f"tb-...{secret[-4:]}"
    assert key["budget"] == {"amount": "100.00", "currency": "USD", "period": "month", "spent_this_period": "0.00",
                             "origin": "metered", "period_start": key["budget"]["period_start"]}
    cache = KeyCache(engine)
    assert cache.authenticate(secret) is not None and cache.authenticate(secret).id == key["id"]  # type: ignore[union-attr]
    for path in ("/api/v1/keys", f"/api/v1/keys/{key['id']}", "/api/v1/budgets"):
        answer = client.get(path, headers=admin)
        assert answer.status_code == 200 and secret not in answer.text and secret[3:] not in answer.text
    budgets = client.get("/api/v1/budgets", headers=admin).json()["budgets"]
    assert [(b["scope"], b["amount"]) for b in budgets] == [(f"key:{key['id']}", "100.00")]

    changed = client.patch(f"/api/v1/keys/{key['id']}", headers=admin, json={"budget": "250.5", "tpm": 0})
    assert changed.status_code == 200 and changed.json()["budget"]["amount"] == "250.50"
    assert changed.json()["tpm"] is None and changed.json()["rpm"] == 600 and "secret" not in changed.json()
    removed = client.patch(f"/api/v1/keys/{key['id']}", headers=admin, json={"budget": None})
    assert removed.json()["budget"] is None

    revoked = client.delete(f"/api/v1/keys/{key['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert KeyCache(engine).authenticate(secret) is None
    assert client.delete(f"/api/v1/keys/{key['id']}", headers=admin).status_code == 404
    with engine.connect() as conn:
        actions = [e["action"] for e in audit.entries(conn)]
    assert {"key.created", "key.updated", "key.revoked"} <= set(actions)


@pytest.mark.parametrize("body, message", [
    ({"name": "k", "budget": "100"}, "needs a period"),
    ({"name": "k", "period": "day"}, "needs a period"),
    ({"name": "k", "budget": "-3", "period": "day"}, "budget"),
    ({"name": ""}, "name"),
    ({"name": "k", "colour": "red"}, "colour"),
])
def test_a_bad_key_is_one_clear_422(client: TestClient, admin: Headers, body: dict[str, object], message: str) -> None:
    answer = client.post("/api/v1/keys", headers=admin, json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request" and message in answer.json()["error"]["message"]
    assert client.get("/api/v1/keys", headers=admin).json() == {"keys": []}


def test_pricing_rules_are_versioned_and_never_rewrite_the_past(client: TestClient, admin: Headers) -> None:
    rule = {"rule_id": "gpt4o-discount", "provider": "openai", "model": "gpt-4o*", "discount": "10%",
            "effective_from": "2026-01-01"}
    first = client.post("/api/v1/pricing/rules", headers=admin, json=rule)
    assert first.status_code == 201 and [c["action"] for c in first.json()] == ["created"]
    again = client.post("/api/v1/pricing/rules", headers=admin, json=rule)
    assert [c["action"] for c in again.json()] == ["unchanged"]
    newer = client.post("/api/v1/pricing/rules", headers=admin, json={**rule, "discount": "0.12"})
    assert [(c["action"], c["version"]) for c in newer.json()] == [("updated", 2)]
    current = client.get("/api/v1/pricing/rules", headers=admin).json()["rules"]
    assert [(r["rule_id"], r["version"], r["kind"], r["source"]) for r in current] == [
        ("gpt4o-discount", 2, "discount", "api")]
    history = client.get("/api/v1/pricing/rules", headers=admin, params={"all_versions": "true"}).json()["rules"]
    assert [r["version"] for r in history] == [1, 2] and history[0]["retired_at"] is not None
    assert len(client.get("/api/v1/pricing/rules/gpt4o-discount", headers=admin).json()["rules"]) == 2
    two = client.post("/api/v1/pricing/rules", headers=admin, json={**rule, "rule_id": "x", "markup": "0.2"})
    assert two.status_code == 422 and "one rule has one kind" in two.json()["error"]["message"]


def test_members_are_added_changed_and_removed_by_admins(client: TestClient, admin: Headers, engine: sa.Engine) -> None:
    added = client.post("/api/v1/members", headers=admin,
                        json={"email": "Ana@Acme.test", "role": "analyst", "password": "a long enough password"})
    assert added.status_code == 201, added.text
    ana = added.json()
    assert (ana["email"], ana["role"]) == ("ana@acme.test", "analyst") and "password" not in added.text
    assert client.post("/api/v1/members", headers=admin, json={"email": "ana@acme.test", "role": "viewer"}
                       ).status_code == 409
    changed = client.patch(f"/api/v1/members/{ana['user_id']}", headers=admin, json={"role": "viewer"})
    assert changed.status_code == 200 and changed.json()["role"] == "viewer"
    listed = client.get("/api/v1/members", headers=admin)
    assert [(m["email"], m["role"]) for m in listed.json()["members"]] == [
        ("admin@acme.test", "admin"), ("ana@acme.test", "viewer")]
    assert not HASH_SHAPE.search(listed.text)
    me = next(m for m in listed.json()["members"] if m["role"] == "admin")["user_id"]
    last_admin = client.patch(f"/api/v1/members/{me}", headers=admin, json={"role": "viewer"})
    assert last_admin.status_code == 409 and "at least one admin" in last_admin.json()["error"]["message"]
    assert client.delete(f"/api/v1/members/{ana['user_id']}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/members/{ana['user_id']}", headers=admin).status_code == 404


def test_benchmark_opt_in_and_out(client: TestClient, admin: Headers) -> None:
    refused = client.post("/api/v1/benchmark/share", headers=admin, params={"month": "2026-10"})
    assert refused.status_code == 409 and "opt-in" in refused.json()["error"]["message"]
    assert client.put("/api/v1/benchmark/opt-in", headers=admin).json() == {"opted_in": True, "shared_tiers": 0}
    answer = client.get("/api/v1/benchmark", headers=admin, params={"month": "2026-10"}).json()
    assert answer["opted_in"] is True and {r["tier"] for r in answer["rows"]} >= {"frontier", "mid", "small"}
    assert all(r["peers"] == "not enough peers" for r in answer["rows"])
    assert client.post("/api/v1/benchmark/share", headers=admin, params={"month": "2026-10"}).status_code == 200
    assert client.delete("/api/v1/benchmark/opt-in", headers=admin).json()["opted_in"] is False
    assert client.get("/api/v1/orgs/current", headers=admin).json()["benchmark_opt_in"] is False


@pytest.mark.parametrize("path, params, names", [
    ("/api/v1/usage", {"from": "2026-13-01"}, "from"),
    ("/api/v1/usage", {"month": "2026-13"}, "month"),
    ("/api/v1/usage", {"month": "2026-10", "from": "2026-10-01"}, "not both"),
    ("/api/v1/usage", {"from": "2026-10-05", "to": "2026-10-01"}, "must not be before"),
    ("/api/v1/usage", {"from": "1999-01-01"}, "between 2000-01-01"),
    ("/api/v1/usage", {"from": "2000-01-01", "to": "2100-01-01"}, "at most"),
    ("/api/v1/usage", {"group_by": "provider,colour"}, "Cannot group by colour"),
    ("/api/v1/costs", {"format": "xml"}, "format"),
    ("/api/v1/costs", {"currency": "dollars"}, "currency"),
    ("/api/v1/costs/summary", {"period": "hourly"}, "period"),
    ("/api/v1/rates", {"group_by": "line_item"}, "cannot be grouped by line_item"),
    ("/api/v1/trend", {"group_by": "month"}, "period is its own option"),
    ("/api/v1/anomalies", {"weeks": "1"}, "weeks"),
    ("/api/v1/forecast", {"level": "2"}, "level"),
    ("/api/v1/savings", {"cache_target": "lots"}, "cache_target"),
    ("/api/v1/commitments", {"schedule": "5000:x"}, "schedule"),
    ("/api/v1/reconcile", {"threshold": "-1"}, "threshold"),
])
def test_a_bad_parameter_is_a_422_naming_it(client: TestClient, admin: Headers, path: str, params: dict[str, str],
                                            names: str) -> None:
    answer = client.get(path, headers=admin, params=params)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and names in error["message"], error


def test_unknown_routes_and_objects_answer_in_the_error_shape(client: TestClient, admin: Headers) -> None:
    for path in ("/api/v1/nothing-here", "/api/v1/connections/999", "/api/v1/keys/vk_nope", "/api/v1/members/999"):
        answer = client.get(path, headers=admin)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", path
    assert client.get("/api/v1/connections/not-a-number", headers=admin).status_code == 422
    # Regression: an id beyond 32 bits reached the database and overflowed SQLite's INTEGER (a 500).
    for path in ("/api/v1/connections/9223372036854775808", "/api/v1/members/2147483648", "/api/v1/sync/jobs/0"):
        answer = client.get(path, headers=admin)
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_request", path


def test_idle_seats_and_their_saving(client: TestClient, admin: Headers, engine: sa.Engine,
                                     web_settings: Settings) -> None:
    with engine.connect() as conn:
        org_id = org_id_for(conn, "acme")
    seed_org(engine, org_id, "acme", scale=1, vault=Vault.from_settings(web_settings))
    held = client.get("/api/v1/seats", headers=admin).json()["seats"]
    assert [(s["email"], s["monthly_cost"], s["cost_origin"], s["last_active"]) for s in held] == [
        ("acme@seat.test", "40.00", "estimated", None)]
    idle = client.get("/api/v1/seats/idle", headers=admin, params={"days": 30}).json()
    assert [(s["email"], s["monthly_saving"]) for s in idle["seats"]] == [("acme@seat.test", "40.00")]
    assert idle["total_monthly_saving"] == {"USD": "40.00"}
