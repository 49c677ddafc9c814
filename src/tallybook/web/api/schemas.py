"""Building blocks of the API's response models: money and decimals as strings, origins, group keys.

Figures come from `tallybook.analytics` as the CLI gets them; `plain` turns their Decimals into the
very strings `tallybook report ... --format json` prints (nine places at most, trailing zeros
trimmed to two), so the CLI and the API agree to the character.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from tallybook.analytics.rollups import COST_GROUPS, NAMED_GROUPS, USAGE_GROUPS
from tallybook.money import fmt_amount

DECIMAL_PATTERN = r"^-?\d+\.\d{2,9}$"
Amount = Annotated[str, Field(pattern=DECIMAL_PATTERN, examples=["1234.50"],
                              description="A decimal amount in the row's currency, as a string (never a float).")]
Number = Annotated[str, Field(pattern=DECIMAL_PATTERN, examples=["2.50"],
                              description="A decimal number as a string (rates, shares, percentages).")]
Currency = Annotated[str, Field(min_length=3, max_length=3, examples=["USD"], description="ISO 4217 code.")]
Origin = Literal["reported", "metered", "estimated"]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# The ledger keeps naive UTC datetimes; the API says so: 2026-10-01T12:00:00Z.
Moment = Annotated[datetime, AfterValidator(_utc)]


class Strict(BaseModel):
    """A response model: exactly these fields, so the OpenAPI document is the contract."""

    model_config = ConfigDict(extra="forbid")


def number(value: Decimal | None) -> str | None:
    return None if value is None else fmt_amount(value, 9)


def plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of an analytics function with its Decimals (nested ones too) as the CLI's JSON strings."""
    return {k: _plain(v) for k, v in row.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return number(value)
    if isinstance(value, Mapping):
        return plain(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def group_fields(names: Iterable[str], *, names_too: bool = True) -> dict[str, Any]:
    """Optional fields for the group keys `names` (and the display names beside project, api_key, user)."""
    fields: dict[str, Any] = {}
    for name in names:
        kind: Any = bool | None if name == "batch" else str | None
        fields[name] = (kind, Field(None, description=f"The `{name}` group (present when grouped by it)."))
        if names_too and name in NAMED_GROUPS:
            fields[f"{name}_name"] = (str | None, Field(None, description=f"The {name}'s display name, if known."))
    return fields


# Group keys: each row carries the keys of `group_by` (and a display name beside project, api_key, user).
UsageGroup: type[Strict] = create_model("UsageGroup", __base__=Strict, **group_fields(USAGE_GROUPS))
CostGroup: type[Strict] = create_model("CostGroup", __base__=Strict, **group_fields(COST_GROUPS))


def rows_of(model: type[BaseModel], rows: Iterable[Mapping[str, Any]]) -> list[Any]:
    return [model(**plain(r)) for r in rows]
