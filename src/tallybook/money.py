"""Money as Decimal, stored as integer nano-units (1e-9 of the main unit), never as float."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

NANOS = Decimal(1_000_000_000)
CENT = Decimal("0.01")


def to_nanos(amount: Decimal | int | str) -> int:
    """Exact for up to nine decimals; beyond that rounded half-even (a billionth of a dollar)."""
    try:
        value = Decimal(amount) * NANOS
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not a decimal amount") from None
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_nanos(nanos: int) -> Decimal:
    return (Decimal(nanos) / NANOS).normalize() if nanos else Decimal(0)


def fmt_amount(amount: Decimal, places: int = 6) -> str:
    """A decimal string with no exponent, trailing zeros trimmed but at least two places."""
    quantized = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = f"{quantized:f}"
    if "." in text:
        whole, frac = text.split(".")
        frac = frac.rstrip("0").ljust(2, "0")
        text = f"{whole}.{frac}"
    else:
        text += ".00"
    return text


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str
    origin: str = "reported"  # reported | metered | estimated

    def __str__(self) -> str:
        return f"{fmt_amount(self.amount, 2)} {self.currency}"
