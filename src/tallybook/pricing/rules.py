"""The organisation's pricing rules: versioned overlays on list prices.

    Rule                                                       one version of one rule
    save_rules(conn, org_id, rules, *, source, now=None) -> list[Change]   the write door, idempotent
    save_audited(conn, org_id, rules, *, source, actor) -> list[Change]    the same, audited
    load_rules(conn, org_id, *, current_only=False) -> list[Rule]          every version: history prices the past
    rules_at(rules, *, provider, model, at) -> list[Rule]                  the versions in force for one model
    apply_rules(price, rules, *, at=None, month_spend=None) -> Price       what the organisation pays (basis "cost")
    customer_price(price, rules, *, at=None) -> Price                      what it charges on (basis "customer")

Kinds, each scoped by `provider` (None: any) and an fnmatch `model_pattern` ("gpt-4o*"):
    negotiated  rates={"input_mtok": 2.4, ...}   per-unit prices (rule currency) replacing list prices
    discount    fraction=0.10                     10 % off
    commitment  tiers=(CommitmentTier(min_spend=10000, discount=0.05), ...)  the tier reached by the
                month's spend (`month_spend`, in the rule's scope, which the caller sums) takes its discount
    markup      fraction=0.20                     +20 % for customers: only `customer_price` applies it

On a price: negotiated rates re-price its lines (a price the catalog derives, such as a cache write at
1.25x input, follows a negotiated input rate; batch and data-residency multipliers still apply), then
discounts compound, then the commitment tier. Where several negotiated rules cover a unit, the most
specific scope wins. `apply_rules` prices a model the catalog does not know when negotiated rates
cover every unit it used.

Versions: saving a rule whose content is unchanged does nothing; changed content is version n+1, and
version n gets `retired_at` and `effective_to` = the new version's start, so it keeps pricing its past.
A new version never reprices that past: when its `effective_from` is not after the current version's,
it takes effect at `now` instead (the Change says so).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from tallybook import audit
from tallybook.errors import PricingError
from tallybook.ledger import schema as t
from tallybook.ledger.store import utcnow
from tallybook.pricing.catalog import BATCH_DISCOUNT, GEO_MULTIPLE, TOKEN_PRICE_KEYS, UNIT_PRICES, as_utc
from tallybook.pricing.price import Adjustment, Price, PriceLine

KINDS = ("negotiated", "discount", "commitment", "markup")
NEGOTIABLE = (*TOKEN_PRICE_KEYS, *sorted({key for keys in UNIT_PRICES.values() for key in keys}))


@dataclass(frozen=True, slots=True)
class CommitmentTier:
    min_spend: Decimal  # in the rule's currency, per calendar month
    discount: Decimal  # fraction: 0.05 is 5 % off


@dataclass(frozen=True, slots=True)
class Rule:
    """One version of one organisation rule. Figures are Decimals; `version` 0 means not saved yet."""

    rule_id: str
    kind: str
    effective_from: datetime
    provider: str | None = None
    model_pattern: str = "*"
    rates: Mapping[str, Decimal] = field(default_factory=dict)  # negotiated
    fraction: Decimal | None = None  # discount, markup
    tiers: tuple[CommitmentTier, ...] = ()  # commitment
    currency: str = "USD"
    effective_to: datetime | None = None  # exclusive
    note: str = ""
    version: int = 0
    source: str | None = None
    created_at: datetime | None = None
    retired_at: datetime | None = None

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise PricingError(f"Rule {self.rule_id!r}: {problem}.")

    def _problem(self) -> str | None:
        if not self.rule_id or len(self.rule_id) > 100:
            return "the id must be 1 to 100 characters"
        if self.kind not in KINDS:
            return f"kind {self.kind!r} is not one of {', '.join(KINDS)}"
        if len(self.currency) != 3 or not self.currency.isupper():
            return f"currency {self.currency!r} is not an ISO code such as USD"
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            return "effective_to must be after effective_from"
        if self.kind == "negotiated":
            unknown = sorted(set(self.rates) - set(NEGOTIABLE))
            if not self.rates:
                return f"a negotiated rule needs at least one rate ({', '.join(NEGOTIABLE[:6])}, ...)"
            if unknown:
                return f"cannot negotiate {', '.join(unknown)}; choose from {', '.join(NEGOTIABLE)}"
            if any(rate < 0 for rate in self.rates.values()):
                return "rates cannot be negative"
        elif self.kind in ("discount", "markup"):
            if self.fraction is None:
                return f"a {self.kind} needs a fraction, e.g. 0.20 for 20 %"
            if self.fraction < 0 or (self.kind == "discount" and self.fraction >= 1):
                return f"{self.kind} {self.fraction} is out of range (a fraction: 0.20 is 20 %)"
        elif self.kind == "commitment":
            if not self.tiers:
                return "a commitment needs at least one tier (min_spend, discount)"
            if any(not 0 <= tier.discount < 1 or tier.min_spend < 0 for tier in self.tiers):
                return "each tier needs min_spend >= 0 and a discount fraction below 1"
            if [tier.min_spend for tier in self.tiers] != sorted({tier.min_spend for tier in self.tiers}):
                return "tiers must have distinct min_spend values, in increasing order"
        return None

    @property
    def spec(self) -> dict[str, Any]:
        """The figures as stored (JSON, decimal strings)."""
        spec: dict[str, Any] = {}
        if self.kind == "negotiated":
            spec["rates"] = {key: dec(rate) for key, rate in sorted(self.rates.items())}
        elif self.kind in ("discount", "markup"):
            spec["fraction"] = dec(self.fraction)
        else:
            spec["tiers"] = [{"min_spend": dec(t.min_spend), "discount": dec(t.discount)} for t in self.tiers]
        if self.note:
            spec["note"] = self.note
        return spec

    def content_hash(self) -> str:
        """Digest of what the rule says (not its version or bookkeeping): equal content, equal hash."""
        content = {"kind": self.kind, "provider": self.provider, "model_pattern": self.model_pattern,
                   "spec": self.spec, "currency": self.currency, "effective_from": self.effective_from.isoformat(),
                   "effective_to": self.effective_to.isoformat() if self.effective_to else None}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def matches(self, provider: str, model: str | None) -> bool:
        if self.provider is not None and self.provider != provider.lower():
            return False
        return fnmatchcase((model or "").lower(), self.model_pattern.lower())

    def in_force(self, at: datetime) -> bool:
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)

    @property
    def specificity(self) -> tuple[int, int]:
        """Narrower scopes sort later: a provider beats none; more literal characters beat fewer."""
        literal = sum(ch not in "*?[]" for ch in self.model_pattern)
        return (self.provider is not None, literal)

    def describe(self) -> str:
        """The figures in a few words: "+20 %", "-10 %", "input_mtok 2.4, output_mtok 12 USD"."""
        if self.kind == "markup":
            return f"+{pct(self.fraction)}"
        if self.kind == "discount":
            return f"-{pct(self.fraction)}"
        if self.kind == "negotiated":
            return ", ".join(f"{key} {dec(rate)}" for key, rate in sorted(self.rates.items())) + f" {self.currency}"
        return "; ".join(f">= {dec(t.min_spend)} {self.currency}/month: -{pct(t.discount)}" for t in self.tiers)


@dataclass(frozen=True, slots=True)
class Change:
    """What saving one rule did: created (version 1), updated (a new version) or unchanged."""

    rule_id: str
    action: str
    version: int
    effective_from: datetime
    note: str = ""


def dec(value: Decimal | None) -> str:
    """A decimal as canonical text: 0.20 -> "0.2", 100 -> "100"."""
    if value is None:
        return ""
    return format(value.normalize(), "f")


def pct(fraction: Decimal | None) -> str:
    return f"{dec((fraction or Decimal(0)) * 100)} %"


# --- the write door -------------------------------------------------------------------------------

def save_rules(conn: Connection, org_id: int, rules: Iterable[Rule], *, source: str,
               now: datetime | None = None) -> list[Change]:
    """Store `rules` as the organisation's current rules, one new version per changed rule.

    Idempotent by content: saving the same rules again returns only "unchanged". Call it inside the
    caller's transaction (`with engine.begin() as conn:`); roll back for a dry run.
    """
    now = now or utcnow()
    rules = list(rules)
    seen: set[str] = set()
    for rule in rules:
        if rule.rule_id in seen:
            raise PricingError(f"Rule {rule.rule_id!r} is given twice; each rule id may appear once.")
        seen.add(rule.rule_id)
    c = t.pricing_rules.c
    changes = []
    for rule in rules:
        current = conn.execute(select(t.pricing_rules).where(c.org_id == org_id, c.rule_id == rule.rule_id)
                               .order_by(c.version.desc()).limit(1)).mappings().first()
        digest = rule.content_hash()
        if current is not None and current["content_hash"] == digest:
            changes.append(Change(rule.rule_id, "unchanged", current["version"], current["effective_from"]))
            continue
        start, note = rule.effective_from, ""
        if current is not None and start <= current["effective_from"]:
            start = max(start, now)
            if start != rule.effective_from:
                note = (f"takes effect {start:%Y-%m-%d %H:%M}, not {rule.effective_from:%Y-%m-%d}: version "
                        f"{current['version']} keeps pricing the time before")
        if rule.effective_to is not None and rule.effective_to <= start:
            raise PricingError(f"Rule {rule.rule_id!r}: effective_to {rule.effective_to:%Y-%m-%d} is not after "
                               f"the day its new version would take effect ({start:%Y-%m-%d}).")
        version = 1 if current is None else current["version"] + 1
        if current is not None:
            end = max(start, current["effective_from"])
            if current["effective_to"] is not None:
                end = min(end, current["effective_to"])
            conn.execute(update(t.pricing_rules).where(c.id == current["id"]).values(
                effective_to=end, retired_at=now))
        try:
            conn.execute(insert(t.pricing_rules).values(
                org_id=org_id, rule_id=rule.rule_id, version=version, kind=rule.kind, provider=rule.provider,
                model_pattern=rule.model_pattern, spec=json.dumps(rule.spec, sort_keys=True),
                currency=rule.currency, effective_from=start, effective_to=rule.effective_to,
                content_hash=digest, source=source[:200], created_at=now))
        except IntegrityError:
            raise PricingError(f"Rule {rule.rule_id!r} was changed by someone else at the same time; "
                               "run the command again.") from None
        changes.append(Change(rule.rule_id, "created" if version == 1 else "updated", version, start, note))
    return changes


def save_audited(conn: Connection, org_id: int, rules: Iterable[Rule], *, source: str, actor: str) -> list[Change]:
    """`save_rules`, with one audit entry per created or updated version in the same transaction: what the
    CLI, the API and the Settings page all call."""
    changes = save_rules(conn, org_id, rules, source=source)
    for change in changes:
        if change.action != "unchanged":
            audit.record(conn, org_id, actor, f"pricing_rule.{change.action}", "pricing_rule", change.rule_id,
                         {"version": change.version, "effective_from": change.effective_from, "source": source,
                          "note": change.note or None})
    return changes


def load_rules(conn: Connection, org_id: int, *, current_only: bool = False) -> list[Rule]:
    """Every version of every rule (what pricing the past needs), or only each rule's newest version."""
    c = t.pricing_rules.c
    rows = conn.execute(select(t.pricing_rules).where(c.org_id == org_id).order_by(c.rule_id, c.version))
    rules = [_from_row(row) for row in rows.mappings()]
    if current_only:
        newest = {rule.rule_id: rule for rule in rules}
        rules = list(newest.values())
    return rules


def _from_row(row: Any) -> Rule:
    spec = json.loads(row["spec"])
    return Rule(
        rule_id=row["rule_id"], kind=row["kind"], effective_from=row["effective_from"], provider=row["provider"],
        model_pattern=row["model_pattern"], rates={k: Decimal(v) for k, v in spec.get("rates", {}).items()},
        fraction=Decimal(spec["fraction"]) if "fraction" in spec else None,
        tiers=tuple(CommitmentTier(Decimal(t["min_spend"]), Decimal(t["discount"])) for t in spec.get("tiers", ())),
        currency=row["currency"], effective_to=row["effective_to"], note=spec.get("note", ""),
        version=row["version"], source=row["source"], created_at=row["created_at"], retired_at=row["retired_at"])


# --- applying rules to a price --------------------------------------------------------------------

def rules_at(rules: Iterable[Rule], *, provider: str, model: str | None, at: datetime | date) -> list[Rule]:
    """The version of each rule in force at `at` whose scope covers provider/model, narrowest last."""
    when = as_utc(at)
    found: dict[str, Rule] = {}
    for rule in rules:
        if rule.in_force(when) and rule.matches(provider, model) and (
                rule.rule_id not in found or rule.version > found[rule.rule_id].version):
            found[rule.rule_id] = rule
    return sorted(found.values(), key=lambda r: (r.specificity, r.rule_id))


def apply_rules(price: Price, rules: Iterable[Rule], *, at: datetime | date | None = None,
                month_spend: Decimal | Mapping[str, Decimal] | None = None) -> Price:
    """`price` after the organisation's negotiated rates, discounts and commitment (basis "cost").

    `month_spend` is the spend of the calendar month of `at` that a commitment's tiers are measured
    against: one Decimal for every commitment rule, or a mapping by rule id. Without it a commitment
    is not applied, and the price notes that.
    """
    when = as_utc(at or price.at)
    active = [r for r in rules_at(rules, provider=price.provider, model=price.model, at=when) if r.kind != "markup"]
    lines, currency = list(price.lines), price.currency
    notes, applied = list(price.notes), []
    for rule in (r for r in active if r.kind == "negotiated"):
        repriced = [_negotiate(line, rule, price) for line in lines]
        if rule.currency != currency and any(new is old for new, old in zip(repriced, lines, strict=True)):
            notes.append(f"negotiated {rule.rule_id} (in {rule.currency}) does not cover every unit priced in "
                         f"{currency}; not applied")
            continue
        lines, currency = repriced, rule.currency
        applied.append(rule)
    known = price.known or (bool(lines) and all(line.rate is not None for line in lines))
    adjustments = list(price.adjustments)
    running = sum((ln.amount for ln in lines if ln.amount is not None), Decimal(0)) + sum(
        (a.amount for a in adjustments), Decimal(0))
    for rule in (r for r in active if r.kind in ("discount", "commitment")):
        if not known:
            notes.append(f"{rule.kind} {rule.rule_id} not applied: the price is unknown")
            continue
        if rule.currency != currency and rule.kind == "commitment":
            notes.append(f"commitment {rule.rule_id} is in {rule.currency}, the price in {currency}; not applied")
            continue
        fraction, note = rule.fraction, ""
        if rule.kind == "commitment":
            spend = month_spend.get(rule.rule_id) if isinstance(month_spend, Mapping) else month_spend
            if spend is None:
                notes.append(f"commitment {rule.rule_id} not applied: the month's spend was not given")
                continue
            tier = next((t for t in reversed(rule.tiers) if spend >= t.min_spend), None)
            if tier is None:
                continue
            fraction, note = tier.discount, f"month spend {dec(spend)} >= {dec(tier.min_spend)}"
        amount = -(running * fraction)  # type: ignore[operator]
        running += amount
        adjustments.append(Adjustment(rule.rule_id, rule.version, rule.kind, amount,
                                      note or f"-{pct(fraction)}"))
        applied.append(rule)
    return price.with_changes(lines=tuple(lines), adjustments=tuple(adjustments), currency=currency,
                              known=known, basis="cost", notes=tuple(notes),
                              price_version=_version(price.price_version, applied))


def customer_price(price: Price, rules: Iterable[Rule], *, at: datetime | date | None = None) -> Price:
    """`price` with the markups in force at `at` (basis "customer"); several markups compound.

    Pass `apply_rules(...)`'s result to mark up what the organisation pays, or a list price to mark up list.
    """
    when = as_utc(at or price.at)
    markups = [r for r in rules_at(rules, provider=price.provider, model=price.model, at=when) if r.kind == "markup"]
    adjustments, notes = list(price.adjustments), list(price.notes)
    running = price.total
    for rule in markups:
        if running is None:
            notes.append(f"markup {rule.rule_id} not applied: the price is unknown")
            continue
        amount = running * rule.fraction  # type: ignore[operator]
        running += amount
        adjustments.append(Adjustment(rule.rule_id, rule.version, "markup", amount, f"+{pct(rule.fraction)}"))
    return price.with_changes(adjustments=tuple(adjustments), basis="customer", notes=tuple(notes),
                              price_version=_version(price.price_version, markups if running is not None else []))


def _negotiate(line: PriceLine, rule: Rule, price: Price) -> PriceLine:
    if line.price_key in rule.rates:
        rate, how = rule.rates[line.price_key], ""
    elif line.base_key != line.price_key and line.base_key in rule.rates:
        rate, how = rule.rates[line.base_key] * line.multiple, f"{dec(line.multiple)}x {line.base_key}, "
    else:
        return line
    factors = []
    if line.batch and (discount := BATCH_DISCOUNT.get(price.provider.lower())) is not None:
        rate *= discount
        factors.append("batch -50%")
    if (geo := GEO_MULTIPLE.get((price.provider.lower(), price.inference_geo or ""))) is not None:
        rate *= geo
        factors.append(f"inference_geo {price.inference_geo} {geo}x")
    was = "unknown" if line.rate is None else dec(line.rate)
    note = f"{how}negotiated {rule.rule_id}@v{rule.version} (list {was})" + "".join(f"; {f}" for f in factors)
    return PriceLine(unit=line.unit, price_key=line.price_key, quantity=line.quantity, per=line.per, rate=rate,
                     source="negotiated", note=note, base_key=line.base_key, multiple=line.multiple,
                     batch=line.batch)


def _version(version: str | None, applied: Sequence[Rule]) -> str | None:
    if not applied:
        return version
    tags = ",".join(f"{r.rule_id}@v{r.version}" for r in applied)
    if version and "+rules:" in version:
        return f"{version},{tags}"
    return f"{version or 'no list price'}+rules:{tags}"
