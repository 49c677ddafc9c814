"""`/api/v1/keys` and `/api/v1/budgets`: the gateway's virtual keys with their budgets and rate limits
(`tallybook keys ...`), and every budget with what it spent this period.

A key's secret is in the answer to its creation, once; the ledger keeps only its hash, and no other
answer ever carries it (the `hint` shows its last four characters)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select, update

from tallybook import audit
from tallybook.gateway.keys import create_key, key_hint, revoke_key
from tallybook.gateway.limits import from_nanos, parse_customer_budgets, period_start
from tallybook.ledger import budgets
from tallybook.ledger import schema as t
from tallybook.ledger.store import utcnow
from tallybook.web.api.errors import ApiRoute, invalid, not_found
from tallybook.web.api.params import Admin, Analyst, Reading, actor, engine
from tallybook.web.api.schemas import Amount, Currency, Moment, Strict, number

router = APIRouter(route_class=ApiRoute, tags=["virtual keys and budgets"])
Period = Literal["day", "month"]
BudgetText = Annotated[str, Field(pattern=r"^\d{1,12}(\.\d{1,9})?$", description="An amount above zero, e.g. 100.")]
Label = Annotated[str, Field(min_length=1, max_length=200)]


class Budget(Strict):
    amount: Amount
    currency: Currency
    period: Period
    spent_this_period: Amount = Field(description="Settled gateway spend since the period began (metered).")
    origin: Literal["metered"]
    period_start: Moment


class KeyOut(Strict):
    id: str
    name: str
    hint: str = Field(description="The secret's last four characters: tb-...a1b2.")
    customer: str | None
    feature: str | None
    business_unit: str | None
    budget: Budget | None
    rpm: int | None
    tpm: int | None
    status: Literal["active", "revoked"]
    created_at: Moment
    revoked_at: Moment | None


class CreatedKey(KeyOut):
    secret: str = Field(description="Shown once, in this answer only: store it now.")


class Keys(Strict):
    keys: list[KeyOut]


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Label = Field(description="What the key is for, e.g. 'support-bot prod'.")
    customer: Label | None = None
    feature: Label | None = None
    business_unit: Label | None = None
    budget: BudgetText | None = Field(None, description="Spend cap per `period`.")
    period: Period | None = Field(None, description="day or month (UTC); needed with `budget`.")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="Currency of `budget`.")
    rpm: int | None = Field(None, ge=1, le=10_000_000)
    tpm: int | None = Field(None, ge=1, le=10_000_000_000)


class KeyChange(BaseModel):
    """Only the fields given change; `budget: null` removes the budget, `rpm`/`tpm: 0` a limit."""

    model_config = ConfigDict(extra="forbid")
    name: Label | None = None
    budget: BudgetText | None = None
    period: Period | None = None
    rpm: int | None = Field(None, ge=0, le=10_000_000)
    tpm: int | None = Field(None, ge=0, le=10_000_000_000)


def budget_amount(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise invalid(f"`budget`: {text!r} is not an amount; use e.g. 100 or 12.50.") from None
    if not amount.is_finite() or amount <= 0:
        raise invalid("`budget`: a budget is an amount above zero.")
    return amount


def _key_rows(conn: Connection, org_id: int, key_id: str | None = None) -> list[KeyOut]:
    c = t.virtual_keys.c
    query = select(t.virtual_keys).where(c.org_id == org_id).order_by(c.created_at, c.id)
    if key_id is not None:
        query = query.where(c.id == key_id)
    found = conn.execute(query).all()
    now = utcnow()
    periods = {f"key:{r.id}": period_start(r.budget_period, now) for r in found if r.budget is not None}
    spent = budgets.spent_in(conn, org_id, periods)
    out = []
    for r in found:
        scope = f"key:{r.id}"
        budget = None if r.budget is None else Budget(
            amount=number(Decimal(r.budget)), currency=r.budget_currency, period=r.budget_period,
            spent_this_period=number(from_nanos(spent.get(scope, 0))), origin="metered",
            period_start=periods[scope])
        out.append(KeyOut(id=r.id, name=r.name, hint=r.key_hint, customer=r.customer, feature=r.feature,
                          business_unit=r.business_unit, budget=budget, rpm=r.rpm, tpm=r.tpm, status=r.status,
                          created_at=r.created_at, revoked_at=r.revoked_at))
    return out


def _one(conn: Connection, org_id: int, key_id: str) -> KeyOut:
    found = _key_rows(conn, org_id, key_id)
    if not found:
        raise not_found(f"No virtual key {key_id!r} in this organisation.")
    return found[0]


@router.get("/keys", response_model=Keys, summary="Virtual keys (analyst)")
def list_keys(principal: Analyst, conn: Reading) -> Keys:
    """Every key with its budget and what it spent this period; never the secret."""
    return Keys(keys=_key_rows(conn, principal.org_id))


@router.get("/keys/{key_id}", response_model=KeyOut, summary="One virtual key (analyst)")
def get_key(key_id: str, principal: Analyst, conn: Reading) -> KeyOut:
    return _one(conn, principal.org_id, key_id)


@router.post("/keys", response_model=CreatedKey, status_code=201, summary="Create a virtual key (admin)")
def create(body: KeyIn, request: Request, principal: Admin) -> CreatedKey:
    """The answer holds the secret, once: it cannot be shown again. Same as `tallybook keys create`."""
    amount = budget_amount(body.budget)
    if (amount is None) != (body.period is None):
        raise invalid("A budget needs a period and a period needs a budget: give both `budget` and `period`.")
    with engine(request).begin() as conn:
        key, secret = create_key(
            conn, org_id=principal.org_id, name=body.name, customer=body.customer, feature=body.feature,
            business_unit=body.business_unit, budget=amount, budget_currency=body.currency,
            budget_period=body.period, rpm=body.rpm, tpm=body.tpm)
        audit.record(conn, principal.org_id, actor(principal), "key.created", "virtual_key", key.id, {
            "name": body.name, "hint": key_hint(secret), "customer": body.customer, "feature": body.feature,
            "business_unit": body.business_unit, "budget": None if amount is None else str(amount),
            "budget_currency": body.currency, "budget_period": body.period, "rpm": body.rpm, "tpm": body.tpm})
        made = _one(conn, principal.org_id, key.id)
    return CreatedKey(**made.model_dump(), secret=secret)


@router.patch("/keys/{key_id}", response_model=KeyOut, summary="Change a key's name, budget or limits (admin)")
def update_key(key_id: str, body: KeyChange, request: Request, principal: Admin) -> KeyOut:
    """Gateways apply it within seconds; the secret stays. Same as `tallybook keys update`."""
    given = body.model_fields_set
    values: dict[str, Any] = {}
    if "name" in given:
        if body.name is None:
            raise invalid("`name` cannot be removed.")
        values["name"] = body.name
    if "budget" in given:
        amount = budget_amount(body.budget)
        values["budget"] = None if amount is None else str(amount)
        if amount is None:
            values["budget_period"] = None
    if "period" in given:
        values["budget_period"] = body.period
    for limit in ("rpm", "tpm"):
        if limit in given:
            values[limit] = getattr(body, limit) or None
    if not values:
        raise invalid("Nothing to change: give name, budget, period, rpm or tpm.")
    c = t.virtual_keys.c
    with engine(request).begin() as conn:
        row = conn.execute(select(c.budget, c.budget_period).where(
            c.org_id == principal.org_id, c.id == key_id, c.status == "active")).first()
        if row is None:
            raise not_found(f"No active virtual key {key_id!r} in this organisation.")
        has_budget = values.get("budget", row.budget) is not None
        has_period = values.get("budget_period", row.budget_period) is not None
        if has_budget != has_period:
            raise invalid("A budget needs a period (day or month), and a period a budget.")
        conn.execute(update(t.virtual_keys).where(c.org_id == principal.org_id, c.id == key_id).values(**values))
        audit.record(conn, principal.org_id, actor(principal), "key.updated", "virtual_key", key_id, values)
        return _one(conn, principal.org_id, key_id)


@router.delete("/keys/{key_id}", response_model=KeyOut, summary="Revoke a key (admin)")
def revoke(key_id: str, request: Request, principal: Admin) -> KeyOut:
    """Gateways refuse it within seconds; its history stays. Same as `tallybook keys revoke`."""
    with engine(request).begin() as conn:
        if not revoke_key(conn, principal.org_id, key_id):
            raise not_found(f"No active virtual key {key_id!r} in this organisation.")
        audit.record(conn, principal.org_id, actor(principal), "key.revoked", "virtual_key", key_id)
        return _one(conn, principal.org_id, key_id)


class BudgetRow(Budget):
    scope: str = Field(description='"key:<id>" or "customer:<name>".')
    key_id: str | None
    customer: str | None


class Budgets(Strict):
    budgets: list[BudgetRow]


@router.get("/budgets", response_model=Budgets, summary="Every budget and its spend this period (analyst)")
def list_budgets(request: Request, principal: Analyst, conn: Reading) -> Budgets:
    """Active keys' budgets, and the customer budgets of TALLYBOOK_GATEWAY_CUSTOMER_BUDGETS."""
    rows = [BudgetRow(**k.budget.model_dump(), scope=f"key:{k.id}", key_id=k.id, customer=k.customer)
            for k in _key_rows(conn, principal.org_id) if k.budget is not None and k.status == "active"]
    now = utcnow()
    customers = parse_customer_budgets(request.app.state.settings.gateway_customer_budgets)
    periods = {f"customer:{name}": period_start(b.period, now) for name, b in customers.items()}
    spent = budgets.spent_in(conn, principal.org_id, periods)
    for name, b in sorted(customers.items()):
        scope = f"customer:{name}"
        rows.append(BudgetRow(scope=scope, key_id=None, customer=name, amount=number(b.limit), currency=b.currency,
                              period=b.period, spent_this_period=number(from_nanos(spent[scope])), origin="metered",
                              period_start=periods[scope]))
    return Budgets(budgets=rows)
