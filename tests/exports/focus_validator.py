"""A FOCUS 1.2 validator for tests: every mandatory column's presence, type and allowed values, and the
conditional rules tallybook's rows are subject to, as /work/shared/reference/billing-finops.md §3 states them.

    problems(table) -> list[str]        a pyarrow Table (a Parquet export, or a CSV read as text)

Types are checked on the Arrow type for Parquet (decimal, never float; timestamps in UTC) and on the
text for CSV (a plain decimal; ISO 8601 ending in Z). An empty list means the dataset conforms.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

DECIMAL = ("BilledCost", "ContractedCost", "EffectiveCost", "ListCost", "PricingQuantity")
DATETIME = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")
STRING = ("BillingAccountId", "BillingAccountName", "BillingCurrency", "ChargeCategory", "ChargeClass",
          "ChargeDescription", "InvoiceIssuerName", "PricingUnit", "ProviderName", "PublisherName",
          "ServiceCategory", "ServiceName")
MANDATORY = (*DECIMAL, *DATETIME, *STRING)
assert len(MANDATORY) == 21
NOT_NULL = ("BilledCost", "BillingAccountId", "BillingCurrency", "BillingPeriodStart", "BillingPeriodEnd",
            "ChargeCategory", "ChargePeriodStart", "ChargePeriodEnd", "ContractedCost", "EffectiveCost",
            "InvoiceIssuerName", "ListCost", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName")
OPTIONAL_DECIMAL = ("ConsumedQuantity", "ListUnitPrice", "ContractedUnitPrice")
# Every column FOCUS 1.2 defines (mandatory, recommended, conditional); others must start with x_.
DEFINED = {*MANDATORY, "AvailabilityZone", "ChargeFrequency", "InvoiceId", "ServiceSubcategory",
           "BillingAccountType", "SubAccountId", "SubAccountName", "SubAccountType", "ConsumedQuantity",
           "ConsumedUnit", "ListUnitPrice", "ContractedUnitPrice", "PricingCategory", "PricingCurrency",
           "PricingCurrencyListUnitPrice", "PricingCurrencyContractedUnitPrice", "PricingCurrencyEffectiveCost",
           "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType", "SkuId", "SkuPriceId", "SkuMeter",
           "SkuPriceDetails", "Tags", "CommitmentDiscountCategory", "CommitmentDiscountId",
           "CommitmentDiscountName", "CommitmentDiscountQuantity", "CommitmentDiscountStatus",
           "CommitmentDiscountType", "CommitmentDiscountUnit", "CapacityReservationId", "CapacityReservationStatus"}
ALLOWED = {
    "ChargeCategory": {"Usage", "Purchase", "Tax", "Credit", "Adjustment"},
    "ChargeClass": {None, "Correction"},
    "PricingCategory": {None, "Standard", "Dynamic", "Committed", "Other"},
    "ChargeFrequency": {None, "One-Time", "Recurring", "Usage-Based"},
    "ServiceCategory": {"AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases",
                        "Developer Tools", "Multicloud", "Identity", "Integration", "Internet of Things",
                        "Management and Governance", "Media", "Migration", "Mobile", "Networking", "Security",
                        "Storage", "Web", "Other"},
}
CURRENCY = re.compile(r"^[A-Z]{3}$")
# Unit Format: "Tokens", "GiB-Hours", or "<quantity> <plural-units>" such as "1000 Tokens".
UNIT = re.compile(r"^(?:[1-9][0-9]* )?[A-Z][A-Za-z]*(?:-[A-Z][A-Za-z]*)*$")
PLAIN_DECIMAL = re.compile(r"^-?[0-9]+(?:\.[0-9]+)?$")
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|\+00:00)$")
TOLERANCE = Decimal("0.000001")


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str) and PLAIN_DECIMAL.match(value):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    raise TypeError(f"{value!r} is not a decimal")


def _datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and ISO_UTC.match(value):
        return datetime.fromisoformat(value)
    raise TypeError(f"{value!r} is not an ISO 8601 UTC datetime")


def _type_problems(table: pa.Table) -> list[str]:
    found = []
    for name in (*DECIMAL, *OPTIONAL_DECIMAL):
        if name in table.column_names:
            kind = table.schema.field(name).type
            if pa.types.is_floating(kind):
                found.append(f"{name} is a float ({kind}); FOCUS money and quantities are decimals")
            elif not (pa.types.is_decimal(kind) or pa.types.is_string(kind) or pa.types.is_null(kind)):
                found.append(f"{name} has type {kind}, not a decimal")
    for name in DATETIME:
        kind = table.schema.field(name).type
        if pa.types.is_timestamp(kind):
            if kind.tz not in ("UTC", "+00:00"):
                found.append(f"{name} is not in UTC ({kind})")
        elif not pa.types.is_string(kind):
            found.append(f"{name} has type {kind}, not a datetime")
    for name in STRING:
        kind = table.schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
            found.append(f"{name} has type {kind}, not a string")
    return found


def problems(table: pa.Table, *, limit: int = 20) -> list[str]:
    missing = [name for name in MANDATORY if name not in table.column_names]
    if missing:
        return [f"mandatory column {name} is missing" for name in missing]
    found = _type_problems(table)
    found += [f"column {name} is neither a FOCUS 1.2 column nor a custom x_ column"
              for name in table.column_names if name not in DEFINED and not name.startswith("x_")]
    if found:
        return found
    for index, row in enumerate(table.to_pylist()):
        row = {k: (None if v == "" else v) for k, v in row.items()}
        try:
            found += [f"row {index}: {p}" for p in _row_problems(row)]
        except TypeError as exc:
            found.append(f"row {index}: {exc}")
        if len(found) >= limit:
            break
    return found


def _row_problems(row: dict[str, Any]) -> list[str]:
    found = []
    for name in NOT_NULL:
        if row.get(name) is None:
            found.append(f"{name} is null")
    for name, allowed in ALLOWED.items():
        if name in row and row[name] not in allowed:
            found.append(f"{name} {row[name]!r} is not one of the allowed values")
    if row["BillingCurrency"] is not None and not CURRENCY.match(row["BillingCurrency"]):
        found.append(f"BillingCurrency {row['BillingCurrency']!r} is not an ISO 4217 code")
    money = {name: _decimal(row.get(name)) for name in (*DECIMAL, *OPTIONAL_DECIMAL)}
    times = {name: _datetime(row[name]) for name in DATETIME}
    if None not in times.values():
        if not times["ChargePeriodStart"] < times["ChargePeriodEnd"]:
            found.append("ChargePeriodEnd is not after ChargePeriodStart (start inclusive, end exclusive)")
        if not times["BillingPeriodStart"] < times["BillingPeriodEnd"]:
            found.append("BillingPeriodEnd is not after BillingPeriodStart")
        if not (times["BillingPeriodStart"] <= times["ChargePeriodStart"]
                and times["ChargePeriodEnd"] <= times["BillingPeriodEnd"]):
            found.append("the charge period lies outside its billing period")
    usage_like = row["ChargeCategory"] in ("Usage", "Purchase") and row["ChargeClass"] != "Correction"
    if usage_like:
        if money["PricingQuantity"] is None or row["PricingUnit"] is None:
            found.append("PricingQuantity and PricingUnit must not be null for a usage or purchase charge")
        if row.get("SkuId") is None:
            found.append("SkuId must not be null for a usage or purchase charge")
    for unit in ("PricingUnit", "ConsumedUnit"):
        if row.get(unit) is not None and not UNIT.match(row[unit]):
            found.append(f"{unit} {row[unit]!r} does not follow the Unit Format")
    if row["ChargeCategory"] != "Usage" and (row.get("ConsumedQuantity") is not None
                                            or row.get("ConsumedUnit") is not None):
        found.append("ConsumedQuantity/ConsumedUnit must be null unless ChargeCategory is Usage")
    if (row.get("ConsumedQuantity") is None) != (row.get("ConsumedUnit") is None):
        found.append("ConsumedQuantity and ConsumedUnit go together")
    for cost, unit_price in (("ListCost", "ListUnitPrice"), ("ContractedCost", "ContractedUnitPrice")):
        if None not in (money.get(unit_price), money["PricingQuantity"], money[cost]):
            expected = money[unit_price] * money["PricingQuantity"]
            if abs(expected - money[cost]) > TOLERANCE:
                found.append(f"{cost} {money[cost]} != {unit_price} x PricingQuantity ({expected})")
    if row["ChargeCategory"] == "Credit" and row.get("ListUnitPrice") is None and money["ListCost"] != money["BilledCost"]:
        found.append("a credit without ListUnitPrice must have ListCost = BilledCost")
    if row.get("Tags") is not None:
        try:
            tags = json.loads(row["Tags"])
        except ValueError:
            tags = None
        if not isinstance(tags, dict) or not all(isinstance(k, str) and k for k in tags):
            found.append(f"Tags {row['Tags']!r} is not a JSON object with string keys")
    return found
