"""One Upstream per provider: base URL, auth, usage reading, error envelope (a family of
interchangeable implementations, as httpx's transports)."""

from __future__ import annotations

from tallybook.gateway.providers.anthropic import AnthropicUpstream
from tallybook.gateway.providers.base import Upstream, Upstreams
from tallybook.gateway.providers.cohere import CohereUpstream
from tallybook.gateway.providers.ollama import OllamaUpstream
from tallybook.gateway.providers.openai import OpenAIUpstream

UPSTREAMS: dict[str, type[Upstream]] = {
    "openai": OpenAIUpstream, "anthropic": AnthropicUpstream, "cohere": CohereUpstream, "ollama": OllamaUpstream,
}
DEFAULT_BASE_URLS = {"openai": "https://api.openai.com", "anthropic": "https://api.anthropic.com",
                     "cohere": "https://api.cohere.com", "ollama": "http://localhost:11434"}

__all__ = [
    "DEFAULT_BASE_URLS",
    "UPSTREAMS",
    "AnthropicUpstream",
    "CohereUpstream",
    "OllamaUpstream",
    "OpenAIUpstream",
    "Upstream",
    "Upstreams",
]
