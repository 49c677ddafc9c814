"""Upstream provider keys for the gateway: sealed with the vault, shown only as fingerprints.

One credential per organisation and provider in `provider_credentials`. The sealed secret is bound
to `org:<id>/provider:<name>`, so a ciphertext copied to another row does not open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from tallybook.ledger import schema as t
from tallybook.ledger.store import utcnow
from tallybook.security.redaction import fingerprint
from tallybook.security.vault import Vault


@dataclass(frozen=True, slots=True)
class ProviderDefaults:
    label: str
    env_var: str | None  # where `tallybook providers add` looks for the key; None: keyless
    base_url: str


PROVIDERS = {
    "openai": ProviderDefaults("OpenAI", "OPENAI_API_KEY", "https://api.openai.com"),
    "anthropic": ProviderDefaults("Anthropic", "ANTHROPIC_API_KEY", "https://api.anthropic.com"),
    "cohere": ProviderDefaults("Cohere", "COHERE_API_KEY", "https://api.cohere.com"),
    "ollama": ProviderDefaults("Ollama", None, "http://localhost:11434"),
}


@dataclass(frozen=True, slots=True)
class Credential:
    org_id: int
    provider: str
    base_url: str
    key_fingerprint: str | None
    created_at: datetime


def credential_context(org_id: int, provider: str) -> str:
    return f"org:{org_id}/provider:{provider}"


def save_credential(conn: Connection, vault: Vault, *, org_id: int, provider: str, base_url: str,
                    secret: str | None) -> bool:
    """Store (or replace) the organisation's key for `provider`. Returns True when it replaced one."""
    c = t.provider_credentials.c
    values = {
        "base_url": base_url.rstrip("/"),
        "secret_sealed": None if secret is None else vault.seal(secret, context=credential_context(org_id, provider)),
        "key_fingerprint": None if secret is None else fingerprint(secret),
        "created_at": utcnow(),
    }
    found = conn.execute(select(c.id).where(c.org_id == org_id, c.provider == provider)).first()
    if found is None:
        conn.execute(insert(t.provider_credentials).values(org_id=org_id, provider=provider, **values))
        return False
    conn.execute(update(t.provider_credentials).where(c.id == found.id).values(**values))
    return True


def list_credentials(conn: Connection, org_id: int | None = None) -> list[Credential]:
    """The organisation's credentials (every organisation's when `org_id` is None), without secrets."""
    c = t.provider_credentials.c
    query = select(c.org_id, c.provider, c.base_url, c.key_fingerprint, c.created_at).order_by(c.org_id, c.provider)
    if org_id is not None:
        query = query.where(c.org_id == org_id)
    return [Credential(r.org_id, r.provider, r.base_url, r.key_fingerprint, r.created_at) for r in conn.execute(query)]


def open_credentials(conn: Connection, vault: Vault) -> list[tuple[Credential, str | None]]:
    """Every organisation's credentials with their secrets opened, for building the gateway's upstreams."""
    c = t.provider_credentials.c
    opened = []
    for r in conn.execute(select(t.provider_credentials).order_by(c.org_id, c.provider)):
        secret = None if r.secret_sealed is None else vault.open(
            r.secret_sealed, context=credential_context(r.org_id, r.provider))
        opened.append((Credential(r.org_id, r.provider, r.base_url, r.key_fingerprint, r.created_at), secret))
    return opened


def remove_credential(conn: Connection, org_id: int, provider: str) -> bool:
    c = t.provider_credentials.c
    result = conn.execute(delete(t.provider_credentials).where(c.org_id == org_id, c.provider == provider))
    return bool(result.rowcount)
