"""`/api/v1/orgs`: the organisation the principal acts on, and every organisation its user belongs to."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from tallybook.analytics.benchmark import is_opted_in
from tallybook.ledger import schema as t
from tallybook.web.api.errors import ApiRoute, not_found
from tallybook.web.api.params import Member, Reading
from tallybook.web.api.schemas import Currency, Moment, Strict
from tallybook.web.auth import Role, user_orgs

router = APIRouter(route_class=ApiRoute, tags=["organisations"])


class CurrentOrg(Strict):
    id: int
    slug: str
    name: str
    currency: Currency
    created_at: Moment
    role: Role
    benchmark_opt_in: bool


class OrgOut(Strict):
    id: int
    slug: str
    name: str
    role: Role
    current: bool


class Orgs(Strict):
    orgs: list[OrgOut]


@router.get("/orgs/current", response_model=CurrentOrg, summary="The organisation this token or session acts on")
def current(principal: Member, conn: Reading) -> CurrentOrg:
    o = t.organisations.c
    row = conn.execute(select(t.organisations).where(o.id == principal.org_id)).first()
    if row is None:
        raise not_found("The organisation is gone.")
    return CurrentOrg(id=row.id, slug=row.slug, name=row.name, currency=row.currency, created_at=row.created_at,
                      role=principal.role, benchmark_opt_in=is_opted_in(conn, principal.org_id))


@router.get("/orgs", response_model=Orgs, summary="The user's organisations and roles")
def mine(principal: Member, conn: Reading) -> Orgs:
    """A browser session switches between them with POST /orgs/switch; an API token stays bound to one."""
    return Orgs(orgs=[OrgOut(id=m.org_id, slug=m.org_slug, name=m.org_name, role=m.role,
                             current=m.org_id == principal.org_id) for m in user_orgs(conn, principal.user_id)])
