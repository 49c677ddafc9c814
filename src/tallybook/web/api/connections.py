"""`/api/v1/connections`: provider admin keys in (checked with one cheap call, sealed by the vault),
fingerprints out (`tallybook connect`, `tallybook connections ...`). No answer ever carries a key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select

from tallybook import audit
from tallybook.cli.connect import secret_context
from tallybook.config import Settings
from tallybook.connectors.registry import PROVIDERS, build_connector, provider_info
from tallybook.ledger import schema as t
from tallybook.ledger import store
from tallybook.security.redaction import fingerprint, redact
from tallybook.security.vault import Vault
from tallybook.web.api.errors import PROVIDER_ERRORS, ApiRoute, conflict, not_found
from tallybook.web.api.params import Admin, Member, ObjectId, Reading, actor, engine
from tallybook.web.api.schemas import Moment, Strict
from tallybook.web.auth import Principal

router = APIRouter(route_class=ApiRoute, tags=["connections"])
Secret = Annotated[str, Field(min_length=8, max_length=500, description="The provider's admin key; never returned.")]


class ConnectionOut(Strict):
    id: int
    name: str
    provider: str
    base_url: str
    key: str = Field(description="The key's fingerprint, e.g. sk-admin-...a1b2 (never the key).")
    status: str
    created_at: Moment
    rotated_at: Moment | None
    last_sync_at: Moment | None
    last_error: str | None


class Connections(Strict):
    connections: list[ConnectionOut]


class KeyCheckOut(Strict):
    organization: str | None
    permissions: list[str]


class Connected(Strict):
    connection: ConnectionOut
    check: KeyCheckOut
    rotated: bool


class ConnectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str = Field(description=f"One of: {', '.join(PROVIDERS)}.", max_length=40)
    key: Secret
    name: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                             description="Connection name (default: the provider's name).")
    base_url: str | None = Field(None, max_length=500, pattern=r"^https?://[^\s]+$",
                                 description="API base URL (default: the provider's real API).")


class KeyRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: Secret


def row_out(r: Any) -> ConnectionOut:
    return ConnectionOut(id=r.id, name=r.name, provider=r.provider, base_url=r.base_url, key=r.key_fingerprint,
                         status=r.status, created_at=r.created_at, rotated_at=r.rotated_at,
                         last_sync_at=r.last_sync_at, last_error=None if r.last_error is None else redact(r.last_error))


def find(conn: Connection, org_id: int, connection_id: int) -> Any:
    c = t.connections.c
    row = conn.execute(select(t.connections).where(c.org_id == org_id, c.id == connection_id)).first()
    if row is None:
        raise not_found(f"No connection {connection_id} in this organisation.")
    return row


def check_and_save(request: Request, principal: Principal, provider: str, key: str, name: str,
                   base_url: str) -> Connected:
    """What `tallybook connect` does: check the key with one call, seal it, store the connection (or rotate
    the key of the one of that name)."""
    settings: Settings = request.app.state.settings
    hint = fingerprint(key)
    connector = build_connector(provider, key, base_url=base_url, key_hint=hint, settings=settings)
    try:
        check = connector.check_key()
    finally:
        connector.close()
    org_id = principal.org_id
    sealed = Vault.from_settings(settings).seal(key, context=secret_context(org_id, name))
    with engine(request).begin() as conn:
        connection_id, rotated = store.save_connection(
            conn, org_id=org_id, name=name, provider=provider, base_url=base_url, secret_sealed=sealed,
            key_fingerprint=hint)
        audit.record(conn, org_id, actor(principal), "connection.rotated" if rotated else "connection.created",
                     "connection", name, {"provider": provider, "base_url": base_url, "key": hint, "verified": True})
        row = find(conn, org_id, connection_id)
    return Connected(connection=row_out(row), check=KeyCheckOut(organization=check.organization,
                                                                permissions=list(check.permissions)),
                     rotated=rotated)


@router.get("/connections", response_model=Connections, summary="Connections with status and last sync")
def list_connections(principal: Member, conn: Reading) -> Connections:
    return Connections(connections=[row_out(r) for r in store.list_connections(conn, principal.org_id)])


@router.get("/connections/{connection_id}", response_model=ConnectionOut, summary="One connection")
def get_connection(connection_id: ObjectId, principal: Member, conn: Reading) -> ConnectionOut:
    return row_out(find(conn, principal.org_id, connection_id))


@router.post("/connections", response_model=Connected, status_code=201, responses=PROVIDER_ERRORS,
             summary="Connect a provider (admin)")
def create_connection(body: ConnectionIn, request: Request, principal: Admin) -> Connected:
    """Checks the admin key with one cheap API call (422 `key_rejected` when the provider refuses it),
    then stores it encrypted. A name already in use is a 409: rotate its key instead."""
    info = provider_info(body.provider)
    name = body.name or body.provider
    with engine(request).connect() as conn:
        if any(r.name == name for r in store.list_connections(conn, principal.org_id)):
            raise conflict(f"A connection named {name!r} exists; rotate its key with "
                           "POST /api/v1/connections/{id}/rotate, or choose another name.")
    return check_and_save(request, principal, info.name, body.key.strip(), name,
                          (body.base_url or info.base_url).rstrip("/"))


@router.post("/connections/{connection_id}/rotate", response_model=Connected, responses=PROVIDER_ERRORS,
             summary="Rotate a connection's key (admin)")
def rotate_key(connection_id: ObjectId, body: KeyRotation, request: Request, principal: Admin) -> Connected:
    """The new key is checked first; the history synced with the old one stays."""
    with engine(request).connect() as conn:
        row = find(conn, principal.org_id, connection_id)
    return check_and_save(request, principal, row.provider, body.key.strip(), row.name, row.base_url)


@router.delete("/connections/{connection_id}", status_code=204, summary="Remove a connection (admin)")
def delete_connection(connection_id: ObjectId, request: Request, principal: Admin) -> None:
    """Forgets the connection and its stored key; the usage already synced stays."""
    with engine(request).begin() as conn:
        row = find(conn, principal.org_id, connection_id)
        store.delete_connection(conn, principal.org_id, row.name)
        audit.record(conn, principal.org_id, actor(principal), "connection.removed", "connection", row.name)
