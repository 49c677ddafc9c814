"""`/api/v1/pricing/rules`: the organisation's pricing rules (negotiated rates, discounts, markups,
commitment tiers), listed for analysts and created or versioned by admins (`tallybook pricing ...`).

A changed rule becomes a new version and never reprices the past; saving the same rule again
changes nothing."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tallybook.pricing.rulefile import build_rule
from tallybook.pricing.rules import Rule, load_rules, save_audited
from tallybook.web.api.errors import ApiRoute, not_found
from tallybook.web.api.params import Admin, Analyst, Reading, actor, engine
from tallybook.web.api.schemas import Moment, Strict

router = APIRouter(route_class=ApiRoute, tags=["pricing rules"])
RuleId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]


class RuleOut(Strict):
    rule_id: str
    version: int
    kind: Literal["negotiated", "discount", "markup", "commitment"]
    provider: str = Field(description='"*" for every provider.')
    model_pattern: str
    figures: str = Field(description="The rule's figures in words, e.g. 'discount 10 %'.")
    currency: str
    effective_from: Moment
    effective_to: Moment | None
    source: str | None = Field(description='The file it was applied from, "cli", "api" or "web".')
    note: str | None
    created_at: Moment | None
    retired_at: Moment | None = Field(description="When a newer version superseded this one.")


class Rules(Strict):
    rules: list[RuleOut]


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_spend: str = Field(max_length=40, description="Monthly spend from which the discount applies.")
    discount: str = Field(max_length=40, description="0.05 or 5%.")


class RuleIn(BaseModel):
    """One figure per rule: `markup`, `discount`, `rates` or `tiers`."""

    model_config = ConfigDict(extra="forbid")
    rule_id: RuleId = Field(description="The rule's name; an existing id makes a new version.")
    provider: str | None = Field(None, max_length=40, description="openai, anthropic, ... (default: every provider).")
    model: str = Field("*", min_length=1, max_length=200, description="Model pattern, fnmatch style: 'gpt-4o*'.")
    markup: str | None = Field(None, max_length=40, description="Customer markup: 0.20 or 20%.")
    discount: str | None = Field(None, max_length=40, description="Discount off list: 0.10 or 10%.")
    rates: dict[str, Annotated[str, Field(max_length=40)]] | None = Field(
        None, description="Negotiated prices per 1M tokens: {\"input_mtok\": \"2.4\"}.")
    tiers: list[TierIn] | None = Field(None, description="Commitment tiers.")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    effective_from: date
    effective_to: date | None = None
    note: str | None = Field(None, max_length=1000)


class ChangeOut(Strict):
    rule_id: str
    action: Literal["created", "updated", "unchanged"]
    version: int
    effective_from: Moment
    note: str | None


def rule_row(rule: Rule) -> RuleOut:
    """As `tallybook pricing rules list --format json` prints a rule."""
    return RuleOut(rule_id=rule.rule_id, version=rule.version, kind=rule.kind,
                   provider=rule.provider or "*", model_pattern=rule.model_pattern, figures=rule.describe(),
                   currency=rule.currency, effective_from=rule.effective_from, effective_to=rule.effective_to,
                   source=rule.source, note=rule.note or None, created_at=rule.created_at,
                   retired_at=rule.retired_at)


@router.get("/pricing/rules", response_model=Rules, summary="Pricing rules (analyst)")
def list_rules(principal: Analyst, conn: Reading,
               all_versions: bool = Query(False, description="Every version, not just each rule's newest.")) -> Rules:
    rules = load_rules(conn, principal.org_id, current_only=not all_versions)
    return Rules(rules=[rule_row(r) for r in rules])


@router.get("/pricing/rules/{rule_id}", response_model=Rules, summary="Every version of one rule (analyst)")
def get_rule(rule_id: str, principal: Analyst, conn: Reading) -> Rules:
    found = [r for r in load_rules(conn, principal.org_id) if r.rule_id == rule_id]
    if not found:
        raise not_found(f"No pricing rule {rule_id!r} in this organisation.")
    return Rules(rules=[rule_row(r) for r in found])


@router.post("/pricing/rules", response_model=list[ChangeOut], status_code=201,
             summary="Create a rule, or a new version of one (admin)")
def create_rule(body: RuleIn, request: Request, principal: Admin) -> list[ChangeOut]:
    """Same as `tallybook pricing set`: if `effective_from` is not after the current version's start,
    the new version takes effect now."""
    values: dict[str, Any] = body.model_dump(exclude={"rule_id"}, exclude_none=True)
    values["effective_from"] = body.effective_from.isoformat()
    if body.effective_to is not None:
        values["effective_to"] = body.effective_to.isoformat()
    if body.tiers is not None:
        values["tiers"] = [t.model_dump() for t in body.tiers]
    rule = build_rule(body.rule_id, values)
    with engine(request).begin() as conn:
        changes = save_audited(conn, principal.org_id, [rule], source="api", actor=actor(principal))
    return [ChangeOut(rule_id=c.rule_id, action=c.action, version=c.version,
                      effective_from=c.effective_from, note=c.note or None) for c in changes]
