"""Cohere: its own v2 chat (`/v2/chat`), and OpenAI's shape on its compatibility API
(provider-apis.md §7.1). Usage is billed units, which is what Cohere charges (tokens >= billed,
because of its prompt template)."""

from __future__ import annotations

from typing import Any, ClassVar

from tallybook.gateway.events import Usage
from tallybook.gateway.providers.base import NO_USAGE, Dialect, Upstream, num
from tallybook.gateway.providers.openai import CHAT, EMBEDDINGS


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"id": None, "message": message}


class CohereChat(Dialect):
    name = "cohere.chat"

    def usage(self, data: dict[str, Any]) -> Usage | None:
        usage = data.get("usage")
        if not isinstance(usage, dict):
            return None
        billed = usage.get("billed_units")
        counted = billed if isinstance(billed, dict) else usage.get("tokens")
        if not isinstance(counted, dict):
            return None
        cached = num(usage.get("cached_tokens"))
        return Usage(input_tokens=max(num(counted.get("input_tokens")) - cached, 0), cache_read_tokens=cached,
                     output_tokens=num(counted.get("output_tokens")))

    def may_carry_usage(self, event: bytes) -> bool:
        return event.startswith(b"event: message-end")

    def usage_in_event(self, data: dict[str, Any], seen: Usage | None) -> Usage | None:
        delta = data.get("delta")
        return self.usage(delta) if isinstance(delta, dict) else None

    def terminal(self, event: bytes) -> bool:
        return event.startswith(b"event: message-end")

    def text_in_event(self, data: dict[str, Any]) -> str:
        if data.get("type") != "content-delta":
            return ""
        message = (data.get("delta") or {}).get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        return str(content.get("text") or "") if isinstance(content, dict) else ""


COHERE_CHAT = CohereChat()


class CohereUpstream(Upstream):
    name = "cohere"
    paths: ClassVar[dict[str, str]] = {"cohere.chat": "/v2/chat", "chat.completions": "/compatibility/v1/chat/completions",
             "embeddings": "/compatibility/v1/embeddings", "models": "/compatibility/v1/models"}
    dialects: ClassVar[dict[str, Dialect]] = {"cohere.chat": COHERE_CHAT, "chat.completions": CHAT, "embeddings": EMBEDDINGS,
                "models": NO_USAGE}
