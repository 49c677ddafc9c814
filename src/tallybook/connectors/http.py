"""The one HTTP client every connector uses: timeouts, retries with backoff, JSON that keeps decimals.

Retries: 429, 5xx, timeouts and connection errors are retried with exponential
backoff and full jitter, honouring `retry-after` (seconds or an HTTP date) when
the provider sends one. 401 and 403 are never retried: they become AuthError
and PermissionDenied with a message naming the key and what to do.

Tests inject `transport=httpx.MockTransport(handler)` and a `sleep` that records
instead of sleeping.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from tallybook import __version__
from tallybook.errors import (
    AuthError,
    ConnectorError,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    ResponseError,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6  # total tries, the first included
    base_delay: float = 0.5  # seconds, doubled each retry
    max_delay: float = 30.0  # cap on one wait computed by backoff
    max_retry_after: float = 120.0  # longest `retry-after` we agree to wait


Params = Mapping[str, Any] | list[tuple[str, Any]]


class ProviderClient:
    """A thin wrapper on `httpx.Client` for one provider's admin API.

    `label` names the provider in every error ("OpenAI"); `key_hint` names the key
    by its fingerprint, never its value; `fix` says how to replace a bad key.
    """

    def __init__(
        self,
        *,
        provider: str,
        label: str,
        base_url: str,
        headers: Mapping[str, str],
        key_hint: str,
        fix: str,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider
        self.label = label
        self.key_hint = key_hint
        self.fix = fix
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.requests_made = 0
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"user-agent": f"tallybook/{__version__}", **headers},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def get_json(self, path: str, params: Params | None = None) -> dict[str, Any]:
        return self.request_json("GET", path, params=params)

    def request_json(
        self, method: str, path: str, *, params: Params | None = None, json_body: Any = None
    ) -> dict[str, Any]:
        response = self._send(method, path, params=params, json_body=json_body)
        try:
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise ResponseError(
                self.provider,
                f"{self.label} answered {method} {path} with a body that is not JSON "
                f"(HTTP {response.status_code}); nothing was stored for this window. "
                "Check the connection's base URL, then run the sync again.",
            ) from None
        if not isinstance(body, dict):
            raise ResponseError(
                self.provider,
                f"{self.label} answered {method} {path} with JSON that is not an object; "
                "nothing was stored for this window. Check the connection's base URL.",
            )
        return body

    def _send(self, method: str, path: str, *, params: Params | None, json_body: Any) -> httpx.Response:
        policy = self.retry
        last_problem = ""
        for attempt in range(1, policy.attempts + 1):
            wait: float | None = None
            try:
                self.requests_made += 1
                response = self._client.request(method, path, params=params, json=json_body)
            except httpx.TimeoutException:
                last_problem = "timed out"
            except httpx.TransportError as exc:
                last_problem = f"could not be reached ({type(exc).__name__})"
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status == 401:
                    raise AuthError(
                        self.provider,
                        f"{self.label} rejected the admin key {self.key_hint} (HTTP 401: "
                        f"{_error_message(response)}). {self.fix}",
                    )
                if status == 403:
                    raise PermissionDenied(
                        self.provider,
                        f"{self.label} admin key {self.key_hint} may not read {path} (HTTP 403: "
                        f"{_error_message(response)}). Use an organisation admin key with "
                        f"usage and cost read access. {self.fix}",
                    )
                if status not in RETRY_STATUSES:
                    raise ConnectorError(
                        self.provider,
                        f"{self.label} refused {method} {path} (HTTP {status}: {_error_message(response)}). "
                        "Check the dates (the provider may not keep data that old) and the connection's base URL; "
                        "if both are right, report this message as a tallybook bug.",
                    )
                last_problem = f"answered HTTP {status}"
                wait = retry_after_seconds(response.headers.get("retry-after"))
                if wait is not None and wait > policy.max_retry_after:
                    raise RateLimited(
                        self.provider,
                        f"{self.label} asked us to wait {wait:.0f} s before retrying {path}; "
                        "run the sync again later.",
                    )
            if attempt == policy.attempts:
                break
            if wait is None:
                wait = random.uniform(0, min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)))
            log.info("%s %s %s; retry %d in %.2f s", self.label, path, last_problem, attempt, wait)
            self.sleep(wait)
        cls = RateLimited if last_problem.endswith("429") else ProviderUnavailable
        raise cls(
            self.provider,
            f"{self.label} {path} {last_problem} on all {policy.attempts} tries; nothing was lost. "
            "Run the sync again later: it resumes where it stopped.",
        )

    def paginate(
        self,
        path: str,
        params: list[tuple[str, Any]],
        *,
        cursor_param: str = "page",
        next_field: str = "next_page",
    ) -> Iterator[dict[str, Any]]:
        """Yield every page of a `has_more` + `next_page` cursor listing."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page_params = list(params) + ([(cursor_param, cursor)] if cursor else [])
            body = self.get_json(path, page_params)
            yield body
            has_more = body.get("has_more")
            cursor = body.get(next_field)
            if not has_more:
                return
            if not isinstance(cursor, str) or not cursor:
                raise ResponseError(
                    self.provider,
                    f"{self.label} {path} said has_more but gave no `{next_field}` cursor; "
                    "nothing was stored for this window. Run the sync again; report it if it persists.",
                )
            if cursor in seen:
                raise ResponseError(
                    self.provider,
                    f"{self.label} {path} returned the same page cursor twice; stopped to avoid a loop. "
                    "Nothing was stored for this window.",
                )
            seen.add(cursor)


def retry_after_seconds(value: str | None) -> float | None:
    """`retry-after` as seconds: an integer, a decimal, or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _error_message(response: httpx.Response) -> str:
    """The provider's own error text from an OpenAI- or Anthropic-style error body, kept short."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no details"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:200]
    if isinstance(error, str):
        return error[:200]
    return response.reason_phrase or "no details"
