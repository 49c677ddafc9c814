"""A faithful fake of OpenAI's inference API, the upstream of the metering gateway (provider-apis.md §2).

    POST /v1/chat/completions   non-stream, or SSE chunks ending `data: [DONE]`; with
                                stream_options.include_usage a last chunk with `choices: []` carries the
                                usage and every other chunk has `"usage": null`
    POST /v1/responses          non-stream, or the typed event stream ending response.completed
                                (response.incomplete when max_output_tokens cut it), usage at response.usage
    POST /v1/embeddings         float or base64 vectors, usage prompt_tokens/total_tokens
    GET  /v1/models

Answers follow `chat_upstreams.plan_reply`. Decisions where the reference is silent or says [U]:
- Cached tokens are stateless: a prompt of P >= 1025 tokens reads (P - 1) // 1024 * 1024 of them from
  the cache; cache writes are reported as 0.
- A model named o<digit>... or gpt-5..., or a request with reasoning effort other than "none", spends
  half of its completion tokens on reasoning; only the rest become text.
- `include_obfuscation` defaults to true as upstream; the padding is deterministic.
- `model` is echoed as sent unless `model_aliases` maps it (as "gpt-4o" -> a dated snapshot).
- `usage_shape="minimal"` serves only prompt/completion/total tokens, as proxies and Ollama do.
"""

from __future__ import annotations

import base64
import math
import re
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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
from tallybook.fakes.openai_admin import error_body as openai_error_body

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "o3-mini", "text-embedding-3-small")
REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


def cached_tokens(prompt_tokens: int) -> int:
    return (prompt_tokens - 1) // 1024 * 1024 if prompt_tokens > 1024 else 0


def _obfuscation(text: str) -> str:
    return "x" * (1 + zlib.crc32(text.encode()) % 12)


def _reasoning(model: str, effort: Any) -> bool:
    return bool(REASONING_MODEL.match(model)) or (isinstance(effort, str) and effort != "none")


class OpenAIChatFake(UpstreamFake):
    """OpenAI's chat, responses, embeddings and models endpoints. `app` is the Starlette app;
    `served` the ground truth; `faults` the FaultInjector."""

    provider = "openai"
    system_fingerprint: str | None = "fp_fake0001"
    obfuscates = True  # stream deltas carry `obfuscation` unless the request turns it off

    def __init__(
        self,
        *,
        chunk_delay: float = 0.0,
        key_prefix: str | None = "sk-",
        usage_shape: str = "extended",
        model_aliases: Mapping[str, str] | None = None,
        models: tuple[str, ...] = MODELS,
        served: ServedLog | None = None,
    ) -> None:
        if usage_shape not in ("extended", "minimal"):
            raise ValueError("usage_shape must be 'extended' or 'minimal'")
        super().__init__(chunk_delay=chunk_delay, served=served)
        self.key_prefix = key_prefix
        self.usage_shape = usage_shape
        self.model_aliases = dict(model_aliases or {})
        self.models = models

    def error_body(self, status: int, message: str, param: str | None = None) -> dict[str, Any]:
        return openai_error_body(status, message, param)

    def authenticate(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if self.key_prefix is None:
            return key or None
        if not key:
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if not key.startswith(self.key_prefix):
            raise ApiError(401, f"Incorrect API key provided: {key[:6]}***. "
                                f"Keys start with '{self.key_prefix}'.")
        return key

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.endpoint(self._chat), methods=["POST"]),
            Route("/v1/responses", self.endpoint(self._responses), methods=["POST"]),
            Route("/v1/embeddings", self.endpoint(self._embeddings), methods=["POST"]),
            Route("/v1/models", self.endpoint(self._models, needs_body=False), methods=["GET"]),
        ]

    def completion_id(self) -> str:
        return "chatcmpl-" + uuid.uuid4().hex[:24]

    def _model(self, body: dict[str, Any]) -> str:
        model = require(body, "model", str, "a string")
        return self.model_aliases.get(model, model)

    # -- chat completions ---------------------------------------------------------------------------

    def chat_usage(self, reply: Reply) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }
        if self.usage_shape == "extended":
            usage["prompt_tokens_details"] = {
                "cached_tokens": cached_tokens(reply.prompt_tokens), "audio_tokens": 0,
                "text_tokens": reply.prompt_tokens, "image_tokens": 0, "cache_write_tokens": 0,
            }
            usage["completion_tokens_details"] = {
                "reasoning_tokens": reply.reasoning_tokens, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
                "text_tokens": reply.completion_tokens - reply.reasoning_tokens,
            }
        return usage

    def _tokens(self, reply: Reply) -> Tokens:
        if self.usage_shape == "minimal":  # what is reported: no cached or reasoning details
            return Tokens(reply.prompt_tokens, reply.completion_tokens)
        return Tokens(reply.prompt_tokens, reply.completion_tokens, cached_tokens(reply.prompt_tokens), 0,
                      reply.reasoning_tokens)

    def _chat(self, request: Request, body: dict[str, Any], served: Served) -> Response:
        model = self._model(body)
        messages = require(body, "messages", list, "an array of messages")
        if not messages:
            raise ApiError(400, "'messages' must contain at least one message.", param="messages")
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        reply = plan_reply((content_text(m.get("content")) for m in messages if isinstance(m, dict)),
                           limit, reasoning=_reasoning(model, body.get("reasoning_effort")))
        usage = self.chat_usage(reply)
        served.usage, served.tokens = usage, self._tokens(reply)
        finish = "length" if reply.truncated else "stop"
        base = {"id": self.completion_id(), "created": int(time.time()), "model": model,
                "service_tier": "default", "system_fingerprint": self.system_fingerprint}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None,
                                       "annotations": []}
            return JSONResponse({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]})
        options = body.get("stream_options") or {}
        return self.stream(request, served, self._chat_frames(
            base, reply, finish, usage, bool(options.get("include_usage")),
            self.obfuscates and options.get("include_obfuscation", True) is not False), "text/event-stream")

    def _chat_frames(self, base: dict[str, Any], reply: Reply, finish: str, usage: dict[str, Any],
                     include_usage: bool, obfuscate: bool) -> Iterator[str]:
        def chunk(choices: list[dict[str, Any]], totals: dict[str, Any] | None = None) -> str:
            data = {**base, "object": "chat.completion.chunk", "choices": choices}
            if include_usage:
                data["usage"] = totals
            if obfuscate:
                data["obfuscation"] = _obfuscation(str(choices))
            return sse(data)

        def choice(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

        yield chunk(choice({"role": "assistant", "content": "", "refusal": None}))
        for piece in reply.pieces:
            yield chunk(choice({"content": piece}))
        yield chunk(choice({}, finish))
        if include_usage:
            yield chunk([], usage)
        yield sse("[DONE]")

    # -- responses ------------------------------------------------------------------------------------

    def _responses(self, request: Request, body: dict[str, Any], served: Served) -> Response:
        model = self._model(body)
        given = body.get("input")
        if given is None:
            raise ApiError(400, "Missing required parameter: 'input'.", param="input")
        texts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
        if isinstance(given, str):
            texts.append(given)
        elif isinstance(given, list):
            texts += [content_text(item.get("content", item.get("text", "")))
                      for item in given if isinstance(item, dict)]
        else:
            raise ApiError(400, "Invalid type for 'input': expected a string or an array of items.",
                           param="input")
        effort = body["reasoning"].get("effort") if isinstance(body.get("reasoning"), dict) else None
        reply = plan_reply(texts, body.get("max_output_tokens"), reasoning=_reasoning(model, effort))
        cached = cached_tokens(reply.prompt_tokens)
        usage = {
            "input_tokens": reply.prompt_tokens,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": reply.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }
        served.usage = usage
        served.tokens = Tokens(reply.prompt_tokens, reply.completion_tokens, cached, 0,
                               reply.reasoning_tokens)
        ids = {"response": "resp_" + uuid.uuid4().hex, "message": "msg_" + uuid.uuid4().hex,
               "reasoning": "rs_" + uuid.uuid4().hex}
        skeleton: dict[str, Any] = {
            "id": ids["response"], "object": "response", "created_at": int(time.time()), "model": model,
            "status": "in_progress", "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "metadata": body.get("metadata") or {}, "output": [], "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": effort, "summary": None}, "service_tier": "default", "store": True,
            "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
            "top_p": 1.0, "truncation": "disabled", "usage": None, "user": None,
        }
        text_part = {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
        message = {"id": ids["message"], "type": "message", "status": "completed", "role": "assistant",
                   "content": [text_part]}
        output = ([{"id": ids["reasoning"], "type": "reasoning", "summary": []}] if reply.reasoning_tokens
                  else []) + [message]
        final = {**skeleton, "status": "incomplete" if reply.truncated else "completed", "output": output,
                 "usage": usage,
                 "incomplete_details": {"reason": "max_output_tokens"} if reply.truncated else None}
        if not body.get("stream"):
            return JSONResponse(final)
        events = self._response_events(skeleton, final, reply)
        return self.stream(request, served, events, "text/event-stream")

    def _response_events(
        self, skeleton: dict[str, Any], final: dict[str, Any], reply: Reply
    ) -> Iterator[str]:
        sequence = iter(range(1_000_000))

        def event(kind: str, **fields: Any) -> str:
            return sse({"type": kind, "sequence_number": next(sequence), **fields}, event=kind)

        yield event("response.created", response=skeleton)
        yield event("response.in_progress", response=skeleton)
        message = final["output"][-1]
        index = len(final["output"]) - 1
        if index:
            yield event("response.output_item.added", output_index=0, item=final["output"][0])
            yield event("response.output_item.done", output_index=0, item=final["output"][0])
        where = {"item_id": message["id"], "output_index": index}
        yield event("response.output_item.added", output_index=index,
                    item={**message, "status": "in_progress", "content": []})
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield event("response.content_part.added", **where, content_index=0, part=empty)
        for piece in reply.pieces:
            yield event("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
        yield event("response.output_text.done", **where, content_index=0, text=reply.text, logprobs=[])
        yield event("response.content_part.done", **where, content_index=0, part=message["content"][0])
        yield event("response.output_item.done", output_index=index, item=message)
        kind = "response.incomplete" if reply.truncated else "response.completed"
        yield event(kind, response=final)

    # -- embeddings and models ------------------------------------------------------------------------

    def _embeddings(self, request: Request, body: dict[str, Any], served: Served) -> Response:
        model = self._model(body)
        given = body.get("input")
        if isinstance(given, str) or (isinstance(given, list) and given and isinstance(given[0], int)):
            given = [given]
        if not isinstance(given, list) or not given:
            raise ApiError(400, "'input' must be a non-empty string or array.", param="input")
        dimensions = body.get("dimensions") or 8
        tokens, data = 0, []
        for index, item in enumerate(given):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += max(text_tokens(item), 1) if isinstance(item, str) else len(item)
            vector = _vector(text, dimensions)
            embedding: Any = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        served.usage, served.tokens = usage, Tokens(input_tokens=tokens)
        return JSONResponse({"object": "list", "data": data, "model": model, "usage": usage})

    def _models(self, request: Request, body: dict[str, Any], served: Served) -> Response:
        models = [{"id": m, "object": "model", "created": 1_715_367_049, "owned_by": "system"}
                  for m in self.models]
        return JSONResponse({"object": "list", "data": models})


class CompatibleChat(OpenAIChatFake):
    """Chat completions in OpenAI's shape, as another provider's OpenAI-compatible API serves them,
    mounted inside that provider's fake (its ServedLog, request ids, faults and pacing).

    Usage is the minimal prompt/completion/total tokens: Anthropic's compatibility layer leaves the
    `*_details` empty and honours `stream_options.include_usage`; Cohere's reports the billed tokens."""

    obfuscates = False  # an OpenAI feature the compatibility layers do not copy

    def __init__(self, owner: UpstreamFake, *, system_fingerprint: str | None = None) -> None:
        super().__init__(key_prefix=None, usage_shape="minimal", served=owner.served)
        self.owner = owner
        self.system_fingerprint = system_fingerprint

    def stream(self, request: Request, served: Served, frames: Iterable[str], media_type: str) -> Response:
        return self.owner.stream(request, served, frames, media_type)

    def route(self, path: str, auth: Callable[[Request], str | None]) -> Route:
        """POST `path` on the owner, answering errors in OpenAI's envelope."""
        return Route(path, self.owner.endpoint(self._chat, errors=self.error_body, auth=auth), methods=["POST"])


def _vector(text: str, dimensions: int) -> list[float]:
    raw = [((zlib.crc32(f"{i}:{text}".encode()) % 2001) - 1000) / 1000 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]
