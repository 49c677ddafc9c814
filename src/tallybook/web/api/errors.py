"""The API's one error shape, `{"error": {"code", "message"}}`, as the OpenAPI document declares it.

The app (web/app.py) renders `tallybook.web.errors.ApiError` and FastAPI's validation errors in that
shape. `ApiRoute` adds, for every route of the API, the errors of the functions the API calls:

    ReportError, ConfigError, PricingError, ...   422 invalid_request  (the caller's figures or options)
    connectors.AuthError, PermissionDenied        422 key_rejected     (the admin key did not pass its check)
    other ConnectorError                          502 provider_unavailable
    AccessError (the auth service functions)      400 (bad input) as 422 invalid_request; else its own status
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict

from tallybook.analytics.rollups import ReportError
from tallybook.errors import AccessError, AuthError, ConnectorError, PermissionDenied, TallybookError
from tallybook.security.redaction import redact
from tallybook.web.errors import ApiError


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_request", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error the API answers."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


def _doc(text: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": text}


# Declared on the API router, so the OpenAPI document lists what a caller can get back from every route.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _doc("No valid API token or session (`unauthenticated`)."),
    403: _doc("The role or the token's scope does not allow this (`forbidden`, `insufficient_scope`, `csrf`)."),
    404: _doc("No such object in the principal's organisation (`not_found`)."),
    409: _doc("The change conflicts with the current state (`conflict`)."),
    422: _doc("A query parameter or body field is invalid (`invalid_request`, `key_rejected`)."),
}
PROVIDER_ERRORS: dict[int | str, dict[str, Any]] = {
    502: _doc("The provider could not be reached to check the key (`provider_unavailable`)."),
}


def translated(exc: TallybookError) -> ApiError:
    """A tallybook error raised by a function the API called, as the API's error."""
    message = redact(str(exc))
    if isinstance(exc, AuthError | PermissionDenied):
        return ApiError(422, "key_rejected", message)
    if isinstance(exc, ConnectorError):
        return ApiError(502, "provider_unavailable", message)
    return ApiError(422, "invalid_request", message)


class ApiRoute(APIRoute):
    """An APIRoute whose errors, including those of the analytics and ledger functions, leave in the
    API's one shape (rendered by the app's handler for ApiError)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ReportError as exc:
                raise invalid(str(exc)) from None
            except AccessError as exc:  # the auth service functions: 400 is bad input, the rest is the app's
                if exc.status == 400:
                    raise invalid(str(exc)) from None
                raise
            except TallybookError as exc:
                raise translated(exc) from None

        return guarded
