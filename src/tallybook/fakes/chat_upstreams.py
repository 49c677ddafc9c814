"""Plumbing shared by the fake chat UPSTREAMS the metering gateway is tested against.

The fakes themselves live one per provider:

    openai_chat.OpenAIChatFake            /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models
    anthropic_messages.AnthropicMessagesFake   /v1/messages, /v1/messages/count_tokens
    cohere_chat.CohereChatFake            /v2/chat
    ollama_chat.OllamaFake                /api/chat and the OpenAI-compatible /v1/chat/completions

Every answer is deterministic, so a test can predict it with `plan_reply`:

    prompt tokens      3 + sum over messages (system included) of 4 + ceil(len(text) / 4)
    completion tokens  min(max_tokens, 5 + crc32(prompt text) % 40); finish "length" when max_tokens cut it
    content            one word of a fixed vocabulary per visible output token (one stream delta each)

Every fake keeps the ground truth of what it served in a `ServedLog` (`fake.served`), also over
HTTP for fakes in another process:

    GET    /_fake/served   [Served as JSON, in arrival order]
    DELETE /_fake/served   forget them

Besides the shared FaultInjector kinds (status, delay, malformed_json), the chat fakes honour
{"kind": "stream_cut", "after_chunks": N}: a stream ends cleanly after N frames, without its
usage frame or terminator, as when an upstream drops mid-answer. Its record stays `completed=False`.
A test may also slow ONE stream down with the request header `x-fake-chunk-delay: SECONDS` (no real
provider reads it; it stands in for a slow model so a client can cancel mid-answer).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tallybook.fakes.faults import FaultInjector

VOCAB = [
    "the", "ledger", "counts", "every", "token", "once", "and", "the", "gateway", "meters", "each", "stream",
    "while", "budgets", "hold", "steady", "across", "replicas", "so", "spend", "stays", "honest", "under",
    "load", "today",
]


@dataclass(frozen=True)
class Reply:
    """What a fake answers to one request: its token counts and the text pieces (one per visible token)."""

    prompt_tokens: int
    completion_tokens: int  # reasoning included, as providers bill it
    reasoning_tokens: int
    pieces: tuple[str, ...]
    truncated: bool  # max_tokens cut the answer short

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def text_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts with "text"."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(content_text(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def plan_reply(texts: Iterable[str], max_tokens: int | None = None, *, reasoning: bool = False) -> Reply:
    """The deterministic reply to a prompt made of these message texts (see the module docstring)."""
    texts = list(texts)
    prompt = 3 + sum(4 + text_tokens(t) for t in texts)
    joined = "\n".join(texts)
    seed = zlib.crc32(joined.encode())
    completion = 5 + seed % 40
    truncated = max_tokens is not None and max_tokens < completion
    if truncated:
        completion = max(int(max_tokens or 0), 1)
    thinking = completion // 2 if reasoning else 0
    rng = random.Random(seed)
    words = [rng.choice(VOCAB) for _ in range(completion - thinking)]
    pieces = tuple(w.capitalize() if i == 0 else " " + w for i, w in enumerate(words))
    return Reply(prompt, completion, thinking, pieces, truncated)


@dataclass
class Tokens:
    """Provider-neutral ground truth. `input_tokens` counts the whole prompt, cached and written parts
    included; `output_tokens` includes reasoning."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass
class Served:
    """One request a fake answered. `usage` is the provider-shaped usage it reports (for a stream, the
    totals its last frame carries, whether or not that frame was delivered)."""

    request_id: str
    provider: str
    path: str
    model: str | None
    stream: bool
    status: int
    idempotency_key: str | None = None
    api_key: str | None = None
    usage: dict[str, Any] | None = None
    tokens: Tokens | None = None
    completed: bool = False
    chunks: int = 0  # stream frames delivered
    at: float = field(default_factory=time.time)


class ServedLog:
    """A thread-safe list of `Served`, read as copies."""

    def __init__(self) -> None:
        self._items: list[Served] = []
        self._lock = threading.Lock()

    def add(self, served: Served) -> Served:
        with self._lock:
            self._items.append(served)
        return served

    def update(self, served: Served, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(served, name, value)

    def all(self) -> list[Served]:
        with self._lock:
            return [dataclasses.replace(s, tokens=dataclasses.replace(s.tokens) if s.tokens else None)
                    for s in self._items]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def last(self) -> Served:
        return self.all()[-1]

    def find(self, request_id: str) -> Served:
        for served in self.all():
            if served.request_id == request_id:
                return served
        raise KeyError(request_id)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def totals(self, *, completed_only: bool = True) -> dict[str, int]:
        """Summed ground truth of successful requests, with their count under "requests"."""
        sums = {"requests": 0, **{f.name: 0 for f in dataclasses.fields(Tokens)}}
        for served in self.all():
            if served.tokens is None or (completed_only and not served.completed):
                continue
            sums["requests"] += 1
            for name, value in dataclasses.asdict(served.tokens).items():
                sums[name] += value
        return sums

    def routes(self) -> list[Route]:
        async def get(request: Request) -> Response:
            return JSONResponse([dataclasses.asdict(s) for s in self.all()])

        async def delete(request: Request) -> Response:
            self.clear()
            return JSONResponse({"served": 0})

        return [
            Route("/_fake/served", get, methods=["GET"]),
            Route("/_fake/served", delete, methods=["DELETE"]),
        ]


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event; `data` is JSON-encoded unless already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


ErrorBody = Callable[[int, str, str | None], dict[str, Any]]
Build = Callable[[Request, dict[str, Any], Served], Awaitable[Response] | Response]


class UpstreamFake:
    """Base of the chat fakes: fault injection, auth, JSON parsing, ground truth and paced streaming.

    A subclass sets `provider`, `request_id_header`, and implements `error_body`, `authenticate`
    and `routes`; each route's handler is `self.endpoint(build)`."""

    provider = ""
    request_id_header: str | None = "x-request-id"
    request_id_prefix = "req_"

    def __init__(self, *, chunk_delay: float = 0.0, served: ServedLog | None = None) -> None:
        self.chunk_delay = chunk_delay
        self.served = served if served is not None else ServedLog()
        self.faults = FaultInjector(error_body=lambda status, message: self.error_body(status, message))
        self._app: Starlette | None = None

    def error_body(self, status: int, message: str, param: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def authenticate(self, request: Request) -> str | None:
        """The caller's key, or ApiError."""
        return None

    def routes(self) -> list[Route]:
        raise NotImplementedError

    @property
    def app(self) -> Starlette:
        if self._app is None:
            self._app = Starlette(routes=self.routes() + self.faults.routes() + self.served.routes())
        return self._app

    def new_request_id(self) -> str:
        return self.request_id_prefix + uuid.uuid4().hex[:24]

    def endpoint(
        self, build: Build, *, needs_body: bool = True, errors: ErrorBody | None = None,
        auth: Callable[[Request], str | None] | None = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        """The route handler around `build`; `errors` overrides `error_body` and `auth` overrides
        `authenticate` for this route (a provider's OpenAI-compatible API speaks OpenAI's shape)."""
        error_body = errors or self.error_body
        authenticate = auth or self.authenticate

        async def handle(request: Request) -> Response:
            request_id = self.new_request_id()
            headers = {self.request_id_header: request_id} if self.request_id_header else {}
            served = Served(request_id, self.provider, request.url.path, None, False, 0,
                            idempotency_key=request.headers.get("idempotency-key"))
            if self.faults.faults:  # a delay fault sleeps: keep it off the event loop
                early = await anyio.to_thread.run_sync(self.faults.before, request)
            else:
                request.state.fault, early = None, None
            try:
                if early is not None:
                    early.headers.update(headers)
                    return self._finish(request, served, early)
                served.api_key = authenticate(request)
                body = await self._json(request) if needs_body else {}
                served.model = body.get("model") if isinstance(body.get("model"), str) else None
                served.stream = bool(body.get("stream"))
                response = build(request, body, served)
                if not isinstance(response, Response):
                    response = await response
            except ApiError as exc:
                response = JSONResponse(error_body(exc.status, exc.message, exc.param), exc.status)
            response.headers.update(headers)
            return self._finish(request, served, response)

        return handle

    def _finish(self, request: Request, served: Served, response: Response) -> Response:
        served.status = response.status_code
        if not served.stream or response.status_code != 200:
            served.completed = response.status_code == 200
        self.faults.log(request, response.status_code)
        self.served.add(served)
        return response

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise ApiError(400, f"We could not parse the JSON body of your request: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return body

    def stream(self, request: Request, served: Served, frames: Iterable[str], media_type: str) -> Response:
        """Send `frames` one by one, `chunk_delay` apart; the record completes after the last one."""
        fault = getattr(request.state, "fault", None)
        cut = int(fault.get("after_chunks", 1)) if fault and fault.get("kind") == "stream_cut" else None
        try:
            delay = float(request.headers.get("x-fake-chunk-delay", self.chunk_delay))
        except ValueError:
            delay = self.chunk_delay

        async def body() -> AsyncIterator[str]:
            for index, frame in enumerate(frames):
                if cut is not None and index >= cut:
                    return
                if index and delay:
                    await asyncio.sleep(delay)
                yield frame
                self.served.update(served, chunks=index + 1)
            self.served.update(served, completed=True)

        headers = {"cache-control": "no-cache"}
        return StreamingResponse(body(), media_type=media_type, headers=headers)


def require(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if value is None:
        raise ApiError(400, f"Missing required parameter: '{name}'.", param=name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ApiError(400, f"Invalid type for '{name}': expected {what}.", param=name)
    return value
