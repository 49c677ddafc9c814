"""Which providers tallybook can pull from, and how to build a connector for a stored connection."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tallybook.config import Settings
from tallybook.connectors.base import Connector
from tallybook.connectors.http import RetryPolicy
from tallybook.errors import ConfigError


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    label: str
    env_var: str  # where `tallybook connect` looks for the admin key
    base_url: str
    connector: str  # "module:Class", imported on first use
    key_help: str


PROVIDERS: dict[str, ProviderInfo] = {
    "openai": ProviderInfo(
        "openai", "OpenAI", "OPENAI_ADMIN_KEY", "https://api.openai.com/v1",
        "tallybook.connectors.openai:OpenAIConnector",
        "an organisation admin key (sk-admin-...) from platform.openai.com/settings/organization/admin-keys",
    ),
    "anthropic": ProviderInfo(
        "anthropic", "Anthropic", "ANTHROPIC_ADMIN_KEY", "https://api.anthropic.com",
        "tallybook.connectors.anthropic:AnthropicConnector",
        "an admin key (sk-ant-admin01-...) from the Claude Console, Settings > Admin keys",
    ),
    "claude_code": ProviderInfo(
        "claude_code", "Claude Code", "ANTHROPIC_ADMIN_KEY", "https://api.anthropic.com",
        "tallybook.connectors.claude_code:ClaudeCodeConnector",
        "the Anthropic admin key (sk-ant-admin01-...): Claude Code analytics share it",
    ),
    "cursor": ProviderInfo(
        "cursor", "Cursor", "CURSOR_ADMIN_KEY", "https://api.cursor.com",
        "tallybook.connectors.cursor:CursorConnector",
        "an admin API key (key_...) from the Cursor dashboard, Settings > Advanced > Admin API keys",
    ),
}


def provider_info(name: str) -> ProviderInfo:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ConfigError(f"Unknown provider {name!r}; choose one of: {', '.join(PROVIDERS)}.") from None


def build_connector(
    provider: str, api_key: str, *, base_url: str | None, key_hint: str, settings: Settings,
    transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] | None = None,
) -> Connector:
    info = provider_info(provider)
    module_name, class_name = info.connector.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs: dict[str, Any] = {
        "base_url": base_url or info.base_url, "key_hint": key_hint, "timeout": settings.http_timeout,
        "retry": RetryPolicy(attempts=settings.http_retries), "transport": transport,
        "strict": settings.strict_schema,
    }
    if sleep is not None:
        kwargs["sleep"] = sleep
    connector: Connector = cls(api_key, **kwargs)
    return connector
