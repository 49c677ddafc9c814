"""OpenAI: chat completions, responses, embeddings and models (provider-apis.md §2).

Its chat shape is also what Cohere's, Ollama's and Anthropic's compatibility endpoints serve, so the
dialects here are shared with those upstreams.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tallybook.gateway.events import Usage
from tallybook.gateway.providers.base import NO_USAGE, Dialect, Upstream, num

ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_exceeded", 502: "server_error", 504: "server_error"}
ERROR_CODES = {401: "invalid_api_key", 404: "model_not_found", 413: "request_too_large",
               429: "rate_limit_exceeded", 502: "upstream_error", 504: "upstream_timeout"}


def error_body(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error envelope, which the openai SDK reads into `APIStatusError.message`."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": None, "code": ERROR_CODES.get(status)}}


def _details(usage: dict[str, Any], name: str) -> dict[str, Any]:
    value = usage.get(name)
    return value if isinstance(value, dict) else {}


class Chat(Dialect):
    """`usage` of chat.completions; in a stream, the usage-only chunk before `data: [DONE]`."""

    name = "chat.completions"

    def usage(self, data: dict[str, Any]) -> Usage | None:
        usage = data.get("usage")
        if not isinstance(usage, dict):
            return None
        prompt, out = _details(usage, "prompt_tokens_details"), _details(usage, "completion_tokens_details")
        cached, written = num(prompt.get("cached_tokens")), num(prompt.get("cache_write_tokens"))
        return Usage(
            input_tokens=max(num(usage.get("prompt_tokens")) - cached - written, 0),
            cache_read_tokens=cached, cache_write_5m_tokens=written,
            output_tokens=num(usage.get("completion_tokens")), reasoning_tokens=num(out.get("reasoning_tokens")),
            audio_input_tokens=num(prompt.get("audio_tokens")), audio_output_tokens=num(out.get("audio_tokens")))

    def may_carry_usage(self, event: bytes) -> bool:
        return b'"usage":{' in event or b'"usage": {' in event

    def usage_in_event(self, data: dict[str, Any], seen: Usage | None) -> Usage | None:
        return self.usage(data)

    def terminal(self, event: bytes) -> bool:
        return event.startswith((b"data: [DONE]", b"data:[DONE]"))

    def text_in_event(self, data: dict[str, Any]) -> str:
        parts = []
        for choice in data.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                for name in ("content", "reasoning_content", "refusal"):
                    if isinstance(delta.get(name), str):
                        parts.append(delta[name])
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") if isinstance(call, dict) else None
                    if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                        parts.append(function["arguments"])
        return "".join(parts)


class Responses(Dialect):
    """`usage` of the Responses API; in a stream, at `response.usage` of its last event."""

    name = "responses"
    TERMINAL = (b"event: response.completed", b"event: response.incomplete", b"event: response.failed")

    def usage(self, data: dict[str, Any]) -> Usage | None:
        usage = data.get("usage")
        if not isinstance(usage, dict):
            return None
        given, out = _details(usage, "input_tokens_details"), _details(usage, "output_tokens_details")
        cached, written = num(given.get("cached_tokens")), num(given.get("cache_write_tokens"))
        return Usage(input_tokens=max(num(usage.get("input_tokens")) - cached - written, 0),
                     cache_read_tokens=cached, cache_write_5m_tokens=written,
                     output_tokens=num(usage.get("output_tokens")),
                     reasoning_tokens=num(out.get("reasoning_tokens")))

    def may_carry_usage(self, event: bytes) -> bool:
        return event.startswith(self.TERMINAL) or b'"type":"response.completed"' in event

    def usage_in_event(self, data: dict[str, Any], seen: Usage | None) -> Usage | None:
        response = data.get("response")
        return self.usage(response) if isinstance(response, dict) else None

    def terminal(self, event: bytes) -> bool:
        return event.startswith(self.TERMINAL)

    def text_in_event(self, data: dict[str, Any]) -> str:
        if str(data.get("type", "")).endswith(".delta") and isinstance(data.get("delta"), str):
            return str(data["delta"])
        return ""


class Embeddings(Dialect):
    name = "embeddings"

    def usage(self, data: dict[str, Any]) -> Usage | None:
        usage = data.get("usage")
        if not isinstance(usage, dict):
            return None
        return Usage(input_tokens=num(usage.get("prompt_tokens")))


CHAT, RESPONSES, EMBEDDINGS = Chat(), Responses(), Embeddings()


class OpenAIUpstream(Upstream):
    name = "openai"
    paths: ClassVar[dict[str, str]] = {"chat.completions": "/v1/chat/completions", "responses": "/v1/responses",
             "embeddings": "/v1/embeddings", "models": "/v1/models"}
    dialects: ClassVar[dict[str, Dialect]] = {"chat.completions": CHAT, "responses": RESPONSES, "embeddings": EMBEDDINGS, "models": NO_USAGE}
