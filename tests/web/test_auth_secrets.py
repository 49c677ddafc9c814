"""Security: no response, page or log line ever holds a password (or its hash), an API token after the
answer that created it, or a provider admin key (or its sealed form). Every GET route of the app is
walked, as an admin by session and by token, so W2's and W3's routes are covered as they land."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute

from tallybook.cli.connect import secret_context
from tallybook.ledger import schema as t
from tallybook.ledger import store
from tallybook.ledger.schema_access import users
from tallybook.security.redaction import fingerprint
from tallybook.security.vault import Vault
from tests.web.conftest import PASSWORD, form_csrf, signed_in

ADMIN_KEY = "sk-admin-PLANTEDadminKEYforTHEwebTEST-q7r8"


def get_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[str]:
    """Every GET path without path parameters, through included routers (and their include prefixes)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from get_routes(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
        elif "GET" in (getattr(route, "methods", None) or ()) and "{" not in route.path:  # type: ignore[attr-defined]
            yield prefix + route.path  # type: ignore[attr-defined]


@pytest.fixture
def secrets_world(app: FastAPI, engine: sa.Engine, web_settings, member: Callable[..., int],  # type: ignore[no-untyped-def]
                  bearer: Callable[..., dict[str, str]]) -> dict[str, str]:
    member("ada@example.com", role="admin")
    with engine.begin() as conn:
        org_id = conn.execute(sa.select(t.organisations.c.id).where(t.organisations.c.slug == "acme")).scalar_one()
        sealed = Vault.from_settings(web_settings).seal(ADMIN_KEY, context=secret_context(org_id, "openai"))
        store.save_connection(conn, org_id=org_id, name="openai", provider="openai",
                              base_url="http://127.0.0.1:9/", secret_sealed=sealed,
                              key_fingerprint=fingerprint(ADMIN_KEY))
        password_hash = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    header = bearer("ada@example.com")
    return {"password_hash": password_hash, "hash_body": password_hash.rsplit("$", 1)[-1], "sealed": sealed,
            "token": header["Authorization"].removeprefix("Bearer "), "admin_key": ADMIN_KEY,
            "admin_key_body": ADMIN_KEY[9:-4], "password": PASSWORD}


def test_no_route_and_no_log_line_leaks_a_secret(secrets_world: dict[str, str], app: FastAPI,
                                                 client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    paths = sorted(set(get_routes(app.routes)))
    assert "/healthz" in paths and "/api/v1/openapi.json" in paths
    seen: list[str] = []

    def fetch(c: TestClient, headers: dict[str, str] | None = None) -> None:
        for path in paths:
            response = c.get(path, headers=headers or {})
            seen.append(f"{path} {response.status_code} {dict(response.headers)} {response.text}")

    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)  # a 500 must leak nothing either
    token = secrets_world["token"]
    fetch(client, {"Authorization": f"Bearer {token}"})
    fetch(client)  # anonymous
    # failed sign-ins, then a good one, then every page as the signed-in admin
    for password in ("wrong password one", secrets_world["password"]):
        response = client.post("/login", data={"email": "ada@example.com", "password": password,
                                               "csrf_token": form_csrf(client)})
        seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
    assert "tallybook_session" in client.cookies
    fetch(client)
    text = "\n".join(seen) + "\n" + "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    for name, value in secrets_world.items():
        assert value not in text, f"the {name} appears in a response or a log line"


def test_the_token_is_in_the_ledger_only_as_a_hash(secrets_world: dict[str, str], engine: sa.Engine) -> None:
    with engine.connect() as conn:
        dump = "\n".join(str(row) for table in ("api_tokens", "web_sessions", "users", "login_attempts")
                         for row in conn.execute(sa.text(f"SELECT * FROM {table}")))
    assert secrets_world["token"] not in dump and secrets_world["token"][4:] not in dump
    assert secrets_world["password"] not in dump


def test_login_failure_logs_and_answers_no_password(client: TestClient, member: Callable[..., int],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    member("ada@example.com")
    caplog.set_level(logging.DEBUG)
    signed_in(client, "ada@example.com")
    response = client.post("/login", data={"email": "ada@example.com", "password": "hunter2-hunter2",
                                           "csrf_token": form_csrf(client)})
    assert "hunter2" not in response.text + str(response.headers) + caplog.text
