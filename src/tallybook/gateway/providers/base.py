"""The Upstream: one provider's base URL, auth, request rewrite, usage reading and error envelope.

    Upstream                 a provider's endpoint table + its keep-alive HttpClient (gateway.upstream)
    Upstreams                the configured upstreams, found by (organisation, provider)
    StreamTracker            fed the raw bytes of a stream; finds usage, the terminal event and text
    Dialect                  how one API shape reports usage (chat.completions, messages, ...)

A subclass sets `name`, `paths` (our endpoint -> the provider's path) and `auth_headers`; usage and
stream reading live in dialects shared across providers, because Cohere, Ollama and Anthropic all
serve OpenAI's shape on their compatibility endpoints. The HTTP client stays behind the Upstream so
it can be swapped (tests pass a recording double with the same `send`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import orjson

from tallybook.gateway.events import Usage
from tallybook.gateway.upstream import HttpClient


def num(value: Any) -> int:
    """An int from a usage field that may be absent, null or a float."""
    return int(value) if isinstance(value, int | float) else 0


class Dialect:
    """How one API shape reports usage, for a JSON body and for its stream.

    `stream_kind` is "sse" or "ndjson"; `terminal` says whether a complete event ends the stream
    (the gateway makes the event durable before relaying it); `usage_in_event` returns the usage an
    event carries (None when it carries none); `text_in_event` the output text it carries."""

    name: ClassVar[str] = ""
    stream_kind: ClassVar[str] = "sse"

    def usage(self, data: dict[str, Any]) -> Usage | None:
        raise NotImplementedError

    def model(self, data: dict[str, Any]) -> str | None:
        model = data.get("model")
        return model if isinstance(model, str) else None

    def may_carry_usage(self, event: bytes) -> bool:
        return b'"usage"' in event

    def usage_in_event(self, data: dict[str, Any], seen: Usage | None) -> Usage | None:
        return None

    def terminal(self, event: bytes) -> bool:
        return False

    def text_in_event(self, data: dict[str, Any]) -> str:
        return ""

    def prompt_texts(self, body: dict[str, Any]) -> list[str]:
        """The prompt's text parts, for a tokenizer estimate when the provider reports no usage."""
        texts: list[str] = []
        for name in ("system", "instructions", "prompt", "preamble"):
            _collect(body.get(name), texts)
        for name in ("messages", "input"):
            value = body.get(name)
            if isinstance(value, list):
                for item in value:
                    _collect(item.get("content", item.get("text")) if isinstance(item, dict) else item, texts)
            else:
                _collect(value, texts)
        return texts


def _collect(value: Any, into: list[str]) -> None:
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, list):
        for part in value:
            _collect(part.get("text") if isinstance(part, dict) else part, into)


class NoUsage(Dialect):
    """Endpoints that consume no tokens (model lists)."""

    name = "none"

    def usage(self, data: dict[str, Any]) -> Usage | None:
        return Usage()


NO_USAGE = NoUsage()


class StreamTracker:
    """Splits a relayed stream into events and reads usage from the few events that carry it.

    `feed(chunk)` returns (bytes to relay now, the terminal event and anything after it, or b"").
    With `strip_usage` the usage-only chunk the gateway asked for is removed (and the `"usage":null`
    it made every other chunk carry), so the client sees the stream it asked for. Text events are
    kept (up to `keep_bytes`) only to estimate output tokens if the stream ends without usage."""

    __slots__ = (
        "_buffer",
        "_events",
        "_kept",
        "dialect",
        "keep_bytes",
        "model",
        "sep",
        "strip_usage",
        "terminated",
        "usage",
    )

    def __init__(self, dialect: Dialect, *, strip_usage: bool = False, keep_bytes: int = 4 << 20) -> None:
        self.dialect = dialect
        self.strip_usage = strip_usage
        self.usage: Usage | None = None
        self.model: str | None = None
        self._buffer = b""
        self._events: list[bytes] = []
        self._kept = 0
        self.keep_bytes = keep_bytes
        self.terminated = False
        self.sep = b"\n" if dialect.stream_kind == "ndjson" else b"\n\n"

    def feed(self, chunk: bytes) -> tuple[bytes, bytes]:
        if self.terminated:
            return chunk, b""
        old = len(self._buffer)
        data = self._buffer + chunk if old else chunk
        if self.sep == b"\n\n" and b"\r\n\r\n" in data:
            self.sep = b"\r\n\r\n"  # SSE allows CRLF line ends
        sep, strip = self.sep, self.strip_usage
        parts = data.split(sep)
        self._buffer = parts.pop()
        if not parts:
            return (b"" if strip else chunk), b""
        relay: list[bytes] = []
        offset = 0
        for event in parts:
            start = offset
            offset += len(event) + len(sep)
            if not event:
                continue
            kept = self._read(event)
            if self.dialect.terminal(event):
                self.terminated = True
                self._buffer = b""
                if strip:
                    return b"".join(relay), data[start:]
                cut = max(start - old, 0)  # bytes before `old` were relayed with earlier chunks
                return chunk[:cut], chunk[cut:]
            if strip and kept is not None:
                relay.append(kept + sep)
        return (b"".join(relay) if strip else chunk), b""

    def _read(self, event: bytes) -> bytes | None:
        """Read what the event says; return it as it should be relayed (None: drop it)."""
        dialect = self.dialect
        if dialect.may_carry_usage(event):
            data = _event_json(event)
            if data is not None:
                found = dialect.usage_in_event(data, self.usage)
                if found is not None:
                    self.usage = found
                    self.model = self.model or dialect.model(data.get("response") or data.get("message")
                                                             or data)
                    if self.strip_usage and data.get("choices") == []:
                        return None
        if self._kept < self.keep_bytes:
            self._events.append(event)
            self._kept += len(event)
        if self.strip_usage:
            return event.replace(b',"usage":null', b"")
        return event

    def flush(self) -> bytes:
        """The stream ended: read a last event that had no separator after it; returns what is
        still to relay (only when stripping: otherwise every byte was relayed as it came)."""
        rest, self._buffer = self._buffer, b""
        if rest.strip() and not self.terminated:
            self._read(rest)
        return rest if self.strip_usage else b""

    def output_text(self) -> str:
        parts: list[str] = []
        for event in self._events:
            data = _event_json(event)
            if data is not None:
                parts.append(self.dialect.text_in_event(data))
        return "".join(parts)

    def saw_model(self) -> str | None:
        if self.model:
            return self.model
        for event in self._events[:3]:
            data = _event_json(event)
            if data is not None:
                found = self.dialect.model(data.get("response") or data.get("message") or data)
                if found:
                    return found
        return None


def _event_json(event: bytes) -> dict[str, Any] | None:
    """The JSON of an SSE event's data lines, or of an NDJSON line."""
    if event.startswith((b"{", b" {")):
        payload = event
    else:
        lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if not lines:
            return None
        payload = b"\n".join(lines)
    if not payload.startswith(b"{"):
        return None
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(payload)  # what orjson refuses but Python reads (NaN, huge integers)
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


class Upstream:
    """One provider for one organisation: where to send each endpoint and with which key.

    `paths` maps our endpoint names (chat.completions, responses, embeddings, models, messages,
    messages.count_tokens, cohere.chat, ollama.chat) to the provider's paths; an endpoint it lacks
    is a 404 naming the provider."""

    name: ClassVar[str] = ""
    paths: ClassVar[dict[str, str]] = {}
    dialects: ClassVar[dict[str, Dialect]] = {}

    def __init__(self, base_url: str, api_key: str | None = None, *, org_id: int | None = None,
                 client: Any = None, timeout: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.api_key = api_key
        self.org_id = org_id
        self.client = client or HttpClient(timeout=timeout, connect_timeout=min(10.0, timeout))
        self._urls = {endpoint: self.base_url + path for endpoint, path in self.paths.items()}
        self._auth: dict[str | None, list[tuple[bytes, bytes]]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, org_id={self.org_id})"

    def url(self, endpoint: str) -> str | None:
        return self._urls.get(endpoint)

    def auth_headers(self, api_key: str | None) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", b"Bearer " + api_key.encode())] if api_key else []

    def auth(self, api_key: str | None) -> list[tuple[bytes, bytes]]:
        """`auth_headers`, built once per key (the configured key, or a client's pass-through key)."""
        found = self._auth.get(api_key)
        if found is None:
            found = self.auth_headers(api_key)
            if len(self._auth) < 1024:
                self._auth[api_key] = found
        return found

    def dialect(self, endpoint: str) -> Dialect:
        return self.dialects.get(endpoint) or NO_USAGE

    async def aclose(self) -> None:
        await self.client.aclose()


class Upstreams:
    """The configured upstreams; one configured without an organisation serves every organisation."""

    def __init__(self, items: Iterable[Upstream] = ()) -> None:
        self._by: dict[tuple[int | None, str], Upstream] = {}
        for item in items:
            self.add(item)

    def add(self, upstream: Upstream) -> None:
        self._by[(upstream.org_id, upstream.name)] = upstream

    def find(self, org_id: int, provider: str) -> Upstream | None:
        return self._by.get((org_id, provider)) or self._by.get((None, provider))

    def __iter__(self) -> Iterator[Upstream]:
        return iter(self._by.values())

    def __len__(self) -> int:
        return len(self._by)

    async def aclose(self) -> None:
        for upstream in self._by.values():
            await upstream.aclose()
