"""The two ends of bench/gateway_bench.py, each run as its own process: a fast mock OpenAI upstream and
an open-loop load generator, both on uvloop + httptools (so neither is the bottleneck), and the floor
of any Python relay: the least a Python process can do in the middle.

    python bench/gateway_load.py upstream --port 9000
    python bench/gateway_load.py relay --port 9001 --url http://127.0.0.1:9000
    python bench/gateway_load.py load --url http://127.0.0.1:9000 --rate 500 --seconds 10 [--stream] [--key K]
    python bench/gateway_load.py max --url http://127.0.0.1:9000 --connections 32 --seconds 5

`load` sends at a fixed arrival rate (open loop: a request starts on time whether or not earlier ones
have finished; a new connection is opened when none is idle) and prints one JSON line: latencies
(seconds, send to last byte), errors and the rate achieved. `max` runs closed-loop connections flat out
and prints requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

import httptools
import uvloop

USAGE = {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23,
         "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}
COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1764000000, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello, ledger! Every token counted.",
                                         "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
    "usage": USAGE, "service_tier": "default", "system_fingerprint": "fp_bench"}, separators=(",", ":")).encode()
JSON_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_bench\r\n"
             b"openai-processing-ms: 1\r\ncontent-length: %d\r\n\r\n" % len(COMPLETION))
STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\nx-request-id: req_bench\r\n"
               b"transfer-encoding: chunked\r\n\r\n")


def _chunk(delta: dict, finish: str | None = None, usage: bool = False) -> bytes:
    data = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1764000000,
            "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if usage:
        data["usage"] = None
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _stream(include_usage: bool) -> bytes:
    events = [_chunk({"role": "assistant", "content": ""}, usage=include_usage)]
    events += [_chunk({"content": word}, usage=include_usage) for word in ("Hello, ", "ledger! ", "Every token counted.")]
    events.append(_chunk({}, "stop", usage=include_usage))
    if include_usage:
        events.append(b"data: " + json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1764000000,
            "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_bench", "choices": [], "usage": USAGE},
            separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    framed = [b"%x\r\n%s\r\n" % (len(e), e) for e in events]  # one HTTP chunk per event
    return STREAM_HEAD + b"".join(framed) + b"0\r\n\r\n"


JSON_ANSWER = JSON_HEAD + COMPLETION
STREAM_ANSWERS = {False: _stream(False), True: _stream(True)}


class UpstreamProtocol(asyncio.Protocol):
    """A fixed chat completion (or its stream) for every request; keep-alive."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()  # type: ignore[attr-defined]

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        self.body = []
        if b'"stream":true' in body or b'"stream": true' in body:
            answer = STREAM_ANSWERS[b'"include_usage":true' in body or b'"include_usage": true' in body]
        else:
            answer = JSON_ANSWER
        self.transport.write(answer)  # type: ignore[attr-defined]


async def serve_upstream(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, "127.0.0.1", port, backlog=2048)
    print("ready", flush=True)
    await server.serve_forever()


# --- the floor of a Python relay -----------------------------------------------------------------------

class RelayUpstream(asyncio.Protocol):
    """The relay's own keep-alive connection to the upstream: answer bytes go to the client as they come."""

    def __init__(self, client: RelayProtocol) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.client.transport.is_closing():  # type: ignore[attr-defined]
            self.client.transport.write(data)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


class RelayProtocol(asyncio.Protocol):
    """A client connection of `relay`: each request, once whole (httptools), is written to this connection's
    own upstream connection, and the answer's bytes are written back unparsed. No routing, keys, metering
    or headers: what is left is what any Python relay on uvloop pays (two wake-ups, reads and writes)."""

    upstream_address: tuple[str, int] = ("127.0.0.1", 80)

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.parts: list[bytes] = []
        self.pending: list[bytes] = []
        self.upstream: RelayUpstream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        asyncio.ensure_future(self.connect())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, self.upstream = await loop.create_connection(lambda: RelayUpstream(self), *self.upstream_address)
        except OSError:
            self.transport.close()
            return
        for request in self.pending:
            self.upstream.transport.write(request)  # type: ignore[attr-defined]
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        self.parts.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        request = b"".join(self.parts)
        self.parts = []
        if self.upstream is None:
            self.pending.append(request)
        else:
            self.upstream.transport.write(request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.transport.close()  # type: ignore[attr-defined]


async def serve_relay(port: int, upstream: str) -> None:
    parts = urlsplit(upstream)
    RelayProtocol.upstream_address = (parts.hostname or "127.0.0.1", parts.port or 80)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(RelayProtocol, "127.0.0.1", port, backlog=2048)
    print("ready", flush=True)
    await server.serve_forever()


# --- the client ---------------------------------------------------------------------------------------

class ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))


class Client:
    def __init__(self, url: str, key: str, stream: bool) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the ledger."}],
                           "max_tokens": 64, **({"stream": True} if stream else {})},
                          separators=(",", ":")).encode()
        self.request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\n"
                        b"authorization: Bearer %s\r\nx-tallybook-customer: bench\r\ncontent-length: %d\r\n\r\n%s"
                        % (self.host.encode(), self.port, key.encode(), len(body), body))
        self.idle: list[ClientProtocol] = []
        self.loop = asyncio.get_running_loop()

    async def one(self) -> int:
        conn = None
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                break
            conn = None
        if conn is None:
            _, conn = await self.loop.create_connection(ClientProtocol, self.host, self.port)
        conn.waiter = self.loop.create_future()
        conn.transport.write(self.request)  # type: ignore[attr-defined]
        status = await conn.waiter
        conn.waiter = None
        if conn.parser.should_keep_alive():
            self.idle.append(conn)
        else:
            conn.transport.close()  # type: ignore[attr-defined]
        return status


async def open_loop(url: str, key: str, rate: float, seconds: float, stream: bool, warmup: float) -> dict:
    client = Client(url, key, stream)
    latencies: list[float] = []
    errors: list[str] = []

    async def timed(record: bool) -> None:
        started = time.perf_counter()
        try:
            status = await client.one()
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(type(exc).__name__)
            return
        if status != 200:
            errors.append(str(status))
        elif record:
            latencies.append(time.perf_counter() - started)

    tasks = set()
    sent: dict[asyncio.Future[None], float] = {}
    for phase, length in (("warmup", warmup), ("measure", seconds)):
        count = int(rate * length)
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(timed(phase == "measure"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if phase == "measure":
                sent[task] = time.perf_counter()
        if phase == "measure":
            achieved = count / (time.perf_counter() - start)
    # A path that cannot keep up would make us wait for its whole backlog: give it `seconds` more, then
    # count what is still unanswered as answered now (so its percentiles are a floor) and as timeouts.
    if tasks:
        await asyncio.wait(tasks, timeout=seconds)
    now = time.perf_counter()
    late = [task for task in tasks if not task.done()]
    for task in late:
        latencies.append(now - sent.get(task, now))
        errors.append("timeout")
        task.cancel()
    return {"latencies": latencies, "errors": errors, "rate": achieved, "unanswered": len(late)}


async def closed_loop(url: str, key: str, connections: int, seconds: float, stream: bool) -> dict:
    client = Client(url, key, stream)
    done = 0
    errors = 0
    stop = time.perf_counter() + seconds + 1

    async def worker() -> None:
        nonlocal done, errors
        while time.perf_counter() < stop:
            try:
                status = await client.one()
            except Exception:  # noqa: BLE001
                errors += 1
                continue
            if time.perf_counter() > stop - seconds:  # the first second warms up
                done += 1
            errors += status != 200

    await asyncio.gather(*(worker() for _ in range(connections)))
    return {"rps": done / seconds, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("upstream", "relay", "load", "max"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--url", default="")
    parser.add_argument("--key", default="sk-bench")
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    if args.what == "upstream":
        try:
            uvloop.run(serve_upstream(args.port))
        except KeyboardInterrupt:  # the bench stops us with SIGINT
            pass
    elif args.what == "relay":
        try:
            uvloop.run(serve_relay(args.port, args.url))
        except KeyboardInterrupt:
            pass
    elif args.what == "load":
        result = uvloop.run(open_loop(args.url, args.key, args.rate, args.seconds, args.stream, args.warmup))
        json.dump(result, sys.stdout)
    else:
        json.dump(uvloop.run(closed_loop(args.url, args.key, args.connections, args.seconds, args.stream)), sys.stdout)


if __name__ == "__main__":
    main()
