"""Property-based tests of the REST API from its own OpenAPI document (schemathesis, in process).

Every operation under /api/v1 gets generated requests, authenticated as an admin of an organisation
with a seeded SQLite ledger; no answer may be a 5xx, carry a status the document does not list, or
break the response schema the document declares. Bounded: a few examples per operation, derandomized.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tallybook.config import Settings
from tallybook.security.vault import Vault
from tallybook.web.auth.users import org_id_for
from tests.web.api_data import seed_org

# These reach a provider's network (the key check), start background syncs, or send to an alert channel or
# Stripe; tests/web/test_api_connections.py and test_api_ops.py cover them against fakes and local receivers.
NETWORK = {("POST", "/api/v1/connections"), ("POST", "/api/v1/connections/{connection_id}/rotate"),
           ("POST", "/api/v1/sync"), ("POST", "/api/v1/alerts/channels/{channel_id}/test"),
           ("POST", "/api/v1/billing/customers")}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 6
BUDGET_SECONDS = 60


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_api_keeps_to_its_openapi_document(app: FastAPI, engine: sa.Engine, web_settings: Settings,
                                               member: Callable[..., int],
                                               bearer: Callable[..., dict[str, str]]) -> None:
    member("admin@acme.test", "acme", "admin")
    member("viewer@acme.test", "acme", "viewer")
    with engine.connect() as conn:
        org_id = org_id_for(conn, "acme")
    seed_org(engine, org_id, "acme", scale=3, vault=Vault.from_settings(web_settings))
    auth = bearer("admin@acme.test", "acme")

    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app).include(path_regex="^/api/v1/")
    started, tested = time.monotonic(), []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in NETWORK:
            continue

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=auth, checks=CHECKS)

        check()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) >= 30, tested
    assert time.monotonic() - started < BUDGET_SECONDS * 2, "the property run outgrew its time budget"
