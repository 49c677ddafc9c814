"""Anthropic: Messages and count_tokens in its own shape, chat completions on its OpenAI-compatible
endpoint (provider-apis.md §4). Stream usage is cumulative: message_start holds the input side,
each message_delta the running totals, so the last one wins."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from tallybook.gateway.events import Usage
from tallybook.gateway.providers.base import NO_USAGE, Dialect, Upstream, num
from tallybook.gateway.providers.openai import CHAT

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 502: "api_error",
               504: "timeout_error", 529: "overloaded_error"}


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error envelope, which the anthropic SDK reads into `APIStatusError.message`."""
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


class Messages(Dialect):
    name = "messages"

    def usage(self, data: dict[str, Any]) -> Usage | None:
        usage = data.get("usage")
        if not isinstance(usage, dict):
            return None
        return self._merge(usage, None)

    def _merge(self, usage: dict[str, Any], seen: Usage | None) -> Usage:
        """`usage` over what earlier events said: a field a message_delta leaves out keeps its value."""
        found = Usage() if seen is None else replace(seen)
        if "input_tokens" in usage:
            found.input_tokens = num(usage["input_tokens"])
        if "cache_read_input_tokens" in usage:
            found.cache_read_tokens = num(usage["cache_read_input_tokens"])
        creation = usage.get("cache_creation")
        if isinstance(creation, dict):
            found.cache_write_5m_tokens = num(creation.get("ephemeral_5m_input_tokens"))
            found.cache_write_1h_tokens = num(creation.get("ephemeral_1h_input_tokens"))
        elif "cache_creation_input_tokens" in usage:
            found.cache_write_5m_tokens = num(usage["cache_creation_input_tokens"])
            found.cache_write_1h_tokens = 0
        if "output_tokens" in usage:
            found.output_tokens = num(usage["output_tokens"])
        details = usage.get("output_tokens_details")
        if isinstance(details, dict):
            found.reasoning_tokens = num(details.get("thinking_tokens"))
        return found

    def may_carry_usage(self, event: bytes) -> bool:
        return event.startswith((b"event: message_start", b"event: message_delta"))

    def usage_in_event(self, data: dict[str, Any], seen: Usage | None) -> Usage | None:
        if data.get("type") == "message_start" and isinstance(data.get("message"), dict):
            usage = data["message"].get("usage")
        else:
            usage = data.get("usage")
        return self._merge(usage, seen) if isinstance(usage, dict) else None

    def terminal(self, event: bytes) -> bool:
        return event.startswith(b"event: message_stop")

    def text_in_event(self, data: dict[str, Any]) -> str:
        delta = data.get("delta") if data.get("type") == "content_block_delta" else None
        if not isinstance(delta, dict):
            return ""
        for name in ("text", "thinking", "partial_json"):
            if isinstance(delta.get(name), str):
                return str(delta[name])
        return ""


MESSAGES = Messages()


class AnthropicUpstream(Upstream):
    name = "anthropic"
    paths: ClassVar[dict[str, str]] = {"messages": "/v1/messages", "messages.count_tokens": "/v1/messages/count_tokens",
             "chat.completions": "/v1/chat/completions", "models": "/v1/models"}
    dialects: ClassVar[dict[str, Dialect]] = {"messages": MESSAGES, "messages.count_tokens": NO_USAGE, "chat.completions": CHAT,
                "models": NO_USAGE}

    def auth_headers(self, api_key: str | None) -> list[tuple[bytes, bytes]]:
        return [(b"x-api-key", api_key.encode())] if api_key else []
