"""Ollama: its native `/api/chat` (NDJSON stream, counts and nanosecond durations on the last line)
and its OpenAI-compatible API (provider-apis.md §7.2, §7.3).

A local model costs GPU time, not tokens: GPU-seconds are the native answer's `total_duration` (load,
prompt evaluation and generation: the time the model held the GPU for this request). The
OpenAI-compatible API reports no durations; there the gateway counts the request's wall time.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from tallybook.gateway.events import Usage
from tallybook.gateway.providers.base import NO_USAGE, Dialect, Upstream, num
from tallybook.gateway.providers.openai import CHAT, EMBEDDINGS

NANOS = Decimal(1_000_000_000)


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": message}


class OllamaChat(Dialect):
    name = "ollama.chat"
    stream_kind = "ndjson"

    def usage(self, data: dict[str, Any]) -> Usage | None:
        if not data.get("done"):
            return None
        duration = data.get("total_duration")
        gpu = (Decimal(int(duration)) / NANOS) if isinstance(duration, int | float) else None
        return Usage(input_tokens=num(data.get("prompt_eval_count")), output_tokens=num(data.get("eval_count")),
                     gpu_seconds=gpu)

    def may_carry_usage(self, event: bytes) -> bool:
        return b'"done":true' in event or b'"done": true' in event

    def usage_in_event(self, data: dict[str, Any], seen: Usage | None) -> Usage | None:
        return self.usage(data)

    def terminal(self, event: bytes) -> bool:
        return self.may_carry_usage(event)

    def text_in_event(self, data: dict[str, Any]) -> str:
        message = data.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return str(message["content"])
        return str(data.get("response") or "")


OLLAMA_CHAT = OllamaChat()


class OllamaUpstream(Upstream):
    name = "ollama"
    paths: ClassVar[dict[str, str]] = {"ollama.chat": "/api/chat", "chat.completions": "/v1/chat/completions",
             "embeddings": "/v1/embeddings", "models": "/v1/models"}
    dialects: ClassVar[dict[str, Dialect]] = {"ollama.chat": OLLAMA_CHAT, "chat.completions": CHAT, "embeddings": EMBEDDINGS,
                "models": NO_USAGE}
