"""The gateway as a pure ASGI app: route, authenticate, admit, forward, meter, answer.

    create_app(keys=, limits=, spool=, upstreams=, settings=) -> Gateway

One request, in order (each step answers in the provider's own error envelope when it refuses):
  1. route         (method, path) -> endpoint and API shape; /healthz, /readyz, /metrics besides
  2. authenticate  the virtual key from `Authorization: Bearer`, `x-api-key` or `X-Tallybook-Key`   401
  3. read          the body, at most TALLYBOOK_GATEWAY_MAX_BODY_BYTES                                 413
  4. parse         a JSON object                                                                       400
  5. choose        the provider (X-LLM-Provider, else the model's name) and its upstream               404
  6. admit         rate limit (in memory) and budget reservation (no I/O for keys without one)       429
  7. forward       headers and body untouched, but for credentials and stream_options.include_usage
  8. answer        non-stream: meter, make the event durable, then send the body;
                   stream: relay chunk by chunk, make the event durable before the terminal event
Upstream failures are 502 (connection) or 504 (timeout). No database round trip on this path: keys
come from the KeyCache (refreshed in a worker thread), events go to the Spool.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any

from tallybook.config import Settings
from tallybook.gateway.events import Usage, UsageEvent, new_event_id, utcnow
from tallybook.gateway.keys import PREFIX, KeyCache, key_hint
from tallybook.gateway.limits import BudgetExceeded
from tallybook.gateway.metering import Meter, estimate_usage
from tallybook.gateway.metrics import Metrics
from tallybook.gateway.providers.base import StreamTracker, Upstream, Upstreams
from tallybook.gateway.routing import (
    ROUTES,
    Call,
    ClientGone,
    Route,
    RouteError,
    choose_provider,
    error_response,
    header_text,
    json_object,
    output_cap,
    parse_body,
    request_model,
    with_stream_usage,
)
from tallybook.gateway.tracing import Tracing
from tallybook.gateway.upstream import Response, UpstreamError, UpstreamTimeout

log = logging.getLogger(__name__)
Scope = dict[str, Any]
# Headers the gateway owns on the way up: credentials, routing, attribution and framing.
DROP_UP = frozenset({b"host", b"content-length", b"authorization", b"x-api-key", b"connection", b"keep-alive",
                     b"transfer-encoding", b"te", b"upgrade", b"accept-encoding", b"x-llm-provider",
                     b"proxy-authorization", b"x-tallybook-key", b"x-tallybook-customer", b"x-tallybook-feature",
                     b"x-tallybook-business-unit", b"x-tallybook-tags"})
# ... and on the way down: framing, which the gateway's server sets for its own connection.
DROP_DOWN = frozenset({b"content-length", b"connection", b"keep-alive", b"transfer-encoding"})
JSON = (b"content-type", b"application/json")
Hook = Callable[[], Awaitable[None]]


class Gateway:
    def __init__(self, *, keys: KeyCache, limits: Any, spool: Any, upstreams: Upstreams, settings: Settings,
                 meter: Meter | None = None, metrics: Metrics | None = None, tracing: Tracing | None = None,
                 on_startup: Sequence[Hook] = (), on_shutdown: Sequence[Hook] = ()) -> None:
        self.keys, self.limits, self.spool, self.upstreams = keys, limits, spool, upstreams
        self.tracing = tracing  # None (the default): no span is built, OpenTelemetry is never imported
        self.on_startup, self.on_shutdown = list(on_startup), list(on_shutdown)
        self.max_body = settings.gateway_max_body_bytes
        self.passthrough = settings.gateway_passthrough_keys
        gpu = settings.gateway_gpu_hour_cost
        self.meter = meter or Meter(gpu_hour_cost=Decimal(gpu) if gpu else None)
        self.metrics = metrics or Metrics()
        self._refreshing = self._refresh_failed = False
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop serving us, for a clean shutdown

    async def aclose(self) -> None:
        """Close the upstreams' connection pools (the lifespan shutdown does this)."""
        await self.upstreams.aclose()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            route = ROUTES.get((scope["method"], scope["path"]))
            if route is not None:
                await self.proxy(route, scope, receive, send)
            else:
                await self.operations(scope, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.loop = asyncio.get_running_loop()
                    for hook in self.on_startup:
                        await hook()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    for hook in self.on_shutdown:  # e.g. close the spool, then stop the flusher
                        await hook()
                    await self.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    # -- operations ---------------------------------------------------------------------------------------

    async def operations(self, scope: Scope, send: Any) -> None:
        path = scope["path"]
        if path == "/healthz":
            await _respond(send, 200, b'{"status":"ok"}', [JSON])
        elif path == "/readyz":  # an upstream to send to, and a database that answered the last key refresh
            self._refresh_keys()
            ready = len(self.upstreams) > 0 and not self._refresh_failed
            body = b'{"status":"ready"}' if ready else b'{"status":"not ready"}'
            await _respond(send, 200 if ready else 503, body, [JSON])
        elif path == "/metrics":
            await _respond(send, 200, self.metrics.render(), [(b"content-type", self.metrics.content_type.encode())])
        else:
            message = f"No route {scope['method']} {path}; see docs/gateway.md for the gateway's paths."
            await _respond(send, 404, error_response("openai", 404, message), [JSON])

    def _refresh_keys(self) -> None:
        """Start a key refresh in a worker thread when the snapshot is stale; never wait for it."""
        if self._refreshing or not self.keys.stale():
            return
        self._refreshing = True

        def refresh() -> None:
            try:
                self.keys.refresh()
                self._refresh_failed = False
            except Exception:  # the database is away: keep serving the last snapshot
                self._refresh_failed = True
                log.exception("virtual key refresh failed; serving the previous snapshot")
            finally:
                self._refreshing = False

        asyncio.get_running_loop().run_in_executor(None, refresh)

    # -- the proxy ----------------------------------------------------------------------------------------

    async def proxy(self, route: Route, scope: Scope, receive: Any, send: Any) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        self._refresh_keys()
        call = Call(route, dict(scope["headers"]))
        try:
            provider_key = self.authenticate(call)
            raw = await self.read_body(call, receive) if route.has_body else b""
            if route.has_body:
                call.body = parse_body(raw)
            call.model = request_model(call.body)
            header = call.headers.get(b"x-llm-provider")
            call.provider = choose_provider(route, header.decode("latin-1") if header else None, call.model)
            assert call.key is not None
            upstream = self.upstreams.find(call.key.org_id, call.provider)
            if upstream is None:
                raise RouteError(404, f"No {call.provider} upstream is configured for this organisation; "
                                      f"add one with `tallybook providers add {call.provider}`.")
            url = upstream.url(route.endpoint)
            if url is None:
                raise RouteError(404, f"{call.provider} has no {route.endpoint} endpoint behind the gateway.")
            call.upstream, call.dialect = upstream, upstream.dialect(route.endpoint)
            await self.admit(call, len(raw))
        except ClientGone:
            return
        except RouteError as exc:
            await self.refuse(call, send, exc)
            return
        raw, strip = with_stream_usage(route, call.body, raw)
        up = [(k, v) for k, v in scope["headers"] if k not in DROP_UP and not k.startswith(b"x-tallybook-")]
        up += upstream.auth(provider_key or upstream.api_key)
        up.append((b"accept-encoding", b"identity"))  # usage must be readable from the bytes we relay
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        call.event_id = new_event_id(call.idem, scope=call.key.id)
        try:
            response = await upstream.client.send(scope["method"], url, up, raw)
        except UpstreamTimeout:
            await self.upstream_failed(call, send, 504, f"{call.provider} did not answer in time; try again.")
            return
        except (UpstreamError, OSError) as exc:
            await self.upstream_failed(call, send, 502, f"The gateway could not reach {call.provider}: "
                                                        f"{exc}. Try again shortly.")
            return
        down = [(k, v) for k, v in response.headers if k not in DROP_DOWN]
        down.append((b"x-tallybook-event-id", call.event_id.encode()))
        kind = response.header(b"content-type") or ""
        if response.status == 200 and ("event-stream" in kind or "ndjson" in kind):
            await self.relay_stream(call, response, down, strip, receive, send)
        else:
            await self.relay_body(call, response, down, send)

    def authenticate(self, call: Call) -> str | None:
        """Find the virtual key; return the client's provider key when pass-through applies."""
        headers = call.headers
        auth = headers.get(b"authorization", b"")
        given = auth[7:].strip() if auth[:7].lower() == b"bearer " else headers.get(b"x-api-key")
        explicit = headers.get(b"x-tallybook-key")
        secret = (explicit or given or b"").decode("latin-1").strip()
        if not secret:
            raise RouteError(401, "No virtual key: send it as `Authorization: Bearer tb-...` or `x-api-key: tb-...`"
                                  " (create one with `tallybook keys create`).")
        call.key = self.keys.authenticate(secret)
        if call.key is None:
            shown = key_hint(secret) if secret.startswith(PREFIX) else "that is not a tallybook key (tb-...)"
            raise RouteError(401, f"The virtual key {shown} is unknown or revoked; use an active key "
                                  "(`tallybook keys list`).")
        return given.decode("latin-1") if explicit and given and self.passthrough else None

    def too_big(self) -> RouteError:
        return RouteError(413, f"The request body is larger than the gateway's limit of {self.max_body:,} bytes "
                               "(TALLYBOOK_GATEWAY_MAX_BODY_BYTES).")

    async def read_body(self, call: Call, receive: Any) -> bytes:
        declared = call.headers.get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise self.too_big()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise self.too_big()
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def admit(self, call: Call, body_bytes: int) -> None:
        if self.limits is None:
            return
        key = call.key
        assert key is not None and call.dialect is not None
        call.estimate = body_bytes // 4 + output_cap(call.body)
        wait = self.limits.check_rate(key, call.estimate)
        if wait is not None:
            raise RouteError(429, f"Rate limit of virtual key {key.name} reached; retry in {math.ceil(wait)} s.",
                             headers=[(b"retry-after", str(max(math.ceil(wait), 1)).encode())])
        customer = header_text(call.headers, b"x-tallybook-customer") or key.customer
        if not self.limits.budgets_for(key, customer):
            return  # no budget: no upper bound to price, no reservation to settle
        bound = self.meter.upper_bound(call.provider, call.model, call.ts, call.body, call.dialect, body_bytes)
        try:
            call.reservation = await self.limits.reserve(key, customer, bound)
        except BudgetExceeded as exc:
            wait = max(math.ceil((exc.resets_at - utcnow()).total_seconds()), 1)
            raise RouteError(429, f"{exc}. Raise the budget (`tallybook keys update`) or wait until then.",
                             headers=[(b"retry-after", str(wait).encode())]) from None

    # -- answers ------------------------------------------------------------------------------------------

    async def relay_body(self, call: Call, response: Response, down: list[tuple[bytes, bytes]], send: Any) -> None:
        try:
            content = await response.read()
        except UpstreamTimeout:
            await self.upstream_failed(call, send, 504, f"{call.provider} stopped answering; try again.")
            return
        except UpstreamError as exc:
            await self.upstream_failed(call, send, 502, f"{call.provider} broke off its answer: {exc}.")
            return
        finally:
            response.close()
        status, usage = response.status, Usage()
        if status == 200 and call.dialect is not None:
            data = json_object(content)
            found = call.dialect.usage(data) if data is not None else None
            usage = found if found is not None else estimate_usage(call.dialect, call.body, None)
            if data is not None:
                call.model = call.dialect.model(data) or call.model
        event = await self.record(call, status, "ok" if status < 400 else "upstream_error", usage, False, response)
        down.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": down})
        await send({"type": "http.response.body", "body": content})
        await self.settle(call, event)

    async def relay_stream(self, call: Call, response: Response, down: list[tuple[bytes, bytes]],
                           strip: bool, receive: Any, send: Any) -> None:
        """Relay the stream as it comes; the event is durable before the terminal event is relayed.
        A watcher notices the client leaving and breaks off the upstream read (it stops costing)."""
        dialect = call.dialect
        assert dialect is not None
        tracker = StreamTracker(dialect, strip_usage=strip)
        event: UsageEvent | None = None
        outcome, gone = "ok", False

        async def finish(outcome: str) -> UsageEvent:
            usage = tracker.usage
            if outcome != "ok" or usage is None or not tracker.terminated:
                usage = estimate_usage(dialect, call.body, tracker)
            call.model = tracker.saw_model() or call.model
            return await self.record(call, 200, outcome, usage, True, response)

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            response.interrupt(ClientGone())

        watcher = asyncio.ensure_future(watch())
        interrupted: BaseException | None = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": down})
            async for chunk in response.chunks():
                now, held = tracker.feed(chunk)
                if now:
                    await send({"type": "http.response.body", "body": now, "more_body": True})
                if held:
                    event = await finish("ok")
                    await send({"type": "http.response.body", "body": held, "more_body": True})
        except UpstreamError:
            outcome = "upstream_error"
        except (ClientGone, OSError):  # the client went away (seen by the watcher, or while we wrote)
            gone = True
        except asyncio.CancelledError as exc:  # the server is stopping: meter what was relayed, then stop
            gone, interrupted = True, exc
        finally:
            watcher.cancel()
            response.close()
        if event is None:
            rest = tracker.flush()
            if gone:
                outcome = "cancelled"
            elif outcome == "ok" and not tracker.terminated:
                outcome = "upstream_error"  # the upstream ended the stream without finishing it
            event = await finish(outcome)
            if rest and not gone:
                await send({"type": "http.response.body", "body": rest, "more_body": True})
        if not gone:
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                pass
        await self.settle(call, event)
        if interrupted is not None:
            raise interrupted

    async def record(self, call: Call, status: int, outcome: str, usage: Usage, streamed: bool,
                     response: Response | None = None) -> UsageEvent:
        """Build the event and make it durable (before the answer's last byte; `settle` counts it after)."""
        assert call.key is not None
        request_id = None
        if response is not None:
            request_id = response.header(b"x-request-id") or response.header(b"request-id")
        event = self.meter.event(
            key=call.key, ts=call.ts, provider=call.provider, model=call.model, endpoint=call.route.endpoint,
            streamed=streamed, status=status, outcome=outcome, usage=usage,
            latency_ms=int((time.perf_counter() - call.started) * 1000), headers=call.headers,
            idempotency_key=call.idem, upstream_request_id=request_id,
            # Only a success takes the id derived from Idempotency-Key: a failed try must not shadow its retry.
            event_id=call.event_id if call.event_id and (outcome == "ok" or not call.idem) else new_event_id())
        await self.spool.append(event)
        return event

    def observe(self, call: Call, event: UsageEvent) -> None:
        self.metrics.observe(event)
        if self.tracing is not None:
            self.tracing.record(event, call.started, call.headers, call.body,
                                call.upstream.base_url if call.upstream is not None else None)

    async def settle(self, call: Call, event: UsageEvent) -> None:
        """After the answer: count the event (metrics, trace) and settle its rate limit and budget."""
        self.observe(call, event)
        if self.limits is None or call.key is None:
            return
        if call.key.tpm is not None:
            self.limits.record_tokens(call.key, event.usage.total_tokens, estimated=call.estimate)
        if call.reservation is not None:
            try:
                await self.limits.settle(call.reservation, event.list_cost)
            except Exception:
                log.exception("settling the budget reservation of event %s failed", event.event_id)

    async def refuse(self, call: Call, send: Any, exc: RouteError) -> None:
        """Answer a request the gateway will not forward; meter it when the key is known."""
        self.metrics.refused.labels(str(exc.status)).inc()
        event = None
        if call.key is not None:
            event = await self.record(call, exc.status, "rejected", Usage(), bool(call.body.get("stream")))
        await _respond(send, exc.status, error_response(call.route.shape, exc.status, exc.message),
                       [JSON, *exc.headers])
        if event is not None:
            self.observe(call, event)

    async def upstream_failed(self, call: Call, send: Any, status: int, message: str) -> None:
        event = await self.record(call, status, "upstream_error", Usage(), bool(call.body.get("stream")))
        await _respond(send, status, error_response(call.route.shape, status, message), [JSON])
        await self.settle(call, event)


def create_app(*, keys: KeyCache, limits: Any, spool: Any, upstreams: Upstreams | list[Upstream],
               settings: Settings, meter: Meter | None = None, metrics: Metrics | None = None,
               tracing: Tracing | None = None, on_startup: Sequence[Hook] = (),
               on_shutdown: Sequence[Hook] = ()) -> Gateway:
    """The gateway ASGI app. `limits` may be None (no rate limits or budgets); `spool` needs only
    `async append(event)`; `tracing` (gateway.tracing) emits OpenTelemetry spans; the hooks run at
    lifespan startup and shutdown."""
    if not isinstance(upstreams, Upstreams):
        upstreams = Upstreams(upstreams)
    return Gateway(keys=keys, limits=limits, spool=spool, upstreams=upstreams, settings=settings, meter=meter,
                   metrics=metrics, tracing=tracing, on_startup=on_startup, on_shutdown=on_shutdown)


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
