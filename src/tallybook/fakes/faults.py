"""Fault injection shared by the fake servers, driven over HTTP so a CLI under test can meet it.

    POST   /_fake/faults    a JSON list of faults (appended)
    DELETE /_fake/faults    clear all faults and the request log
    GET    /_fake/requests  the requests served so far: [{"method", "path", "query", "status", "at"}]

A fault: {"path": "/v1/organization/usage/completions" (prefix match; "" for all),
          "kind": "status" | "malformed_json" | "delay" | "null_field" | "extra_field",
          "status": 429, "retry_after": "2", "times": 3 (how many matching requests it hits; -1 = forever),
          "seconds": 1.5 (delay), "field": "model" (null_field / extra_field name), "value": ... (extra_field)}

`status` answers with the provider's own error envelope (passed in by the fake);
`null_field` / `extra_field` edit the first result of the first non-empty bucket.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ErrorBody = Callable[[int, str], dict[str, Any]]


class FaultInjector:
    def __init__(self, error_body: ErrorBody) -> None:
        self.error_body = error_body
        self.faults: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, *faults: dict[str, Any]) -> None:
        with self._lock:
            self.faults.extend(dict(f) for f in faults)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def take(self, path: str) -> dict[str, Any] | None:
        """The first live fault matching `path`, with its count used once."""
        with self._lock:
            for fault in self.faults:
                if not path.startswith(fault.get("path", "")):
                    continue
                times = fault.get("times", 1)
                if times == 0:
                    continue
                if times > 0:
                    fault["times"] = times - 1
                return fault
        return None

    def log(self, request: Request, status: int) -> None:
        with self._lock:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "query": str(request.url.query),
                    "status": status,
                    "at": time.time(),
                }
            )

    def before(self, request: Request) -> Response | None:
        """Apply a status/delay/malformed fault; returns a response to send instead, or None."""
        fault = self.take(request.url.path)
        request.state.fault = fault
        if fault is None:
            return None
        kind = fault.get("kind", "status")
        if kind == "delay":
            time.sleep(float(fault.get("seconds", 1)))
            return None
        if kind == "status":
            status = int(fault.get("status", 500))
            headers = {"retry-after": str(fault["retry_after"])} if "retry_after" in fault else {}
            message = fault.get("message") or f"Injected fault: HTTP {status}"
            return JSONResponse(self.error_body(status, message), status_code=status, headers=headers)
        if kind == "malformed_json":
            return Response('{"object": "page", "data": [', media_type="application/json")
        return None

    def after(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """Apply a data fault (null_field / extra_field) to a successful JSON body."""
        fault = getattr(request.state, "fault", None)
        if not fault or fault.get("kind") not in ("null_field", "extra_field"):
            return body
        for bucket in body.get("data", []):
            results = bucket.get("results") if isinstance(bucket, dict) else None
            if results:
                if fault["kind"] == "null_field":
                    results[0][fault["field"]] = None
                else:
                    results[0][fault["field"]] = fault.get("value", "surprise")
                break
        return body

    def routes(self) -> list[Route]:
        async def post_faults(request: Request) -> Response:
            payload = await request.json()
            self.add(*(payload if isinstance(payload, list) else [payload]))
            return JSONResponse({"faults": len(self.faults)})

        async def delete_faults(request: Request) -> Response:
            self.clear()
            return JSONResponse({"faults": 0})

        async def get_requests(request: Request) -> Response:
            return Response(json.dumps(self.requests), media_type="application/json")

        return [
            Route("/_fake/faults", post_faults, methods=["POST"]),
            Route("/_fake/faults", delete_faults, methods=["DELETE"]),
            Route("/_fake/requests", get_requests, methods=["GET"]),
        ]
