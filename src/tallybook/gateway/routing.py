"""What a request asks for: its route (endpoint and API shape), its provider, its credentials and
attribution headers, and the error envelope of its shape.

    ROUTES[(method, path)] -> Route        the endpoints the gateway serves
    choose_provider(route, header, model)  X-LLM-Provider, else the model's name, else the shape's own
    error_response(shape, status, message) the bytes of an error in the provider's own envelope
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from tallybook.gateway.events import utcnow
from tallybook.gateway.keys import KeyInfo
from tallybook.gateway.providers import anthropic, cohere, ollama, openai
from tallybook.gateway.providers.base import Dialect, Upstream

PROVIDERS = ("openai", "anthropic", "cohere", "ollama")


@dataclass(frozen=True, slots=True)
class Route:
    endpoint: str  # chat.completions | responses | embeddings | models | messages | messages.count_tokens ...
    shape: str  # the API shape the client speaks, hence its error envelope: openai | anthropic | cohere | ollama
    providers: tuple[str, ...]  # the providers that serve it, the first the default
    has_body: bool = True


ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/v1/chat/completions"): Route("chat.completions", "openai", PROVIDERS),
    ("POST", "/v1/responses"): Route("responses", "openai", ("openai",)),
    ("POST", "/v1/embeddings"): Route("embeddings", "openai", ("openai", "cohere", "ollama")),
    ("GET", "/v1/models"): Route("models", "openai", PROVIDERS, has_body=False),
    ("POST", "/v1/messages"): Route("messages", "anthropic", ("anthropic",)),
    ("POST", "/v1/messages/count_tokens"): Route("messages.count_tokens", "anthropic", ("anthropic",)),
    ("POST", "/v2/chat"): Route("cohere.chat", "cohere", ("cohere",)),
    ("POST", "/api/chat"): Route("ollama.chat", "ollama", ("ollama",)),
}
# Alias paths some SDKs use (base_url without /v1).
ROUTES[("POST", "/chat/completions")] = ROUTES[("POST", "/v1/chat/completions")]

MODEL_PROVIDERS = (
    (re.compile(r"^(gpt-|o\d|chatgpt-|text-embedding-|omni-|codex-|davinci|babbage)"), "openai"),
    (re.compile(r"^claude-"), "anthropic"),
    (re.compile(r"^(command|embed-|rerank-|c4ai-)"), "cohere"),
    (re.compile(r"^(llama|qwen|mistral|mixtral|gemma|phi|deepseek|codellama|nomic-embed)|:"), "ollama"),
)

ERROR_BODIES = {"openai": openai.error_body, "anthropic": anthropic.error_body, "cohere": cohere.error_body,
                "ollama": ollama.error_body}


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class RouteError(Exception):
    """A request the gateway answers itself, in the shape's error envelope."""

    def __init__(self, status: int, message: str, *, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


def choose_provider(route: Route, header: str | None, model: str | None) -> str:
    """The provider from X-LLM-Provider, else from the model's name, else the route's default."""
    if header:
        provider = header.strip().lower()
        if provider not in PROVIDERS:
            raise RouteError(404, f"Unknown provider {header!r} in X-LLM-Provider; use one of "
                                  f"{', '.join(PROVIDERS)}.")
        if provider not in route.providers:
            raise RouteError(404, f"{provider} does not serve {route.endpoint} through the gateway; "
                                  f"{route.endpoint} goes to {', '.join(route.providers)}.")
        return provider
    if model and len(route.providers) > 1:
        name = model.lower()
        for pattern, provider in MODEL_PROVIDERS:
            if pattern.search(name):
                if provider in route.providers:
                    return provider
                break
        raise RouteError(404, f"No provider is known for model {model!r}; name one with the header "
                              f"X-LLM-Provider ({', '.join(route.providers)}).")
    return route.providers[0]


def error_response(shape: str, status: int, message: str) -> bytes:
    return json.dumps(ERROR_BODIES[shape](status, message), separators=(",", ":")).encode()


def parse_tags(value: str | None) -> dict[str, str]:
    """`k=v,k=v` from X-Tallybook-Tags; a part without `=` is a tag with an empty value."""
    tags: dict[str, str] = {}
    if not value:
        return tags
    for part in value.split(","):
        key, _, val = part.partition("=")
        if key.strip():
            tags[key.strip()[:100]] = val.strip()[:200]
    return tags


def loads(raw: bytes) -> Any:
    """orjson (~10x faster); Python's json for what orjson refuses but is read by it (NaN, huge integers)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = loads(raw)
    except ValueError as exc:
        raise RouteError(400, f"The request body is not valid JSON ({exc}); send a JSON object.") from None
    if not isinstance(body, dict):
        raise RouteError(400, "The request body must be a JSON object.")
    return body


def request_model(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    return model if isinstance(model, str) and model else None


class Call:
    """What the gateway knows of one request as it goes (one object per request, slotted)."""

    __slots__ = (
        "body",
        "dialect",
        "estimate",
        "event_id",
        "headers",
        "idem",
        "key",
        "model",
        "provider",
        "reservation",
        "route",
        "started",
        "ts",
        "upstream",
    )

    def __init__(self, route: Route, headers: dict[bytes, bytes]) -> None:
        self.route, self.headers = route, headers
        self.started, self.ts = time.perf_counter(), utcnow()
        self.key: KeyInfo | None = None
        self.provider: str = route.providers[0]
        self.model: str | None = None
        self.body: dict[str, Any] = {}
        idem = headers.get(b"idempotency-key")
        self.idem = idem.decode("utf-8", "replace")[:200] if idem else None
        self.event_id = ""
        self.reservation: Any = None
        self.estimate = 0  # tokens told to the rate limiter
        self.upstream: Upstream | None = None
        self.dialect: Dialect | None = None


ASK_FOR_USAGE = b'{"stream_options":{"include_usage":true},'


def with_stream_usage(route: Route, body: dict[str, Any], raw: bytes) -> tuple[bytes, bool]:
    """Ask an OpenAI-shaped stream for its usage chunk; True when the client did not ask for it.

    Without `stream_options` the member is spliced in after the object's opening brace, so every other
    byte the client sent goes up as it was (and a large body is not serialised again)."""
    if route.endpoint != "chat.completions" or body.get("stream") is not True:
        return raw, False
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return raw, False
    start = len(raw) - len(raw.lstrip(b" \t\r\n"))
    if "stream_options" not in body and raw[start:start + 1] == b"{" and raw[start + 1:start + 2] != b"\x00":
        return raw[:start] + ASK_FOR_USAGE + raw[start + 1:], True  # (an object with members: "stream" is one)
    body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode(), True


def output_cap(body: dict[str, Any]) -> int:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        if isinstance(body.get(name), int):
            return int(body[name])
    return 0


def header_text(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("utf-8", "replace").strip() or None if value else None


def json_object(content: bytes) -> dict[str, Any] | None:
    try:
        data = loads(content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
