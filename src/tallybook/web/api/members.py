"""`/api/v1/members`: the organisation's members and roles; admins add, change and remove them through
the same service functions as `tallybook users ...`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tallybook.web.api.errors import ApiRoute, not_found
from tallybook.web.api.params import Admin, Analyst, ObjectId, Reading, actor, engine
from tallybook.web.api.schemas import Moment, Strict
from tallybook.web.auth import Role, add_member, create_user, list_members, remove_member, set_role
from tallybook.web.auth.users import find_user_id

router = APIRouter(route_class=ApiRoute, tags=["members"])


class MemberOut(Strict):
    user_id: int
    email: str
    role: Role
    created_at: Moment = Field(description="When the user joined the organisation.")
    last_login_at: Moment | None


class Members(Strict):
    members: list[MemberOut]


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    role: Role
    password: str | None = Field(None, min_length=10, max_length=200, description=(
        "For a user new to this deployment: their password (without one they sign in by single sign-on). "
        "Ignored for an existing user; never returned."))


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role


def _member(request: Request, org_id: int, user_id: int) -> MemberOut:
    with engine(request).connect() as conn:
        found = [m for m in list_members(conn, org_id) if m.user_id == user_id]
    if not found:
        raise not_found(f"No member {user_id} in this organisation.")
    m = found[0]
    return MemberOut(user_id=m.user_id, email=m.email, role=m.role, created_at=m.created_at,
                     last_login_at=m.last_login_at)


@router.get("/members", response_model=Members, summary="Members and roles (analyst)")
def members(principal: Analyst, conn: Reading) -> Members:
    return Members(members=[MemberOut(user_id=m.user_id, email=m.email, role=m.role, created_at=m.created_at,
                                      last_login_at=m.last_login_at) for m in list_members(conn, principal.org_id)])


@router.get("/members/{user_id}", response_model=MemberOut, summary="One member (analyst)")
def member(user_id: ObjectId, request: Request, principal: Analyst) -> MemberOut:
    return _member(request, principal.org_id, user_id)


@router.post("/members", response_model=MemberOut, status_code=201, summary="Add a member (admin)")
def add(body: MemberIn, request: Request, principal: Admin) -> MemberOut:
    """Adds an existing user by email, or creates the user first. 409 when already a member."""
    with engine(request).begin() as conn:
        user_id = find_user_id(conn, body.email)
        if user_id is None:
            user_id = create_user(conn, body.email, body.password)
        add_member(conn, principal.org_id, user_id, body.role, actor=actor(principal))
    return _member(request, principal.org_id, user_id)


@router.patch("/members/{user_id}", response_model=MemberOut, summary="Change a member's role (admin)")
def change_role(user_id: ObjectId, body: RoleChange, request: Request, principal: Admin) -> MemberOut:
    """The organisation keeps at least one admin (409 otherwise)."""
    with engine(request).begin() as conn:
        set_role(conn, principal.org_id, user_id, body.role, actor=actor(principal))
    return _member(request, principal.org_id, user_id)


@router.delete("/members/{user_id}", status_code=204, summary="Remove a member (admin)")
def remove(user_id: ObjectId, request: Request, principal: Admin) -> None:
    """Their sessions in this organisation end and their API tokens here are revoked."""
    with engine(request).begin() as conn:
        remove_member(conn, principal.org_id, user_id, actor=actor(principal))
