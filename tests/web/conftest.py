"""Web fixtures: the app on this test's ledger (SQLite and PostgreSQL), an HTTP client, and members.

`member(email, org, role)` creates a user in an organisation; `signed_in(client, email)` signs a client
in through POST /login; `bearer(email, org)` makes an API token. Every user's password is PASSWORD.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from tallybook.config import Settings
from tallybook.security.vault import generate_master_key
from tallybook.web.app import create_app
from tallybook.web.auth import add_member, create_token, create_user, csrf_token
from tallybook.web.auth.users import find_user_id, org_id_for

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its smallest cost: the same format and checks, 1 ms instead of ~0.5 s a hash on a busy CI."""
    from argon2 import PasswordHasher

    from tallybook.web.auth import passwords

    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", fast)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", fast.hash("tallybook-no-such-user"))


@pytest.fixture
def web_settings(database_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(database_url=database_url, master_key=generate_master_key(),
                    master_key_file=str(tmp_path / "master.key"), sync_schedule="off")


@pytest.fixture
def app(web_settings: Settings, engine: sa.Engine) -> FastAPI:
    app = create_app(web_settings, engine=engine)

    @app.get("/_test/csrf", include_in_schema=False)
    def _csrf(request: Request) -> dict[str, str]:  # what a page's form would carry
        return {"csrf_token": csrf_token(request)}

    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def member(engine: sa.Engine) -> Callable[..., int]:
    """member(email, org="acme", role="admin") -> user id (the user is created on first use)."""

    def make(email: str, org: str = "acme", role: str = "admin") -> int:
        with engine.begin() as conn:
            user_id = find_user_id(conn, email) or create_user(conn, email, PASSWORD)
            add_member(conn, org_id_for(conn, org, create=True), user_id, role)
        return user_id

    return make


@pytest.fixture
def bearer(engine: sa.Engine) -> Callable[..., dict[str, str]]:
    """bearer(email, org="acme", scopes=("read", "write")) -> the Authorization header of a new token."""

    def make(email: str, org: str = "acme", scopes: tuple[str, ...] = ("read", "write")) -> dict[str, str]:
        with engine.begin() as conn:
            user_id = find_user_id(conn, email)
            assert user_id is not None, f"create {email} with member() first"
            _, token = create_token(conn, org_id_for(conn, org), user_id, "test", scopes)
        return {"Authorization": f"Bearer {token}"}

    return make


def form_csrf(client: TestClient) -> str:
    """The CSRF token a form would carry: the session's, or before sign-in the double-submit cookie's."""
    return str(client.get("/_test/csrf").json()["csrf_token"])


def signed_in(client: TestClient, email: str, password: str = PASSWORD) -> TestClient:
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": form_csrf(client)})
    assert response.status_code == 303 and response.headers["location"] == "/", response.text
    assert "tallybook_session" in client.cookies
    return client


HASH_SHAPE = re.compile(r"\$argon2id?\$")
