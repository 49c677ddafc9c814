"""Settings, declared once: each with its environment name, default and help.

`SETTINGS` is the table the README's configuration section is written from; a
test fails when a setting here is missing from the README.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tallybook.errors import ConfigError


def _default_key_file() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return str(Path(base) / "tallybook" / "master.key")


def _default_spool_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "tallybook" / "spool")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLYBOOK_", extra="ignore", frozen=True)

    database_url: str = Field(
        "sqlite:///tallybook.db",
        description="SQLAlchemy URL of the ledger: sqlite:///path.db or postgresql+psycopg://user@host/db.",
    )
    master_key: str | None = Field(
        None,
        description="Base64 of 32 random bytes that encrypts provider admin keys. "
        "When unset, a key file is created on first use (see TALLYBOOK_MASTER_KEY_FILE).",
        repr=False,
    )
    master_key_file: str = Field(
        default_factory=_default_key_file,
        description="Where the generated master key lives (mode 0600) when TALLYBOOK_MASTER_KEY is unset.",
    )
    org: str = Field("default", description="The organisation a command acts on when --org is not given.")
    sync_default_days: int = Field(30, ge=1, description="Days fetched by a first `tallybook sync`.")
    sync_hourly_days: int = Field(
        2, ge=0, description="Recent days also fetched in hourly buckets (0 turns hourly sync off)."
    )
    http_timeout: float = Field(30.0, gt=0, description="Seconds before a provider request times out.")
    http_retries: int = Field(6, ge=1, description="Tries per provider request (429, 5xx, timeouts).")
    strict_schema: bool = Field(
        True,
        description="Stop a sync when a provider sends an unknown non-null field (it could merge distinct rows).",
    )

    gateway_max_body_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Largest request body the gateway forwards; larger ones get 413."
    )
    gateway_upstream_timeout: float = Field(
        300.0, gt=0, description="Seconds the gateway waits for an upstream's next byte before answering 504."
    )
    gateway_passthrough_keys: bool = Field(
        False,
        description="Forward the client's own provider key (Authorization / x-api-key) when it sends its "
        "virtual key in X-Tallybook-Key; otherwise the vault's key is used.",
    )
    gateway_spool_dir: str = Field(
        default_factory=_default_spool_dir,
        description="Directory of the gateway's durable event spool (flushed into the ledger every second).",
    )
    gateway_gpu_hour_cost: str | None = Field(
        None, description="USD per GPU-hour that prices Ollama requests (unset: they stay unpriced)."
    )
    gateway_customer_budgets: str = Field(
        "", description="Budgets per customer (X-Tallybook-Customer, or the key's customer) across all keys, "
        "e.g. acme=500/month,globex=100 EUR/day.",
    )
    gateway_tracing: bool = Field(
        False, description="Send an OpenTelemetry span per gateway request (GenAI semantic conventions) to the "
        "OTEL_EXPORTER_OTLP_* endpoint; needs pip install \"tallybook[otel]\". Off: no cost at all.",
    )

    # --- web (dashboard, REST API, sign-in) and the sync scheduler of `tallybook serve` ---
    web_host: str = Field("127.0.0.1", description="Address `tallybook serve` listens on (0.0.0.0: every interface).")
    web_port: int = Field(8000, ge=1, le=65535, description="Port `tallybook serve` listens on.")
    web_base_url: str | None = Field(
        None, description="Public URL of the dashboard behind a reverse proxy (e.g. https://tally.example.com); "
        "used for SSO redirects and printed links. Unset: the URL requests arrive on.",
    )
    cookie_secure: bool = Field(
        False, description="Mark the session cookie Secure (HTTPS only). Requests arriving over https get it anyway.",
    )
    session_days: int = Field(14, ge=1, description="Days a dashboard session lasts without use before signing in again.")
    login_max_attempts: int = Field(
        5, ge=1, description="Failed sign-ins allowed per email and client address before login answers 429.",
    )
    login_window_seconds: int = Field(
        900, ge=1, description="Window over which failed sign-ins are counted, and how long a throttled login waits.",
    )
    sync_schedule: str = Field(
        "daily@02:00", description="When `tallybook serve` syncs every connection: daily@HH:MM (UTC) or off.",
    )
    oidc_issuer: str | None = Field(
        None, description="OpenID Connect issuer URL for single sign-on (its /.well-known/openid-configuration "
        "is read). Unset: SSO off, email + password only.",
    )
    oidc_client_id: str | None = Field(None, description="Client id registered with the SSO provider.")
    oidc_client_secret: str | None = Field(None, description="Client secret registered with the SSO provider.",
                                           repr=False)
    oidc_default_org: str | None = Field(
        None, description="Organisation slug an SSO user without an account joins on first sign-in "
        "(unset: only users created beforehand with `tallybook users create` may sign in by SSO).",
    )
    oidc_default_role: str = Field("viewer", description="Role given to users who join through SSO: "
                                   "admin, analyst or viewer.")

    # --- billing: usage invoicing through Stripe Billing Meters ---
    stripe_api_key: str | None = Field(
        None, description="Stripe secret key (sk_live_... or sk_test_..., or a restricted key with billing "
        "meters, meter events and customers) for `tallybook billing`.", repr=False,
    )
    stripe_webhook_secret: str | None = Field(
        None, description="Signing secret (whsec_...) of the Stripe webhook endpoint /webhooks/stripe.", repr=False,
    )
    stripe_api_base: str = Field("https://api.stripe.com", description="Stripe API address (a test double's in tests).")
    billing_settle_minutes: int = Field(
        10, ge=0, description="Minutes after an hour ends before its usage is sent to Stripe (late gateway "
        "events land first; later changes become corrections).",
    )

    # --- alerts: how often rules are checked, retries, and the SMTP server for email channels ---
    alerts_interval: float = Field(
        30.0, gt=0, description="Seconds between alert checks in `tallybook gateway`, `tallybook serve` and "
        "`tallybook alerts run --watch` (budget alerts fire within two of these of being crossed).",
    )
    alerts_max_attempts: int = Field(6, ge=1, description="Tries per alert delivery (backoff 30 s, doubling) "
                                     "before it is recorded as failed.")
    smtp_host: str | None = Field(None, description="SMTP server for email alerts and reports (unset: email off).")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port (587 STARTTLS, 465 implicit TLS, 25 none).")
    smtp_tls: str = Field("starttls", description="SMTP encryption: starttls, ssl (implicit TLS) or none.")
    smtp_user: str | None = Field(None, description="SMTP login user (unset: no login).")
    smtp_password: str | None = Field(None, description="SMTP login password.", repr=False)
    smtp_from: str = Field("tallybook@localhost", description="From address of alert and report emails.")

    @field_validator("sync_schedule")
    @classmethod
    def _known_schedule(cls, value: str) -> str:
        if value != "off" and not re.fullmatch(r"daily@([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("TALLYBOOK_SYNC_SCHEDULE must be daily@HH:MM (UTC, e.g. daily@02:00) or off")
        return value

    @field_validator("oidc_default_role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value not in ("admin", "analyst", "viewer"):
            raise ValueError("TALLYBOOK_OIDC_DEFAULT_ROLE must be admin, analyst or viewer")
        return value

    @field_validator("smtp_tls")
    @classmethod
    def _known_tls(cls, value: str) -> str:
        if value not in ("starttls", "ssl", "none"):
            raise ValueError("TALLYBOOK_SMTP_TLS must be starttls, ssl or none")
        return value

    retention_gateway_events_days: int = Field(
        0, ge=0, description="Days `tallybook db prune` keeps gateway request events (usage_events); their hourly "
        "and daily usage stays. 0 keeps them forever.",
    )
    retention_provider_objects_days: int = Field(
        0, ge=0, description="Days `tallybook db prune` keeps provider objects (names and emails of provider users, "
        "projects, keys) that no sync has seen since. 0 keeps them forever.",
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("TALLYBOOK_DATABASE_URL must start with sqlite:// or postgresql://")
        return value


@dataclass(frozen=True)
class SettingDoc:
    env: str
    default: str
    help: str


def settings_table() -> list[SettingDoc]:
    """Every setting with its environment variable, default and help, for docs and `tallybook config`."""
    rows = []
    for name, info in Settings.model_fields.items():
        default = info.default_factory() if info.default_factory else info.default  # type: ignore[call-arg]
        rows.append(SettingDoc(f"TALLYBOOK_{name.upper()}", "" if default is None else str(default),
                               info.description or ""))
    return rows


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"TALLYBOOK_{str(e['loc'][0]).upper() if e['loc'] else ''}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"Invalid setting: {problems}. Fix the environment variable and try again.") from None


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
