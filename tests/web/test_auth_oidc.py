"""Single sign-on: the full OpenID Connect code flow against a tiny local provider (tests/web/fake_oidc.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tallybook.config import Settings
from tallybook.web.app import create_app
from tallybook.web.auth import list_members
from tallybook.web.auth.users import org_id_for
from tests.web.fake_oidc import CLIENT_ID, CLIENT_SECRET, FakeOIDC


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOIDC]:
    fake = FakeOIDC().start()
    yield fake
    fake.stop()


@pytest.fixture
def sso_app(web_settings: Settings, engine: sa.Engine, provider: FakeOIDC) -> FastAPI:
    settings = web_settings.model_copy(update={
        "oidc_issuer": provider.issuer, "oidc_client_id": CLIENT_ID, "oidc_client_secret": CLIENT_SECRET})
    return create_app(settings, engine=engine)


def sign_in_by_sso(app: FastAPI, provider: FakeOIDC, user: dict[str, object], next_path: str = "/") -> tuple[
        TestClient, httpx.Response]:
    """Browser steps: our /auth/oidc/login -> the provider's /authorize -> our callback."""
    provider.next_user = user
    client = TestClient(app, follow_redirects=False)
    to_provider = client.get("/auth/oidc/login", params={"next": next_path})
    assert to_provider.status_code == 302, to_provider.text
    location = to_provider.headers["location"]
    assert location.startswith(f"{provider.issuer}/authorize?")
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    back = httpx.get(location, follow_redirects=False)
    assert back.status_code == 302
    callback = urlsplit(back.headers["location"])
    assert callback.path == "/auth/oidc/callback"
    return client, client.get(f"{callback.path}?{callback.query}")


def test_sso_off_by_default(client: TestClient) -> None:
    assert client.get("/auth/oidc/login").status_code == 404


def test_a_known_user_signs_in_by_email_and_is_linked_to_the_subject(
        sso_app: FastAPI, provider: FakeOIDC, member: Callable[..., int], engine: sa.Engine) -> None:
    member("ada@example.com", role="analyst")
    client, done = sign_in_by_sso(sso_app, provider, {"sub": "u-1", "email": "Ada@Example.com",
                                                      "email_verified": True}, next_path="/spend")
    assert done.status_code == 303 and done.headers["location"] == "/spend"
    assert "tallybook_session" in client.cookies
    # next time the subject alone finds her, even with another email at the provider
    _, again = sign_in_by_sso(sso_app, provider, {"sub": "u-1", "email": "ada.l@example.com",
                                                  "email_verified": True})
    assert again.status_code == 303 and again.headers["location"] == "/"


def test_an_unknown_user_is_refused_unless_a_default_org_is_set(
        sso_app: FastAPI, provider: FakeOIDC, engine: sa.Engine, web_settings: Settings) -> None:
    _, refused = sign_in_by_sso(sso_app, provider, {"sub": "u-2", "email": "eve@example.com",
                                                    "email_verified": True})
    assert refused.headers["location"] == "/login?error=sso_unknown_user"
    joining = create_app(web_settings.model_copy(update={
        "oidc_issuer": provider.issuer, "oidc_client_id": CLIENT_ID, "oidc_client_secret": CLIENT_SECRET,
        "oidc_default_org": "acme", "oidc_default_role": "viewer"}), engine=engine)
    client, joined = sign_in_by_sso(joining, provider, {"sub": "u-2", "email": "eve@example.com",
                                                        "email_verified": True})
    assert joined.status_code == 303 and "tallybook_session" in client.cookies
    with engine.connect() as conn:
        assert [(m.email, m.role) for m in list_members(conn, org_id_for(conn, "acme"))] == [
            ("eve@example.com", "viewer")]


def test_an_unverified_email_is_refused(sso_app: FastAPI, provider: FakeOIDC, member: Callable[..., int]) -> None:
    member("ada@example.com")
    client, refused = sign_in_by_sso(sso_app, provider, {"sub": "u-3", "email": "ada@example.com",
                                                         "email_verified": False})
    assert refused.headers["location"] == "/login?error=sso_email_unverified"
    assert "tallybook_session" not in client.cookies


def test_a_forged_callback_is_refused(sso_app: FastAPI, provider: FakeOIDC, member: Callable[..., int]) -> None:
    member("ada@example.com")
    provider.next_user = {"sub": "u-1", "email": "ada@example.com", "email_verified": True}
    client = TestClient(sso_app, follow_redirects=False)
    # no login started in this browser: a code and state from elsewhere must not sign it in
    started = TestClient(sso_app, follow_redirects=False).get("/auth/oidc/login")
    back = httpx.get(started.headers["location"], follow_redirects=False)
    callback = urlsplit(back.headers["location"])
    refused = client.get(f"{callback.path}?{callback.query}")
    assert refused.headers["location"] == "/login?error=sso_failed"
    assert "tallybook_session" not in client.cookies


def test_an_unreachable_provider_goes_back_to_the_login_form(web_settings: Settings, engine: sa.Engine) -> None:
    app = create_app(web_settings.model_copy(update={
        "oidc_issuer": "http://127.0.0.1:9", "oidc_client_id": CLIENT_ID, "oidc_client_secret": CLIENT_SECRET}),
        engine=engine)
    answer = TestClient(app, follow_redirects=False).get("/auth/oidc/login")
    assert answer.status_code == 303 and answer.headers["location"] == "/login?error=sso_failed"
