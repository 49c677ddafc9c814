"""What pricing returns: a `Price` made of `PriceLine`s (one per unit of usage) and `Adjustment`s
(one per organisation rule applied on top), with a readable repr.

    Price.total = sum(line.amount) + sum(adjustment.amount)      when every line has a rate
    Price.total = None, Price.known = False                      otherwise: never a silent zero

A line's `rate` is per `per` units of its `unit` (per 1,000,000 for tokens, so `input_mtok` reads as
dollars per million input tokens). `basis` says how far the price has come: `list` (the catalog),
`cost` (after negotiated rates, discounts and commitments: what the organisation pays) or
`customer` (after markups: what it charges on).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal

from tallybook.money import fmt_amount

BASES = ("list", "cost", "customer")


@dataclass(frozen=True, slots=True, repr=False)
class PriceLine:
    """One unit of usage at one rate: `quantity` x `rate` / `per`."""

    unit: str  # the usage measure: input_tokens, cache_read_tokens, ..., or a unit such as web_search_requests
    price_key: str  # the price it is charged at: input_mtok, cache_write_5m_mtok, web_searches_kcount, ...
    quantity: int
    per: int  # 1_000_000 for tokens
    rate: Decimal | None  # in the price's currency per `per` units; None: no price known
    source: str = "catalog"  # catalog | derived | negotiated | unknown
    note: str = ""  # how the rate was reached: "batch -50%", "1.25x input_mtok (Anthropic 5 min cache write)"
    # For re-pricing under negotiated rates: the rate is `multiple` x the rate of `base_key`.
    base_key: str = ""
    multiple: Decimal = Decimal(1)
    batch: bool = False

    @property
    def amount(self) -> Decimal | None:
        if self.rate is None:
            return None
        return Decimal(self.quantity) * self.rate / self.per

    def __repr__(self) -> str:
        rate = "unknown" if self.rate is None else f"{self.rate}/{per_label(self.price_key, self.per)}"
        amount = "" if self.amount is None else f" = {self.amount}"
        note = f" ({self.note})" if self.note else ""
        return f"{self.unit} {self.quantity:,} @ {rate}{amount}{note}"


@dataclass(frozen=True, slots=True, repr=False)
class Adjustment:
    """An organisation rule's effect on a price: a negative amount for discounts, positive for markups."""

    rule_id: str
    version: int
    kind: str  # negotiated | discount | commitment | markup
    amount: Decimal
    note: str = ""

    def __repr__(self) -> str:
        sign = "+" if self.amount >= 0 else ""
        return f"{self.kind} {self.rule_id}@v{self.version} {sign}{self.amount}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True, slots=True, repr=False)
class Price:
    """The price of one quantity of usage of one model at one time."""

    provider: str
    model: str
    at: datetime
    currency: str = "USD"
    lines: tuple[PriceLine, ...] = ()
    adjustments: tuple[Adjustment, ...] = ()
    known: bool = True  # False: the model, or one of the units used, has no price
    price_version: str | None = None  # e.g. "genai-prices 0.2.3:o3@2025-06-10", "+rules:..." once rules apply
    catalog_model: str | None = None  # the catalog's id for the model, e.g. "gpt-4o" for "gpt-4o-2024-08-06"
    effective_from: date | None = None  # when the catalog price started; None: since the model was listed
    basis: str = "list"  # list | cost | customer
    origin: str = "estimated"  # priced by us, never vendor-reported
    notes: tuple[str, ...] = ()
    batch: bool = False
    inference_geo: str | None = None
    total: Decimal | None = field(init=False)

    def __post_init__(self) -> None:
        subtotal = self.subtotal
        total = None if subtotal is None else subtotal + sum((a.amount for a in self.adjustments), Decimal(0))
        object.__setattr__(self, "total", total)
        if total is None and self.known:
            object.__setattr__(self, "known", False)

    @property
    def subtotal(self) -> Decimal | None:
        """The lines' sum, before adjustments; None when any line has no rate."""
        if not self.known or any(line.rate is None for line in self.lines):
            return None
        return sum((line.amount for line in self.lines if line.amount is not None), Decimal(0))

    def line(self, unit: str) -> PriceLine | None:
        return next((line for line in self.lines if line.unit == unit), None)

    def with_changes(self, **changes: object) -> Price:
        """A copy with fields replaced (`total` is recomputed)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON output and the API."""
        return {
            "provider": self.provider, "model": self.model, "at": self.at, "known": self.known,
            "total": self.total, "currency": self.currency, "basis": self.basis, "origin": self.origin,
            "price_version": self.price_version, "catalog_model": self.catalog_model,
            "effective_from": self.effective_from,
            "lines": [{"unit": ln.unit, "price_key": ln.price_key, "quantity": ln.quantity, "per": ln.per,
                       "rate": ln.rate, "amount": ln.amount, "source": ln.source, "note": ln.note}
                      for ln in self.lines],
            "adjustments": [{"rule_id": a.rule_id, "version": a.version, "kind": a.kind, "amount": a.amount,
                             "note": a.note} for a in self.adjustments],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        if self.total is None:
            return f"unknown ({self.currency})"
        return f"{fmt_amount(self.total)} {self.currency}"

    def __repr__(self) -> str:
        head = f"Price({self.provider}/{self.model} at {self.at:%Y-%m-%d %H:%M}: "
        if self.total is None:
            why = "; ".join(self.notes) or "no price"
            return head + f"unknown, {why})"
        parts = [f"{self.total} {self.currency} {self.basis}", f"lines=[{', '.join(map(repr, self.lines))}]"]
        if self.adjustments:
            parts.append(f"adjustments=[{', '.join(map(repr, self.adjustments))}]")
        parts.append(f"version={self.price_version}")
        return head + ", ".join(parts) + ")"


def per_label(price_key: str, per: int) -> str:
    """How a rate reads: `2.5/MTok`, `10/K` (per thousand), `15/M` (per million characters), `0.36/hour`."""
    if price_key.endswith("_mtok"):
        return "MTok"
    return {1_000_000: "M", 1_000: "K", 3_600: "hour"}.get(per, str(per))
