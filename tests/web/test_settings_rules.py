"""Pricing rules from the Settings page: an admin adds a discount, a markup, negotiated rates or commitment tiers (a new
version when the name exists), exactly as `tallybook pricing set` would; bad figures are refused with
what to write and nothing saved; others may not."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tallybook.ledger import schema_ops as ops
from tallybook.pricing.rules import Rule, load_rules
from tallybook.web.auth.users import org_id_for
from tests.web.conftest import form_csrf, signed_in

DISCOUNT = {"rule_id": "openai-deal", "provider": "openai", "model": "gpt-4o*", "kind": "discount",
            "figure": "12%", "currency": "USD", "effective_from": "2026-01-01", "note": "MSA 2026"}


def rules(engine: sa.Engine) -> list[Rule]:
    with engine.connect() as conn:
        return load_rules(conn, org_id_for(conn, "acme"))


def test_an_admin_adds_a_rule_and_a_new_version_of_it(client: TestClient, member: Callable[..., int],
                                                       engine: sa.Engine) -> None:
    member("ada@acme.test")
    signed_in(client, "ada@acme.test")
    token = form_csrf(client)
    saved = client.post("/settings/rules", data={"csrf_token": token, **DISCOUNT})
    assert saved.status_code == 303 and saved.headers["location"] == "/settings?done=rule_saved"
    [rule] = rules(engine)
    assert (rule.rule_id, rule.kind, rule.provider, rule.model_pattern, rule.fraction, rule.version, rule.source) == (
        "openai-deal", "discount", "openai", "gpt-4o*", Decimal("0.12"), 1, "web")
    page = client.get("/settings?done=rule_saved").text
    assert "Pricing rule saved." in page and "openai-deal" in page and "MSA 2026" in page

    again = client.post("/settings/rules", data={"csrf_token": token, **DISCOUNT})
    assert again.headers["location"] == "/settings?done=rule_unchanged" and len(rules(engine)) == 1

    better = client.post("/settings/rules", data={"csrf_token": token, **DISCOUNT, "figure": "0.15",
                                                  "effective_from": "2026-07-01"})
    assert better.headers["location"] == "/settings?done=rule_saved"
    versions = sorted(rules(engine), key=lambda r: r.version)
    assert [(r.version, r.fraction) for r in versions] == [(1, Decimal("0.12")), (2, Decimal("0.15"))]
    with engine.connect() as conn:
        entries = conn.execute(sa.select(ops.audit_log.c.action, ops.audit_log.c.details).where(
            ops.audit_log.c.object_type == "pricing_rule").order_by(ops.audit_log.c.seq)).all()
    assert [(a, json.loads(d)["source"], json.loads(d)["version"]) for a, d in entries] == [
        ("pricing_rule.created", "web", 1), ("pricing_rule.updated", "web", 2)]


def test_negotiated_rates_are_read_per_million_tokens(client: TestClient, member: Callable[..., int],
                                                      engine: sa.Engine) -> None:
    member("ada@acme.test")
    signed_in(client, "ada@acme.test")
    answer = client.post("/settings/rules", data={
        "csrf_token": form_csrf(client), "rule_id": "claude-rate", "provider": "anthropic", "model": "claude-*",
        "kind": "negotiated", "figure": "input_mtok=2.4, output_mtok=12", "effective_from": "2026-03-01"})
    assert answer.status_code == 303
    [rule] = rules(engine)
    assert rule.kind == "negotiated" and dict(rule.rates) == {"input_mtok": Decimal("2.4"),
                                                              "output_mtok": Decimal(12)}


def test_commitment_tiers_are_a_monthly_spend_and_its_discount(client: TestClient, member: Callable[..., int],
                                                                engine: sa.Engine) -> None:
    member("ada@acme.test")
    signed_in(client, "ada@acme.test")
    token = form_csrf(client)
    answer = client.post("/settings/rules", data={
        "csrf_token": token, "rule_id": "openai-commit", "provider": "openai", "kind": "commitment",
        "figure": "10000:5%; 50000:0.08", "effective_from": "2026-01-01"})
    assert answer.status_code == 303
    [rule] = rules(engine)
    assert rule.kind == "commitment"
    assert [(t.min_spend, t.discount) for t in rule.tiers] == [(Decimal(10000), Decimal("0.05")),
                                                              (Decimal(50000), Decimal("0.08"))]
    assert "10000:0.05; 50000:0.08" in client.get("/settings").text
    backwards = client.post("/settings/rules", data={
        "csrf_token": token, "rule_id": "other", "kind": "commitment", "figure": "50000:8%, 10000:5%",
        "effective_from": "2026-01-01"})
    assert backwards.status_code == 400 and "increasing order" in backwards.text
    assert len(rules(engine)) == 1


def test_bad_figures_are_refused_with_what_to_write_and_nothing_is_saved(
        client: TestClient, member: Callable[..., int], engine: sa.Engine) -> None:
    member("ada@acme.test")
    signed_in(client, "ada@acme.test")
    token = form_csrf(client)
    wordy = client.post("/settings/rules", data={"csrf_token": token, **DISCOUNT, "figure": "a lot"})
    assert wordy.status_code == 400 and "discount" in wordy.text.lower()
    pairs = client.post("/settings/rules", data={"csrf_token": token, **DISCOUNT, "kind": "negotiated",
                                                 "figure": "input 2.4"})
    assert pairs.status_code == 400 and "input_mtok=2.4, output_mtok=9.6" in pairs.text
    tiers = client.post("/settings/rules", data={"csrf_token": token, **DISCOUNT, "kind": "commitment",
                                                 "figure": "10000 at 5%"})
    assert tiers.status_code == 400 and "10000:5%, 50000:8%" in tiers.text
    undated = client.post("/settings/rules", data={"csrf_token": token, **DISCOUNT, "effective_from": ""})
    assert undated.status_code == 400
    assert rules(engine) == []


def test_only_admins_save_rules(client: TestClient, member: Callable[..., int], engine: sa.Engine) -> None:
    member("ann@acme.test", role="analyst")
    signed_in(client, "ann@acme.test")
    assert client.post("/settings/rules", data={"csrf_token": form_csrf(client), **DISCOUNT}).status_code == 403
    assert rules(engine) == []
