"""The gateway's HTTP/1.1 client for the upstream hop: keep-alive pools on asyncio Protocols, responses
parsed by httptools (llhttp), bodies handed over exactly as they arrive.

    client = HttpClient(timeout=300, connect_timeout=10)
    response = await client.send("POST", "https://api.openai.com/v1/chat/completions", headers, body)
    response.status, response.headers       # headers: [(lower-case name, value)] as the upstream sent them
    body = await response.read()            # or: async for chunk in response.chunks(): ...
    response.close()                        # the connection goes back to the pool only if the answer was whole
    await client.aclose()

Why not httpx: the upstream hop is on every request's path, and httpx + h11 cost ~0.3-0.5 ms a
request in pure Python; this costs a few tens of microseconds (bench/README.md). What it does:
  - one pool per origin, idle connections reused LIFO and dropped after `keepalive_expiry` or as soon
    as the upstream closes them (the loop reads idle sockets, so a closed one is noticed at once);
  - TLS with the system's (or certifi's) roots, SNI and hostname checks;
  - `timeout` bounds each wait for the upstream (the answer's head, then every next piece of the
    body), as httpx's read timeout does; `connect_timeout` the TCP and TLS handshake;
  - Content-Length, chunked (de-chunked as httpx's `aiter_raw` does) and close-delimited bodies;
  - a request is sent once, never again (a POST may have reached the provider); any failure is an
    UpstreamError, a timeout an UpstreamTimeout;
  - back-pressure: reading pauses while more than `HIGH_WATER` bytes of a body wait for the reader.
No redirects, proxies, cookies or content decoding (the gateway asks for `accept-encoding: identity`).

Tests may pass any object with `send(method, url, headers, body)` returning a Response-like object
(`status`, `headers`, `header()`, `read()`, `chunks()`, `close()`) as an Upstream's `client`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 1 << 20  # body bytes buffered for a slow reader before reading from the upstream pauses


class UpstreamError(Exception):
    """The upstream could not be reached, or broke off its answer."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer (or send the next piece of its answer) within the timeout."""


def _ssl_context() -> ssl.SSLContext:
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses its answer, wakes the one waiting reader."""

    __slots__ = (
        "buffered",
        "chunks",
        "closed",
        "complete",
        "error",
        "framed",
        "headers",
        "headers_done",
        "idle_since",
        "keep_alive",
        "parser",
        "paused",
        "pool",
        "status",
        "transport",
        "waiter",
    )

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None
        self.headers_done = self.complete = self.paused = self.keep_alive = False
        self.framed = False  # Content-Length or chunked: the end is in the stream, not at EOF
        self.error: BaseException | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the upstream sent a malformed answer ({exc})"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.complete:
            return
        if self.headers_done and not self.framed and exc is None:
            self.on_message_complete()  # a close-delimited body ends with the connection
        else:
            self._fail(UpstreamError("the upstream closed the connection" if exc is None else
                                     f"the connection to the upstream broke ({type(exc).__name__})"))

    # -- httptools callbacks ---------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers = []
            self.framed = False
            return
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message is complete
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status and self.status < 200:
            return
        self.complete = True
        self._wake()

    # -- the reader's side -----------------------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Wait for the next thing to happen on the connection, at most `timeout` seconds."""
        loop = self.pool.loop
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def take(self) -> bytes:
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self.paused and self.buffered <= HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data


@functools.lru_cache(maxsize=1024)
def _split(url: str) -> tuple[str, str, int, bytes]:
    """An upstream URL's scheme, host, port and request target (urlsplit is ~5 us; few URLs recur)."""
    parts = urlsplit(url)
    scheme = parts.scheme or "http"
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80), target.encode()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("the upstream did not answer in time"))


class Response:
    """An upstream's answer: status and headers at once, the body as it arrives."""

    __slots__ = ("_conn", "_done", "_timeout", "headers", "status")

    def __init__(self, conn: _Connection, timeout: float) -> None:
        self._conn, self._timeout, self._done = conn, timeout, False
        self.status = conn.status
        self.headers = conn.headers

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (chunked framing removed, nothing else changed)."""
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
                continue
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                return
            await conn.wait(self._timeout)

    async def read(self) -> bytes:
        """The whole body (`chunks` joined, without an async generator's cost per request)."""
        conn, parts = self._conn, []
        while True:
            while conn.chunks:
                parts.append(conn.take())
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            await conn.wait(self._timeout)

    def interrupt(self, error: BaseException) -> None:
        """Break off the answer: the reader gets `error`, the connection is closed (the upstream stops)."""
        if not self._done:
            self._conn._fail(error)

    def close(self) -> None:
        """Give the connection back to the pool if the answer was read whole and it may be reused."""
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and not conn.chunks and conn.error is None and conn.keep_alive:
            conn.pool.release(conn)
        else:
            conn.pool.discard(conn)


class _Pool:
    """Idle keep-alive connections to one origin."""

    def __init__(self, scheme: str, host: str, port: int, client: HttpClient) -> None:
        self.host, self.port, self.client = host, port, client
        self.tls = scheme == "https"
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        default = 443 if self.tls else 80
        self.host_header = (host if port == default else f"{host}:{port}").encode("idna")

    async def connect(self) -> _Connection:
        kwargs: dict[str, Any] = {}
        if self.tls:
            kwargs = {"ssl": self.client.ssl_context(), "server_hostname": self.host}
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self), self.host, self.port, **kwargs),
                self.client.connect_timeout)
        except TimeoutError:
            raise UpstreamTimeout(f"connecting to {self.host}:{self.port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port} ({type(exc).__name__}: {exc})") from None
        return conn

    def acquire_idle(self) -> _Connection | None:
        expiry = time.monotonic() - self.client.keepalive_expiry
        while self.idle:
            conn = self.idle.pop()
            if conn.closed or conn.idle_since < expiry:
                if conn.transport is not None:
                    conn.transport.close()
                continue
            return conn
        return None

    def release(self, conn: _Connection) -> None:
        self.busy.discard(conn)
        if conn.closed or len(self.idle) >= self.client.max_idle:
            if conn.transport is not None:
                conn.transport.close()
            return
        conn._reset()
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def discard(self, conn: _Connection) -> None:
        self.busy.discard(conn)
        if conn.transport is not None:
            conn.transport.abort()

    def forget(self, conn: _Connection) -> None:
        """The connection closed by itself: never hand it out again."""
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        for conn in [*self.idle, *self.busy]:
            if conn.transport is not None:
                conn.transport.abort()
        self.idle.clear()
        self.busy.clear()


class HttpClient:
    """Keep-alive HTTP/1.1 pools, one per origin, on the running event loop."""

    def __init__(self, *, timeout: float = 300.0, connect_timeout: float = 10.0, keepalive_expiry: float = 30.0,
                 max_idle: int = 256, ssl_context: ssl.SSLContext | None = None) -> None:
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.keepalive_expiry, self.max_idle = keepalive_expiry, max_idle
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._ssl = ssl_context  # None: the system's (certifi's) roots, made on first use

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = _ssl_context()
        return self._ssl

    def _pool(self, scheme: str, host: str, port: int) -> _Pool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None or pool.loop is not asyncio.get_running_loop():
            pool = self._pools[key] = _Pool(scheme, host, port, self)
        return pool

    async def send(self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> Response:
        """Send the request and return once the answer's status and headers are in.

        `headers` go as given (the caller leaves out host, content-length and hop-by-hop ones)."""
        scheme, host, port, target = _split(url)
        pool = self._pool(scheme, host, port)
        lines = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), target, pool.host_header)]
        lines += [name + b": " + value + b"\r\n" for name, value in headers]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        head = b"".join(lines)
        conn = pool.acquire_idle() or await pool.connect()
        pool.busy.add(conn)
        try:
            assert conn.transport is not None
            if len(body) < 65536:
                conn.transport.write(head + body)
            else:
                conn.transport.write(head)
                conn.transport.write(body)
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(self.timeout)
        except BaseException:
            pool.discard(conn)
            raise
        return Response(conn, self.timeout)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
