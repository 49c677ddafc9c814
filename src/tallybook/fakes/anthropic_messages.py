"""A faithful fake of Anthropic's Messages API, the upstream of the metering gateway (provider-apis.md §4).

    POST /v1/messages               non-stream, or SSE `event:` + `data:` frames: message_start (input
                                    side of usage, output_tokens 1), content_block_start, ping,
                                    content_block_delta..., content_block_stop, message_delta (CUMULATIVE
                                    usage), message_stop
    POST /v1/messages/count_tokens  {"input_tokens": n}
    POST /v1/chat/completions       the OpenAI SDK compatibility layer: OpenAI's shape with minimal usage
                                    (openai_chat.CompatibleChat); no anthropic-version needed

Requests need `x-api-key` or `Authorization: Bearer` (any key starting with `key_prefix`; the anthropic
SDK 2.x sends the latter) and `anthropic-version`; errors use
Anthropic's envelope {"type": "error", "error": {"type", "message"}, "request_id"}.

Answers follow `chat_upstreams.plan_reply`. Prompt caching is stateful, as upstream: the prompt up to
the LAST block carrying `cache_control` is a prefix of 3 + sum(4 + ceil(len(text) / 4)) tokens over the
blocks it spans; a prefix under `min_cache_tokens` is not cached; the first request with a prefix
writes it (ephemeral_1h when its cache_control says ttl "1h", else ephemeral_5m), later ones read it.
`input_tokens` is what remains after the prefix. `thinking` and tools are accepted and ignored.
"""

from __future__ import annotations

import threading
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tallybook.fakes.anthropic_admin import ERROR_TYPES
from tallybook.fakes.chat_upstreams import (
    ApiError,
    Reply,
    Served,
    ServedLog,
    Tokens,
    UpstreamFake,
    content_text,
    plan_reply,
    require,
    sse,
    text_tokens,
)
from tallybook.fakes.openai_chat import CompatibleChat


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


class AnthropicMessagesFake(UpstreamFake):
    """Anthropic's Messages API. `app` is the Starlette app; `served` the ground truth; `faults` the
    FaultInjector; `forget_cache()` empties the prompt cache."""

    provider = "anthropic"
    request_id_header = "request-id"

    def __init__(
        self,
        *,
        chunk_delay: float = 0.0,
        key_prefix: str = "sk-ant-",
        service_tier: str = "standard",
        min_cache_tokens: int = 1024,
        served: ServedLog | None = None,
    ) -> None:
        super().__init__(chunk_delay=chunk_delay, served=served)
        self.key_prefix = key_prefix
        self.service_tier = service_tier
        self.min_cache_tokens = min_cache_tokens
        self._cache: set[tuple[str, int]] = set()
        self._cache_lock = threading.Lock()

    def forget_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def error_body(self, status: int, message: str, param: str | None = None) -> dict[str, Any]:
        return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
                "request_id": self.new_request_id()}

    def authenticate(self, request: Request) -> str | None:
        key = request.headers.get("x-api-key")
        if not key:  # the anthropic SDK (2.x) sends its api_key as a Bearer token
            header = request.headers.get("authorization", "")
            key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not key:
            raise ApiError(401, "x-api-key header is required")
        if not key.startswith(self.key_prefix):
            raise ApiError(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise ApiError(400, "anthropic-version: header is required")
        return key

    def _compat_key(self, request: Request) -> str | None:
        key = request.headers.get("x-api-key") or ""
        header = request.headers.get("authorization", "")
        key = key or (header[7:].strip() if header.lower().startswith("bearer ") else "")
        if not key.startswith(self.key_prefix):
            raise ApiError(401, "Incorrect API key provided.")
        return key

    def routes(self) -> list[Route]:
        return [
            Route("/v1/messages", self.endpoint(self._messages), methods=["POST"]),
            Route("/v1/messages/count_tokens", self.endpoint(self._count_tokens), methods=["POST"]),
            CompatibleChat(self).route("/v1/chat/completions", self._compat_key),
        ]

    # -- the prompt ------------------------------------------------------------------------------------

    def _prompt(self, body: dict[str, Any]) -> tuple[list[str], list[list[dict[str, Any]]]]:
        """Message texts (system first) and each one's blocks."""
        require(body, "model", str, "a string")
        messages = require(body, "messages", list, "an array of messages")
        if not messages:
            raise ApiError(400, "messages: at least one message is required")
        turns = [_blocks(body["system"])] if body.get("system") else []
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise ApiError(400, "messages: each message needs a role of 'user' or 'assistant'")
            turns.append(_blocks(message.get("content")))
        return [content_text(blocks) for blocks in turns], turns

    def _cache_split(self, model: str, turns: list[list[dict[str, Any]]], total: int) -> tuple[int, int, str]:
        """(read, written, ttl) for the prefix ending at the last cache_control block."""
        prefix, tokens, ttl, texts, key = 0, 3, "5m", [], None
        for turn in turns:
            tokens += 4
            for block in turn:
                text = content_text([block])
                tokens += text_tokens(text)
                texts.append(text)
                control = block.get("cache_control")
                if isinstance(control, dict):
                    prefix, ttl = tokens, "1h" if control.get("ttl") == "1h" else "5m"
                    key = (model, zlib.crc32("\x00".join(texts).encode()))
        prefix = min(prefix, total)
        if key is None or prefix < max(self.min_cache_tokens, 1):
            return 0, 0, ttl
        with self._cache_lock:
            if key in self._cache:
                return prefix, 0, ttl
            self._cache.add(key)
        return 0, prefix, ttl

    # -- endpoints ---------------------------------------------------------------------------------

    def _count_tokens(self, request: Request, body: dict[str, Any], served: Served) -> Response:
        texts, _ = self._prompt(body)
        count = plan_reply(texts).prompt_tokens
        served.usage = {"input_tokens": count}
        return JSONResponse({"input_tokens": count})

    def _messages(self, request: Request, body: dict[str, Any], served: Served) -> Response:
        texts, turns = self._prompt(body)
        max_tokens = require(body, "max_tokens", int, "an integer")
        if max_tokens < 1:
            raise ApiError(400, "max_tokens: must be greater than or equal to 1")
        model = body["model"]
        reply = plan_reply(texts, max_tokens)
        read, written, ttl = self._cache_split(model, turns, reply.prompt_tokens)
        usage = {
            "input_tokens": reply.prompt_tokens - read - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": written if ttl == "5m" else 0,
                               "ephemeral_1h_input_tokens": written if ttl == "1h" else 0},
            "output_tokens": reply.completion_tokens,
            "server_tool_use": None,
            "service_tier": self.service_tier,
        }
        served.usage = usage
        served.tokens = Tokens(reply.prompt_tokens, reply.completion_tokens, read, written)
        message = {"id": "msg_" + uuid.uuid4().hex[:24], "type": "message", "role": "assistant",
                   "model": model, "content": [{"type": "text", "text": reply.text}],
                   "stop_reason": "max_tokens" if reply.truncated else "end_turn", "stop_sequence": None,
                   "usage": usage}
        if not body.get("stream"):
            return JSONResponse(message)
        return self.stream(request, served, _events(message, reply), "text/event-stream")


def _events(message: dict[str, Any], reply: Reply) -> Iterator[str]:
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": min(1, reply.completion_tokens)}
    yield sse({"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                     "usage": start_usage}}, event="message_start")
    yield sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
              event="content_block_start")
    yield sse({"type": "ping"}, event="ping")
    for piece in reply.pieces:
        yield sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                  event="content_block_delta")
    yield sse({"type": "content_block_stop", "index": 0}, event="content_block_stop")
    cumulative = {name: usage[name] for name in
                  ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")}
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield sse({"type": "message_delta", "delta": delta, "usage": cumulative}, event="message_delta")
    yield sse({"type": "message_stop"}, event="message_stop")
