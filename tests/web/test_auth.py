"""Sign-in and access: users, roles, sessions, CSRF, API tokens and the login rate limit, over HTTP
(FastAPI's TestClient) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from tallybook.errors import AccessError, InvalidCredentials, LoginThrottled
from tallybook.ledger.schema_access import api_tokens, users, web_sessions
from tallybook.ledger.store import utcnow
from tallybook.web.auth import (
    Principal,
    api_principal,
    authenticate,
    create_first_admin,
    create_token,
    list_members,
    list_tokens,
    remove_member,
    require,
    revoke_token,
    set_role,
    setup_needed,
)
from tallybook.web.auth.users import org_id_for
from tests.web.conftest import HASH_SHAPE, PASSWORD, form_csrf, signed_in


@pytest.fixture
def routes(app: FastAPI) -> FastAPI:
    """Test-only API routes: who am I, and an admin-only write."""

    @app.get("/api/v1/_test/whoami", include_in_schema=False)
    def whoami(principal: Annotated[Principal, Depends(api_principal)]) -> dict[str, object]:
        return {"email": principal.email, "org": principal.org_slug, "role": principal.role, "via": principal.via}

    @app.post("/api/v1/_test/admin-only", include_in_schema=False)
    def admin_only(principal: Annotated[Principal, Depends(require("admin"))]) -> dict[str, str]:
        return {"done_by": principal.email}

    return app


# --- service functions --------------------------------------------------------------------------

def test_first_admin_only_once_and_passwords_hashed_with_argon2(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert setup_needed(conn)
        _, org_id = create_first_admin(conn, "Ada@Example.com", PASSWORD, "acme")
        assert not setup_needed(conn)
        stored = conn.execute(sa.select(users.c.email, users.c.password_hash)).one()
        assert stored.email == "ada@example.com"
        assert HASH_SHAPE.match(stored.password_hash) and PASSWORD not in stored.password_hash
        assert [(m.email, m.role) for m in list_members(conn, org_id)] == [("ada@example.com", "admin")]
        with pytest.raises(AccessError, match="already done"):
            create_first_admin(conn, "mallory@example.com", PASSWORD, "acme")


def test_short_password_and_bad_email_are_refused(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(AccessError, match="at least 10 characters"):
            create_first_admin(conn, "ada@example.com", "short", "acme")
        with pytest.raises(AccessError, match="not an email"):
            create_first_admin(conn, "ada", PASSWORD, "acme")


def test_authenticate_accepts_right_password_and_counts_failures(engine: sa.Engine, member: Callable[..., int]) -> None:
    ada = member("ada@example.com")
    with engine.connect() as conn:
        assert authenticate(conn, "ADA@example.com ", PASSWORD, "10.0.0.1", max_attempts=3, window_seconds=60) == ada
        for _ in range(3):
            with pytest.raises(InvalidCredentials):
                authenticate(conn, "ada@example.com", "wrong password!", "10.0.0.1", max_attempts=3, window_seconds=60)
        with pytest.raises(LoginThrottled) as throttled:  # even the right password, from that address
            authenticate(conn, "ada@example.com", PASSWORD, "10.0.0.1", max_attempts=3, window_seconds=60)
        assert 1 <= throttled.value.retry_after <= 60
        # another address is not throttled, and its success does not clear the first address's count
        assert authenticate(conn, "ada@example.com", PASSWORD, "10.0.0.2", max_attempts=3, window_seconds=60) == ada
        with pytest.raises(LoginThrottled):
            authenticate(conn, "ada@example.com", PASSWORD, "10.0.0.1", max_attempts=3, window_seconds=60)
        with pytest.raises(InvalidCredentials):  # unknown email: the same answer as a wrong password
            authenticate(conn, "nobody@example.com", PASSWORD, "10.0.0.3", max_attempts=3, window_seconds=60)


def test_last_admin_cannot_be_demoted_or_removed(engine: sa.Engine, member: Callable[..., int]) -> None:
    ada, bob = member("ada@example.com"), member("bob@example.com", role="viewer")
    with engine.begin() as conn:
        acme = org_id_for(conn, "acme")
        with pytest.raises(AccessError, match="at least one admin"):
            set_role(conn, acme, ada, "viewer")
        with pytest.raises(AccessError, match="at least one admin"):
            remove_member(conn, acme, ada)
        set_role(conn, acme, bob, "admin")
        set_role(conn, acme, ada, "analyst")
        assert {m.email: m.role for m in list_members(conn, acme)} == {"ada@example.com": "analyst",
                                                                      "bob@example.com": "admin"}
        with pytest.raises(AccessError, match="Unknown role"):
            set_role(conn, acme, ada, "owner")


def test_tokens_are_stored_hashed_and_listed_without_secret(engine: sa.Engine, member: Callable[..., int]) -> None:
    ada = member("ada@example.com")
    with engine.begin() as conn:
        acme = org_id_for(conn, "acme")
        token_id, token = create_token(conn, acme, ada, "ci export", ["read"])
        assert token.startswith("tbt_") and len(token) > 40
        stored = conn.execute(sa.select(api_tokens)).one()._asdict()
        assert token not in str(stored) and token[4:] not in str(stored)
        [info] = list_tokens(conn, acme)
        assert (info.id, info.name, info.scopes, info.hint) == (token_id, "ci export", ("read",), f"tbt_...{token[-4:]}")
        with pytest.raises(AccessError, match="scopes"):
            create_token(conn, acme, ada, "bad", ["admin"])


# --- over HTTP ----------------------------------------------------------------------------------

def test_health_and_openapi_document(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/api/v1/openapi.json").json()["info"]["title"] == "tallybook"


def test_login_sets_a_secure_http_only_session_cookie(client: TestClient, member: Callable[..., int]) -> None:
    member("ada@example.com")
    response = client.post("/login", data={"email": "ada@example.com", "password": PASSWORD,
                                           "csrf_token": form_csrf(client), "next": "/spend?period=month"})
    assert response.status_code == 303 and response.headers["location"] == "/spend?period=month"
    cookie = response.headers["set-cookie"]
    assert "tallybook_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_login_never_redirects_off_site(client: TestClient, member: Callable[..., int]) -> None:
    member("ada@example.com")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = client.post("/login", data={"email": "ada@example.com", "password": PASSWORD,
                                               "csrf_token": form_csrf(client), "next": target})
        assert response.headers["location"] == "/"


def test_login_without_csrf_token_is_refused(client: TestClient, member: Callable[..., int]) -> None:
    member("ada@example.com")
    response = client.post("/login", data={"email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 403
    assert "tallybook_session" not in client.cookies


def test_wrong_password_goes_back_to_the_form(client: TestClient, member: Callable[..., int]) -> None:
    member("ada@example.com")
    response = client.post("/login", data={"email": "ada@example.com", "password": "not it at all",
                                           "csrf_token": form_csrf(client)})
    assert response.status_code == 303 and response.headers["location"] == "/login?error=invalid"
    assert "tallybook_session" not in client.cookies


def test_login_is_rate_limited_per_email_and_address(client: TestClient, member: Callable[..., int],
                                                      web_settings) -> None:  # type: ignore[no-untyped-def]
    member("ada@example.com")
    csrf = form_csrf(client)
    for _ in range(web_settings.login_max_attempts):
        wrong = client.post("/login", data={"email": "ada@example.com", "password": "guess guess guess",
                                            "csrf_token": csrf})
        assert wrong.status_code == 303
    response = client.post("/login", data={"email": "ada@example.com", "password": PASSWORD, "csrf_token": csrf},
                           headers={"Accept": "application/json"})
    assert response.status_code == 429
    assert 0 < int(response.headers["retry-after"]) <= web_settings.login_window_seconds
    assert response.json()["error"]["code"] == "throttled"
    assert "tallybook_session" not in client.cookies


def test_api_accepts_a_bearer_token_and_a_session(routes: FastAPI, client: TestClient, member: Callable[..., int],
                                                  bearer: Callable[..., dict[str, str]]) -> None:
    member("ada@example.com", role="analyst")
    assert client.get("/api/v1/_test/whoami", headers=bearer("ada@example.com")).json() == {
        "email": "ada@example.com", "org": "acme", "role": "analyst", "via": "token"}
    signed_in(client, "ada@example.com")
    assert client.get("/api/v1/_test/whoami").json()["via"] == "session"


def test_no_credentials_is_401_json(routes: FastAPI, client: TestClient) -> None:
    response = client.get("/api/v1/_test/whoami")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/_test/whoami", headers={"Authorization": "Bearer tbt_made-up"}).status_code == 401


def test_revoked_token_gets_401_at_once(routes: FastAPI, client: TestClient, engine: sa.Engine,
                                        member: Callable[..., int], bearer: Callable[..., dict[str, str]]) -> None:
    member("ada@example.com")
    header = bearer("ada@example.com")
    assert client.get("/api/v1/_test/whoami", headers=header).status_code == 200
    with engine.begin() as conn:
        [info] = list_tokens(conn, org_id_for(conn, "acme"))
        revoke_token(conn, org_id_for(conn, "acme"), info.id)
    response = client.get("/api/v1/_test/whoami", headers=header)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


def test_token_of_a_removed_member_stops_working(routes: FastAPI, client: TestClient, engine: sa.Engine,
                                                  member: Callable[..., int],
                                                  bearer: Callable[..., dict[str, str]]) -> None:
    member("ada@example.com")
    bob = member("bob@example.com", role="analyst")
    header = bearer("bob@example.com")
    with engine.begin() as conn:
        remove_member(conn, org_id_for(conn, "acme"), bob)
    assert client.get("/api/v1/_test/whoami", headers=header).status_code == 401


def test_viewer_and_analyst_get_403_on_admin_routes(routes: FastAPI, client: TestClient, member: Callable[..., int],
                                                    bearer: Callable[..., dict[str, str]]) -> None:
    member("ada@example.com", role="admin")
    member("vic@example.com", role="viewer")
    member("ana@example.com", role="analyst")
    for email in ("vic@example.com", "ana@example.com"):
        response = client.post("/api/v1/_test/admin-only", headers=bearer(email))
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert client.post("/api/v1/_test/admin-only", headers=bearer("ada@example.com")).json() == {
        "done_by": "ada@example.com"}


def test_read_only_token_cannot_write_even_for_an_admin(routes: FastAPI, client: TestClient,
                                                        member: Callable[..., int],
                                                        bearer: Callable[..., dict[str, str]]) -> None:
    member("ada@example.com", role="admin")
    header = bearer("ada@example.com", scopes=("read",))
    assert client.get("/api/v1/_test/whoami", headers=header).json()["role"] == "analyst"
    response = client.post("/api/v1/_test/admin-only", headers=header)
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"


def test_session_writes_need_the_csrf_header(routes: FastAPI, client: TestClient, member: Callable[..., int]) -> None:
    member("ada@example.com")
    signed_in(client, "ada@example.com")
    refused = client.post("/api/v1/_test/admin-only")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
    token = form_csrf(client)  # signed in: the session's own token
    assert client.post("/api/v1/_test/admin-only", headers={"X-CSRF-Token": token}).status_code == 200


def test_logout_ends_the_session_in_the_ledger(routes: FastAPI, client: TestClient, engine: sa.Engine,
                                               member: Callable[..., int]) -> None:
    member("ada@example.com")
    signed_in(client, "ada@example.com")
    cookie = client.cookies["tallybook_session"]
    assert client.post("/logout", data={"csrf_token": form_csrf(client)}).headers["location"] == "/login"
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(web_sessions)).scalar_one() == 0
    client.cookies.set("tallybook_session", cookie)  # a stolen copy of the old cookie is worthless
    assert client.get("/api/v1/_test/whoami").status_code == 401


def test_setup_creates_the_first_admin_once(routes: FastAPI, client: TestClient, engine: sa.Engine) -> None:
    csrf = form_csrf(client)
    short = client.post("/setup", data={"email": "ada@example.com", "password": "short", "csrf_token": csrf})
    assert short.headers["location"] == "/setup?error=password_too_short"
    done = client.post("/setup", data={"email": "ada@example.com", "password": PASSWORD, "org": "acme",
                                       "csrf_token": csrf})
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert client.get("/api/v1/_test/whoami").json() == {"email": "ada@example.com", "org": "acme",
                                                         "role": "admin", "via": "session"}
    other = TestClient(client.app, follow_redirects=False)
    again = other.post("/setup", data={"email": "mallory@example.com", "password": PASSWORD, "org": "acme",
                                       "csrf_token": form_csrf(other)})
    assert again.headers["location"] == "/login?error=setup_done"
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one() == 1


def test_session_switches_only_to_its_users_organisations(routes: FastAPI, client: TestClient,
                                                          member: Callable[..., int]) -> None:
    member("ada@example.com", org="acme", role="viewer")
    member("ada@example.com", org="globex", role="admin")
    member("zed@example.com", org="initech", role="admin")
    signed_in(client, "ada@example.com")
    assert client.get("/api/v1/_test/whoami").json()["org"] == "acme"
    csrf = form_csrf(client)
    assert client.post("/orgs/switch", data={"org": "globex", "csrf_token": csrf}).status_code == 303
    assert client.get("/api/v1/_test/whoami").json() == {"email": "ada@example.com", "org": "globex",
                                                         "role": "admin", "via": "session"}
    for org in ("initech", "nope"):
        refused = client.post("/orgs/switch", data={"org": org, "csrf_token": csrf},
                              headers={"Accept": "application/json"})
        assert refused.status_code == 404
    assert client.get("/api/v1/_test/whoami").json()["org"] == "globex"



def test_a_used_session_and_its_cookie_live_on(routes: FastAPI, client: TestClient, engine: sa.Engine,
                                               member: Callable[..., int], web_settings) -> None:  # type: ignore[no-untyped-def]
    member("ada@example.com")
    signed_in(client, "ada@example.com")
    quiet = client.get("/api/v1/_test/whoami")
    assert quiet.status_code == 200 and "set-cookie" not in quiet.headers  # just signed in: nothing to extend
    ten_days_ago = utcnow() - timedelta(days=10)
    with engine.begin() as conn:
        conn.execute(sa.update(web_sessions).values(last_seen_at=ten_days_ago,
                                                    expires_at=ten_days_ago + timedelta(days=14)))
    used = client.get("/api/v1/_test/whoami")
    assert used.status_code == 200
    cookie = used.headers["set-cookie"]
    assert f"Max-Age={web_settings.session_days * 86400}" in cookie and "HttpOnly" in cookie
    with engine.connect() as conn:
        expires = conn.execute(sa.select(web_sessions.c.expires_at)).scalar_one()
    assert expires - utcnow() > timedelta(days=web_settings.session_days - 1)
    with engine.begin() as conn:  # and left unused past its expiry, it is over
        conn.execute(sa.update(web_sessions).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/api/v1/_test/whoami").status_code == 401
