"""The REST API under /api/v1 (one module per resource), documented at /api/v1/openapi.json.

Every route acts on the principal's one organisation (objects of another are 404), answers errors as
`{"error": {"code", "message"}}`, and takes its figures from the same analytics, pricing and ledger
functions the CLI calls. Roles: members (viewers too) read the dashboards' figures, analysts every
read and the CSV exports, admins change things; each operation states its role as `x-tallybook-role`
in the OpenAPI document. docs/api.md lists the routes.
"""

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from tallybook.web.api import (
    alerts,
    anomalies,
    audit,
    benchmark,
    billing,
    connections,
    costs,
    devtools,
    finance,
    forecast,
    keys,
    members,
    orgs,
    pricing,
    rates,
    reconcile,
    savings,
    seats,
    sync,
    trend,
    usage,
)
from tallybook.web.api.errors import ERROR_RESPONSES

ROLE_OF_DEPENDENCY = {"api_principal": "viewer", "require_viewer": "viewer", "require_analyst": "analyst",
                      "require_admin": "admin"}


def role_needed(dependant: Dependant) -> str | None:
    """The highest role any of the route's dependencies requires (None: the route checks no principal)."""
    order = ["viewer", "analyst", "admin"]
    found = [ROLE_OF_DEPENDENCY.get(getattr(dependant.call, "__name__", ""), "")]
    found += [role_needed(d) or "" for d in dependant.dependencies]
    roles = [r for r in found if r]
    return max(roles, key=order.index) if roles else None


router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
for module in (orgs, members, connections, sync, usage, costs, rates, benchmark, savings, seats, reconcile,
               anomalies, forecast, trend, devtools, finance, pricing, keys, alerts, audit, billing):
    for route in module.router.routes:
        if isinstance(route, APIRoute):
            route.openapi_extra = {**(route.openapi_extra or {}), "x-tallybook-role": role_needed(route.dependant)}
    router.include_router(module.router)
