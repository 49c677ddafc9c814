"""The gateway's HTTP/1.1 server: one asyncio Protocol per connection on uvloop, httptools' parser, and
the Gateway ASGI app called directly.

    run(app, sock)                      serve on a bound socket until SIGINT/SIGTERM (one worker)
    serve_in_thread(app) -> Running     the same server in a thread, for tests (.url, .stop())

Why its own server: under load uvicorn's generic ASGI cycle (per-request header validation and copies,
default headers, a write for the head and another for the body) was a large share of the worker's CPU
per request; bench/README.md has the before and after. What it does: HTTP/1.1 keep-alive and
pipelining (one exchange at a time per connection, the next waits), request bodies by Content-Length
or chunked, `Expect: 100-continue`, responses framed by the app's Content-Length (head and body in one
write) or chunked, back-pressure both ways, an idle keep-alive timeout, a 400 for bytes that are not
HTTP, and a graceful stop that lets requests in flight finish. Not: HTTP/2, websockets or TLS
(terminate TLS in front of the gateway, docs/gateway.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Self
from urllib.parse import unquote

import httptools
import uvloop

log = logging.getLogger(__name__)
App = Callable[[dict[str, Any], Any, Any], Coroutine[Any, Any, None]]

IDLE_SECONDS = 5.0  # a keep-alive connection with no request for this long is closed
GRACE_SECONDS = 30.0  # how long a stop waits for requests in flight (streams) before cancelling them
BODY_HIGH_WATER = 256 * 1024  # request bytes buffered before the socket stops being read
STATUS = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in http.HTTPStatus}
DISCONNECT = {"type": "http.disconnect"}
_date: list[Any] = [0, b""]  # the second and its `date` line


def status_line(status: int) -> bytes:
    return STATUS.get(status) or b"HTTP/1.1 %d Status %d\r\n" % (status, status)


def date_line() -> bytes:
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    line: bytes = _date[1]
    return line


def plain_response(status: int, message: str) -> bytes:
    body = message.encode()
    return (status_line(status) + date_line() + b"content-type: text/plain; charset=utf-8\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body)


class Exchange:
    """One request and its response on a connection: the ASGI receive and send of one app call."""

    __slots__ = (
        "buffered",
        "chunked",
        "chunks",
        "conn",
        "delivered",
        "expect_continue",
        "finished",
        "gone",
        "head_only",
        "head_sent",
        "keep_alive",
        "more",
        "response_headers",
        "scope",
        "status",
        "waiter",
    )

    def __init__(self, conn: Connection, scope: dict[str, Any], keep_alive: bool, expect_continue: bool) -> None:
        self.conn, self.scope, self.keep_alive = conn, scope, keep_alive
        self.expect_continue = expect_continue
        self.head_only = scope["method"] == "HEAD"
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.more = True  # request body still arriving
        self.delivered = False  # the app has had the whole body
        self.gone = False  # the client closed the connection
        self.finished = False  # the whole response is written
        self.head_sent = self.chunked = False
        self.status = 500
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.waiter: asyncio.Future[None] | None = None

    # -- from the parser ----------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        self.wake()

    def complete(self) -> None:
        self.more = False
        self.wake()

    def disconnected(self) -> None:
        self.gone = True
        self.wake()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = self.conn.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    # -- ASGI ---------------------------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if self.delivered:  # after the body: block until the client leaves or the response is done
            while not self.gone and not self.finished:
                await self.wait()
            return DISCONNECT
        if self.expect_continue and not self.gone:
            self.expect_continue = False
            self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self.chunks and self.more and not self.gone:
            await self.wait()
        if self.gone and self.more:
            return DISCONNECT
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        self.conn.resume_reading()
        self.delivered = not self.more
        return {"type": "http.request", "body": body, "more_body": self.more}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.head_sent:
                raise RuntimeError("http.response.start sent twice")
            self.status, self.response_headers = message["status"], message.get("headers") or []
            return
        if kind != "http.response.body" or self.finished:
            return
        body, more = message.get("body", b""), message.get("more_body", False)
        if self.gone:  # as uvicorn: writes to a client that left are dropped (the app's watcher notices)
            if not more:
                self.finish()
            return
        conn = self.conn
        if not self.head_sent:
            out = self.head(body, more)
            if body and not self.head_only:
                out += b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body
        elif body and not self.head_only:
            out = b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body
        else:
            out = b""
        if not more and self.chunked and not self.head_only:
            out += b"0\r\n\r\n"
        if out:
            conn.write(out)
        if not more:
            self.finish()
        elif conn.writing_paused:
            await conn.drained()

    def head(self, body: bytes, more: bool) -> bytes:
        self.head_sent = True
        lines = [status_line(self.status)]
        framed = has_date = False
        for name, value in self.response_headers:
            lowered = name.lower()
            if lowered == b"content-length" or lowered == b"transfer-encoding":
                framed = True
            elif lowered == b"date":
                has_date = True
            elif lowered == b"connection":
                continue
            lines.append(b"%s: %s\r\n" % (name, value))
        if not has_date:
            lines.append(date_line())
        if not framed:
            if not more:
                lines.append(b"content-length: %d\r\n" % len(body))
            elif self.scope["http_version"] == "1.1":
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False  # HTTP/1.0 without a length: the close ends the body
        if self.more:  # the app answered before reading the whole body: the connection can't be reused
            self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def finish(self) -> None:
        self.finished = True
        self.wake()
        self.conn.exchange_done(self)

    # -- the app call -------------------------------------------------------------------------------------

    async def run(self, app: App) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("the gateway app failed on %s %s", self.scope["method"], self.scope["path"])
            self.abort(b'{"error":{"message":"The gateway failed on this request; see its log.",'
                       b'"type":"server_error"}}')
        except asyncio.CancelledError:
            self.abort(b'{"error":{"message":"The gateway is stopping; retry.","type":"server_error"}}')
            raise
        else:
            if not self.finished:
                self.abort(b'{"error":{"message":"The gateway gave no answer.","type":"server_error"}}')

    def abort(self, body: bytes) -> None:
        if self.finished or self.gone:
            return
        if self.head_sent:  # half an answer: only closing tells the client it is incomplete
            self.finished = True
            self.conn.close()
            return
        self.keep_alive = False
        self.status, self.response_headers = 500, [(b"content-type", b"application/json")]
        self.conn.write(self.head(body, False) + body)
        self.finish()


class Connection(asyncio.Protocol):
    """One client connection: parse requests as bytes arrive and run one Exchange at a time."""

    def __init__(self, app: App, state: ServerState) -> None:
        self.app, self.state = app, state
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.parsing: Exchange | None = None  # the exchange whose request is arriving
        self.active: Exchange | None = None  # the exchange the app is answering
        self.waiting: deque[Exchange] = deque()  # pipelined requests
        self.server_addr: tuple[str, int] | None = None
        self.client_addr: tuple[str, int] | None = None
        self.idle: asyncio.TimerHandle | None = None
        self.writing_paused = self.reading_paused = self.closed = False
        self.drain_waiters: list[asyncio.Future[None]] = []

    # -- transport events ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport subclasses
        self.server_addr = _address(transport.get_extra_info("sockname"))
        self.client_addr = _address(transport.get_extra_info("peername"))
        self.state.connections.add(self)
        self.arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        self.disarm_idle()
        for exchange in (self.parsing, self.active, *self.waiting):
            if exchange is not None:
                exchange.disconnected()
        self.waiting.clear()
        self.release_drain_waiters()

    def data_received(self, data: bytes) -> None:
        self.disarm_idle()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.refuse(400, "Protocol upgrades are not supported by the gateway.")
        except httptools.HttpParserError as exc:
            self.refuse(400, f"Malformed HTTP request: {exc}.")
        else:
            if self.active is None and self.parsing is None:
                self.arm_idle()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.release_drain_waiters()

    # -- parser callbacks ---------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": parser.get_http_version(), "scheme": "http", "method": parser.get_method().decode(),
                 "path": path, "raw_path": raw_path, "root_path": "", "query_string": parsed.query or b"",
                 "headers": self.headers, "server": self.server_addr, "client": self.client_addr}
        expect = any(n == b"expect" and v.lower() == b"100-continue" for n, v in self.headers)
        # llhttp forgets should_keep_alive() once the message is complete: ask now.
        exchange = Exchange(self, scope, parser.should_keep_alive(), expect)
        self.parsing = exchange
        if self.active is None:
            self.start(exchange)
        else:
            self.waiting.append(exchange)
            self.pause_reading()  # one pipelined request at a time is enough

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is not None and not exchange.finished:
            exchange.feed(body)
            if exchange.buffered > BODY_HIGH_WATER:
                self.pause_reading()

    def on_message_complete(self) -> None:
        if self.parsing is not None:
            self.parsing.complete()
            self.parsing = None

    # -- exchanges ----------------------------------------------------------------------------------------

    def start(self, exchange: Exchange) -> None:
        self.active = exchange
        task = self.loop.create_task(exchange.run(self.app))
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    def exchange_done(self, exchange: Exchange) -> None:
        if exchange is not self.active:
            return
        self.active = None
        if not exchange.keep_alive or self.state.stopping:
            self.close()
            return
        if self.waiting:
            self.start(self.waiting.popleft())
        elif self.parsing is None:
            self.arm_idle()
        self.resume_reading()

    # -- helpers ------------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def drained(self) -> None:
        if not self.writing_paused or self.closed:
            return
        waiter = self.loop.create_future()
        self.drain_waiters.append(waiter)
        await waiter

    def release_drain_waiters(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed and self.transport is not None and not self.waiting:
            self.reading_paused = False
            self.transport.resume_reading()

    def refuse(self, status: int, message: str) -> None:
        if self.active is None or not self.active.head_sent:
            self.write(plain_response(status, message))
        self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def close_if_idle(self) -> None:
        if self.active is None and self.parsing is None:
            self.close()

    def arm_idle(self) -> None:
        self.disarm_idle()
        self.idle = self.loop.call_later(IDLE_SECONDS, self.close_if_idle)

    def disarm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None


def _address(value: Any) -> tuple[str, int] | None:
    return (str(value[0]), int(value[1])) if isinstance(value, tuple) and len(value) >= 2 else None


@dataclass
class ServerState:
    connections: set[Connection]
    tasks: set[asyncio.Task[None]]
    stopping: bool = False


class Lifespan:
    """The app's ASGI lifespan: startup before the socket is served, shutdown after the last request."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def send(self, message: dict[str, Any]) -> None:
        await self.outbox.put(message)

    async def step(self, phase: str) -> None:
        if self.task is None:
            scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
            self.task = asyncio.get_running_loop().create_task(self.app(scope, self.inbox.get, self.send))
        await self.inbox.put({"type": f"lifespan.{phase}"})
        getter = asyncio.ensure_future(self.outbox.get())
        done, _ = await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            self.task.result()  # raises what the app raised
            raise RuntimeError(f"the app ended its lifespan during {phase}")
        reply = getter.result()
        if reply["type"] != f"lifespan.{phase}.complete":
            raise RuntimeError(f"lifespan {phase} failed: {reply.get('message', reply['type'])}")


class Server:
    """Serve `app` on a bound, listening-ready socket until `stop()`."""

    def __init__(self, app: App, sock: socket.socket, *, lifespan: bool = True, grace: float = GRACE_SECONDS) -> None:
        self.app, self.sock, self.lifespan, self.grace = app, sock, lifespan, grace
        self.state = ServerState(set(), set())
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._force = False

    async def serve(self, *, signals: bool = False) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        life = Lifespan(self.app) if self.lifespan else None
        if life is not None:
            await life.step("startup")
        server = await self.loop.create_server(lambda: Connection(self.app, self.state), sock=self.sock, backlog=4096)
        if signals:  # the first Ctrl-C stops gracefully, a second one stops now
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(signum, self._signalled)
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            self.state.stopping = True
            server.close()
            for conn in list(self.state.connections):
                conn.close_if_idle()
            deadline = self.loop.time() + self.grace
            while self.state.tasks and not self._force and self.loop.time() < deadline:
                await asyncio.sleep(0.05)
            pending = set(self.state.tasks)
            for task in pending:
                task.cancel()  # the gateway meters what a cancelled stream relayed
            if pending:
                await asyncio.wait(pending, timeout=5)
            for conn in list(self.state.connections):
                conn.close()
            if life is not None:
                await life.step("shutdown")

    def _signalled(self) -> None:
        assert self._stop is not None
        if self._stop.is_set():
            self._force = True
        self._stop.set()

    def stop(self) -> None:
        """Stop serving (from any thread): requests in flight finish, then the lifespan shuts down."""
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def run(app: App, sock: socket.socket) -> None:
    """Serve on `sock` in this process until SIGINT or SIGTERM (then finish what is in flight)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(Server(app, sock).serve(signals=True))


@dataclass
class Running:
    url: str
    server: Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=GRACE_SECONDS + 10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(app: App, host: str = "127.0.0.1", port: int = 0, *, lifespan: bool = False,
                    grace: float = 5.0) -> Running:
    """Run the server in a background thread (its own uvloop loop) and return once it accepts requests."""
    sock = listen(host, port)
    server = Server(app, sock, lifespan=lifespan, grace=grace)

    def main() -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(server.serve())
        with contextlib.suppress(OSError):
            sock.close()

    thread = threading.Thread(target=main, name="gateway-server", daemon=True)
    thread.start()
    if not server.started.wait(10):
        raise RuntimeError(f"the gateway server on {host}:{sock.getsockname()[1]} did not start")
    return Running(f"http://{host}:{sock.getsockname()[1]}", server, thread)
