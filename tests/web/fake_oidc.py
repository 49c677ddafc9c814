"""A tiny, strict OpenID Connect provider for the SSO tests: discovery, authorize (answers at once for
the user set in `next_user`), token (checks the client secret, redirect URI and PKCE verifier), JWKS.
ID tokens are RS256-signed with a key made at start."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tallybook.fakes.server import RunningServer, serve_in_thread

CLIENT_ID, CLIENT_SECRET = "tallybook-test", "client-secret-for-tests"


class FakeOIDC:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
        self.next_user: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.issuer = ""
        self.server: RunningServer | None = None

    def start(self) -> FakeOIDC:
        app = Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/authorize", self.authorize),
            Route("/token", self.token, methods=["POST"]),
            Route("/jwks", self.jwks),
        ])
        self.server = serve_in_thread(app)
        self.issuer = self.server.url
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    async def discovery(self, request: Request) -> Response:
        return JSONResponse({
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]})

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"nonce": q.get("nonce"), "redirect_uri": q["redirect_uri"],
                            "challenge": q["code_challenge"], "user": dict(self.next_user)}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        auth = request.headers.get("authorization", "")
        secret = base64.b64decode(auth.split()[1]).decode().split(":", 1)[1] if auth.startswith("Basic ") \
            else form.get("client_secret")
        grant = self.codes.pop(str(form.get("code")), None)
        if secret != CLIENT_SECRET or grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if challenge != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": grant["nonce"],
                  **grant["user"]}
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
        return JSONResponse({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300,
                             "id_token": id_token})

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))
