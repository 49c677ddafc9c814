"""The gateway's own HTTP/1.1 server (gateway/server.py), spoken to over real sockets: keep-alive,
pipelining, chunked bodies both ways, 100-continue, bad bytes, app failures, disconnects, back-pressure,
idle timeouts, lifespan and a graceful stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tallybook.gateway import server as server_module
from tallybook.gateway import workers
from tallybook.gateway.server import Running, serve_in_thread
from tests.gateway.gateway_process import free_port


class EchoApp:
    """/echo answers the body's length and sha of what arrived; /stream sends N chunks; /fail raises;
    /slow waits for `release`; /watch records whether the client left."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.disconnects: list[str] = []
        self.lifespan: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.lifespan.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        path = scope["path"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if path == "/fail":
            raise ValueError("boom")
        if path == "/stream":
            count = int(scope["query_string"] or b"3")
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for n in range(count):
                await send({"type": "http.response.body", "body": b"chunk %d;" % n, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if path == "/big":
            block = b"x" * 65536
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(80):  # 5 MiB: more than any socket buffer, so the server must wait to write
                await send({"type": "http.response.body", "body": block, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/slow":
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 10)
        if path == "/watch":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first;", "more_body": True})
            self.disconnects.append((await receive())["type"])
            return
        answer = json.dumps({"path": path, "length": len(body), "method": scope["method"],
                             "query": scope["query_string"].decode()}).encode()
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"application/json"), (b"x-seen", b"yes")]})
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def app() -> EchoApp:
    return EchoApp()


@pytest.fixture
def served(app: EchoApp) -> Iterator[Running]:
    running = serve_in_thread(app, lifespan=True)
    yield running
    app.release.set()
    running.stop()


def raw(url: str, data: bytes, *, until: bytes | None = None, timeout: float = 5) -> bytes:
    """Send bytes on one connection and read until `until` appears or the server closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while until is None or until not in received:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
        return received


def test_requests_on_one_keep_alive_connection_are_answered_in_turn(served: Running) -> None:
    with httpx.Client(base_url=served.url) as client:
        first = client.post("/echo?a=1", content=b"x" * 1000)
        second = client.post("/echo", content=b"y" * 10)
    assert first.status_code == 201 and first.json() == {"path": "/echo", "length": 1000, "method": "POST",
                                                         "query": "a=1"}
    assert second.json()["length"] == 10
    assert first.headers["x-seen"] == "yes" and "date" in first.headers
    assert first.headers["content-length"] == str(len(first.content))


def test_pipelined_requests_get_their_answers_in_order(served: Running) -> None:
    request = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
    data = request % (3, b"abc") + request % (5, b"abcde") + (request % (1, b"a")).replace(b"1.1\r\n", b"1.1\r\nconnection: close\r\n", 1)
    answer = raw(served.url, data)
    bodies = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0]) for part in answer.split(b"HTTP/1.1 201")[1:]]
    assert [b["length"] for b in bodies] == [3, 5, 1]
    assert answer.count(b"connection: close") == 1  # only the last asked to close


def test_a_chunked_request_body_arrives_whole(served: Running) -> None:
    def parts() -> Iterator[bytes]:
        for n in range(50):
            yield b"%04d" % n

    response = httpx.post(served.url + "/echo", content=parts())
    assert response.json()["length"] == 200


def test_a_response_without_length_is_streamed_chunked_as_sent(served: Running) -> None:
    with httpx.stream("GET", served.url + "/stream?4") as response:
        assert response.headers["transfer-encoding"] == "chunked"
        assert b"".join(response.iter_raw()) == b"chunk 0;chunk 1;chunk 2;chunk 3;"


def test_http_1_0_without_keep_alive_is_closed_after_the_answer(served: Running) -> None:
    answer = raw(served.url, b"GET /stream?2 HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in answer and b"transfer-encoding" not in answer
    assert answer.endswith(b"chunk 0;chunk 1;")


def test_expect_100_continue_is_answered_before_the_body(served: Running) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abcd")
        assert b'"length": 4' in sock.recv(1000)


def test_bytes_that_are_not_http_get_400_and_the_server_keeps_serving(served: Running) -> None:
    answer = raw(served.url, b"\x16\x03\x01 hello there\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request") and b"Malformed HTTP request" in answer
    assert httpx.post(served.url + "/echo", content=b"ok").status_code == 201


def test_an_app_failure_is_a_500_json_error_and_the_next_request_is_served(served: Running,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    response = httpx.post(served.url + "/fail", content=b"{}")
    assert response.status_code == 500 and response.json()["error"]["type"] == "server_error"
    assert "boom" in caplog.text
    assert httpx.get(served.url + "/echo").status_code == 201


def test_the_app_hears_when_the_client_leaves(served: Running, app: EchoApp) -> None:
    raw(served.url, b"GET /watch HTTP/1.1\r\nhost: x\r\n\r\n", until=b"first;")
    deadline = time.monotonic() + 5
    while not app.disconnects and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.disconnects == ["http.disconnect"]


def test_a_large_answer_to_a_slow_reader_arrives_intact(served: Running) -> None:
    with httpx.stream("GET", served.url + "/big") as response:
        time.sleep(0.3)  # let the socket buffers fill: the server must pause, not drop or buffer forever
        assert sum(len(chunk) for chunk in response.iter_bytes()) == 80 * 65536


def test_an_idle_keep_alive_connection_is_closed(app: EchoApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "IDLE_SECONDS", 0.2)
    with serve_in_thread(app) as running:
        started = time.monotonic()
        answer = raw(running.url, b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n", timeout=5)
        assert answer.startswith(b"HTTP/1.1 201") and time.monotonic() - started < 3  # closed by the server


def test_a_stop_lets_the_request_in_flight_finish_and_runs_the_lifespan(app: EchoApp) -> None:
    running = serve_in_thread(app, lifespan=True)
    assert app.lifespan == ["lifespan.startup"]
    result: dict[str, Any] = {}
    client = threading.Thread(target=lambda: result.update(r=httpx.get(running.url + "/slow", timeout=10)))
    client.start()
    time.sleep(0.3)
    stopper = threading.Thread(target=running.stop)
    stopper.start()
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):
        httpx.get(running.url + "/echo", timeout=2)  # no longer accepting
    app.release.set()
    client.join(10)
    stopper.join(10)
    assert result["r"].status_code == 201
    assert app.lifespan == ["lifespan.startup", "lifespan.shutdown"]


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.mark.slow
def test_the_supervisor_replaces_a_dead_worker_and_stops_them_all(tmp_path: Path) -> None:
    port = free_port()
    code = ("from tallybook.gateway.server import listen; from tallybook.gateway.workers import supervise; "
            f"supervise(listen('127.0.0.1', {port}), 2, 'tests.gateway.test_server:EchoApp')")
    supervisor = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while len(_children(supervisor.pid)) < 2 or not _answers(url):
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        time.sleep(workers.EARLY_EXIT_SECONDS)  # past the start: a death now is a crash, not a failed start
        first = _children(supervisor.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        while len(_children(supervisor.pid) - {victim}) < 2:
            assert time.monotonic() < deadline + 30, "the dead worker was not replaced"
            time.sleep(0.1)
        assert all(_answers(url) for _ in range(20))  # whichever worker takes it
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
        assert not _answers(url)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


def _answers(url: str) -> bool:
    try:
        return httpx.post(url + "/echo", content=b"hi", timeout=2).status_code == 201
    except httpx.TransportError:
        return False
