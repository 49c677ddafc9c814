"""The upstream client: keep-alive reuse, every body framing relayed byte for byte as it arrives,
timeouts and broken connections reported as UpstreamTimeout / UpstreamError."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tallybook.gateway.upstream import HttpClient, UpstreamError, UpstreamTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.AbstractServer, str, list[int]]:
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", connections


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    return head, await reader.readexactly(length)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_keep_alive_connections_are_reused_and_requests_go_as_given() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: r1\r\n"
                         b"Content-Length: 11\r\n\r\n{\"ok\":true}")
            await writer.drain()

    async def main() -> None:
        server, url, connections = await serve(handler)
        client = HttpClient(timeout=5)
        for n in range(5):
            response = await client.send("POST", url + "/v1/chat/completions?x=1", [(b"authorization", b"Bearer k")],
                                         b'{"n":%d}' % n)
            assert (response.status, await response.read()) == (200, b'{"ok":true}')
            assert response.header(b"x-request-id") == "r1"  # names lower-cased, values as sent
            response.close()
        assert len(connections) == 1
        head, body = seen[-1]
        assert head.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: 127.0.0.1:")
        assert b"authorization: Bearer k\r\n" in head and body == b'{"n":4}'
        await client.aclose()
        server.close()

    run(main())


def test_a_chunked_stream_arrives_piece_by_piece_and_a_close_delimited_body_whole() -> None:
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        if b"/stream" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                         b"Connection: close\r\n\r\n7\r\ndata: 1\r\n")
            await writer.drain()
            await gate.wait()  # the first piece must reach the reader before the rest exists
            writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
            await writer.drain()
            writer.close()

    async def main() -> None:
        server, url, connections = await serve(handler)
        client = HttpClient(timeout=5)
        response = await client.send("POST", url + "/stream", [], b"{}")
        pieces = []
        async for chunk in response.chunks():
            pieces.append(chunk)
            gate.set()
        assert pieces == [b"data: 1", b"data: 2"]
        response.close()
        plain = await client.send("GET", url + "/plain", [])
        assert await plain.read() == b"until the end"
        plain.close()
        assert len(connections) == 2  # `Connection: close` is honoured: that connection was not reused
        await client.aclose()
        server.close()

    run(main())


@pytest.mark.parametrize("when", ["head", "body"])
def test_a_silent_upstream_times_out_and_a_broken_one_is_an_error(when: str) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if when == "body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await asyncio.sleep(2)

    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if when == "body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
            await writer.drain()
        writer.transport.abort()

    async def main() -> None:
        for handler, error in ((slow, UpstreamTimeout), (broken, UpstreamError)):
            server, url, _ = await serve(handler)
            client = HttpClient(timeout=0.3)
            with pytest.raises(error):
                response = await client.send("POST", url + "/x", [], b"{}")
                await response.read()
            await client.aclose()
            server.close()
        client = HttpClient(timeout=1, connect_timeout=1)
        with pytest.raises(UpstreamError, match="cannot connect"):
            await client.send("GET", "http://127.0.0.1:9/nothing-listens", [])

    run(main())


def test_https_with_hostname_check_and_keep_alive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    trusted = ssl.create_default_context(cafile=str(cert))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def main() -> None:
        connections: list[int] = []

        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            try:
                await handler(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(counted, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        client = HttpClient(timeout=5, ssl_context=trusted)
        for _ in range(3):
            response = await client.send("POST", f"https://localhost:{port}/v1/x", [], b"{}")
            assert (response.status, await response.read()) == (200, b"ok")
            response.close()
        assert len(connections) == 1
        await client.aclose()
        untrusted = HttpClient(timeout=5)  # the system's roots: a self-signed certificate is refused
        with pytest.raises(UpstreamError, match="SSL|certificate"):
            await untrusted.send("GET", f"https://localhost:{port}/", [])
        await untrusted.aclose()
        server.close()
        await server.wait_closed()

    run(main())
