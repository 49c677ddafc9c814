"""A faithful fake of Ollama, an upstream of the metering gateway (provider-apis.md §7.2, §7.3).

    POST /api/chat              NDJSON stream by default (`"stream": false` for one object); the final
                                object (`done: true`) has prompt_eval_count, eval_count and the
                                total/load/prompt_eval/eval durations in nanoseconds
    POST /v1/chat/completions   OpenAI-compatible: usage is prompt/completion/total tokens only,
                                system_fingerprint "fp_ollama", ids like "chatcmpl-768", any key or none
    GET  /v1/models

Counts follow `plan_reply`; durations are derived from them (no real waiting): load 2_154_458 ns,
0.4 ms per prompt token, 20 ms per output token, 1 ms of overhead. Errors on /api/* are {"error": "..."}.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tallybook.fakes.chat_upstreams import (
    ApiError,
    Served,
    ServedLog,
    Tokens,
    content_text,
    plan_reply,
)
from tallybook.fakes.openai_chat import OpenAIChatFake

LOAD_NS = 2_154_458
PROMPT_NS_PER_TOKEN = 400_000
EVAL_NS_PER_TOKEN = 20_000_000
_ids = itertools.count(100)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


class OllamaFake(OpenAIChatFake):
    provider = "ollama"
    request_id_header = None
    system_fingerprint = "fp_ollama"

    def __init__(self, *, chunk_delay: float = 0.0, served: ServedLog | None = None) -> None:
        super().__init__(chunk_delay=chunk_delay, key_prefix=None, usage_shape="minimal",
                         models=("llama3.2", "qwen2.5:7b"), served=served)

    def error_body(self, status: int, message: str, param: str | None = None) -> dict[str, Any]:
        return {"error": message}

    def completion_id(self) -> str:
        return f"chatcmpl-{next(_ids)}"

    def routes(self) -> list[Route]:
        openai_errors = super().error_body
        return [
            Route("/api/chat", self.endpoint(self._native), methods=["POST"]),
            Route("/v1/chat/completions", self.endpoint(self._chat, errors=openai_errors), methods=["POST"]),
            Route("/v1/models", self.endpoint(self._models, needs_body=False), methods=["GET"]),
        ]

    def _native(self, request: Request, body: dict[str, Any], served: Served) -> Response:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "model is required")
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise ApiError(400, "messages is required")
        options = body.get("options")
        if not isinstance(options, dict):
            options = {}
        limit = options.get("num_predict")
        reply = plan_reply([content_text(m.get("content")) for m in messages if isinstance(m, dict)],
                           limit if isinstance(limit, int) and limit > 0 else None)
        prompt_ns = reply.prompt_tokens * PROMPT_NS_PER_TOKEN
        eval_ns = reply.completion_tokens * EVAL_NS_PER_TOKEN
        counts = {
            "done_reason": "length" if reply.truncated else "stop", "done": True,
            "total_duration": LOAD_NS + prompt_ns + eval_ns + 1_000_000, "load_duration": LOAD_NS,
            "prompt_eval_count": reply.prompt_tokens, "prompt_eval_duration": prompt_ns,
            "eval_count": reply.completion_tokens, "eval_duration": eval_ns,
        }
        served.stream = body.get("stream", True) is not False  # Ollama streams unless told not to
        served.usage = {k: v for k, v in counts.items() if k.endswith(("_count", "_duration"))}
        served.tokens = Tokens(reply.prompt_tokens, reply.completion_tokens)
        if not served.stream:
            return JSONResponse({"model": model, "created_at": _now(),
                                 "message": {"role": "assistant", "content": reply.text}, **counts})

        def lines() -> Iterator[str]:
            for piece in reply.pieces:
                yield json.dumps({"model": model, "created_at": _now(),
                                  "message": {"role": "assistant", "content": piece}, "done": False}) + "\n"
            yield json.dumps({"model": model, "created_at": _now(),
                              "message": {"role": "assistant", "content": ""}, **counts}) + "\n"

        return self.stream(request, served, lines(), "application/x-ndjson")
