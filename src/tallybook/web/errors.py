"""How the web layer refuses a request: `ApiError` carries the status, a machine `code` and an English
message; the app renders it as `{"error": {"code", "message"}}` under /api and as a page elsewhere.

    ApiError(status, code, message)      e.g. 401 unauthenticated, 403 forbidden, 403 csrf, 404 not_found
    LoginRequired                        a page needs a session: redirect to /login?next=...
"""

from __future__ import annotations

from urllib.parse import quote


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        super().__init__(message)


class LoginRequired(Exception):
    def __init__(self, next_path: str, *, setup: bool = False) -> None:
        self.location = "/setup" if setup else f"/login?next={quote(next_path, safe='/')}"
        super().__init__(self.location)


def unauthenticated(message: str = "Sign in or send an API token: Authorization: Bearer tbt_...") -> ApiError:
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(what: str = "Not found.") -> ApiError:
    return ApiError(404, "not_found", what)
