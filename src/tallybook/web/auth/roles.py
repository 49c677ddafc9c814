"""Roles and the principal: who is asking, for which one organisation, with which role."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast

Role = Literal["admin", "analyst", "viewer"]
ROLES: tuple[Role, ...] = ("viewer", "analyst", "admin")  # ascending: each role may do what those before it may
_RANK = {role: rank for rank, role in enumerate(ROLES)}


def check_role(value: str) -> Role:
    if value not in _RANK:
        from tallybook.errors import AccessError

        raise AccessError(f"Unknown role {value!r}: use admin, analyst or viewer.")
    return cast(Role, value)


def at_least(role: str, needed: str) -> bool:
    return _RANK[cast(Role, role)] >= _RANK[cast(Role, needed)]


def lower_of(one: Role, other: Role) -> Role:
    return one if _RANK[one] <= _RANK[other] else other


@dataclass(frozen=True)
class Principal:
    """Bound to ONE organisation: an API token belongs to (user, org); a session has a current org."""

    user_id: int
    email: str
    org_id: int
    org_slug: str
    role: Role
    via: Literal["session", "token"]
    scopes: frozenset[str] = field(default=frozenset({"read", "write"}))  # a token's; sessions have both

    @property
    def actor(self) -> str:
        """Who to name in the audit log for a change this principal makes (pass as `actor=`)."""
        return f"web:{self.email}"

    def can(self, role: Role) -> bool:
        """True when this principal's role is `role` or above (admin > analyst > viewer)."""
        return at_least(self.role, role)
