"""The normalised records every source produces and the ledger stores.

A connector turns a provider's bucket into `UsageRecord`s and `CostRecord`s; the
ledger writes them, keyed on their natural key, and knows nothing of providers.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from operator import attrgetter

# Token measures, in the order reports print them. `input_tokens` is *uncached* input.
TOKEN_MEASURES = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
    "requests",
)

# Who and what caused the usage (the gateway's attribution); last, see `usage_key`.
ATTRIBUTION_DIMENSIONS = ("virtual_key", "customer", "feature", "business_unit")
_UNATTRIBUTED = (None,) * len(ATTRIBUTION_DIMENSIONS)

# Dimensions that make up a usage record's natural key, beside source/org/connection/stream/bucket.
USAGE_DIMENSIONS = (
    "provider",
    "model",
    "project",
    "api_key",
    "user",
    "service_tier",
    "batch",
    "context_window",
    "inference_geo",
    "detail",
    "unit",
    *ATTRIBUTION_DIMENSIONS,
)

COST_DIMENSIONS = (
    "provider",
    "model",
    "project",
    "api_key",
    "line_item",
    "token_type",
    "cost_type",
    "service_tier",
    "context_window",
    "inference_geo",
    "currency",
    "user",  # last and left out of the key while unset, see `cost_key` (schema 0007)
)


BUCKET_WIDTHS = ("1m", "1h", "1d")

# Where a figure came from (DESIGN.md): vendor report, gateway metering, or our own estimate.
ORIGINS = ("reported", "metered", "estimated")


def natural_key(values: tuple[object, ...]) -> str:
    """A short stable digest of a record's dimensions, for the unique index.

    NULL never equals NULL in a SQL unique index, so the dimensions (many of them
    null) are folded into one non-null key column instead.
    """
    # A list, and no str() call for plain strings, because the write path digests every record.
    text = "\x1f".join(["\x00" if v is None else v if v.__class__ is str else str(v) for v in values])
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def usage_key(dimensions: tuple[object, ...]) -> str:
    """The natural key of a usage record's `USAGE_DIMENSIONS` values.

    The attribution dimensions came later (schema 0004): left out while all unset, so every key
    stored before them is found again and a re-synced day still replaces itself.
    """
    if dimensions[-len(ATTRIBUTION_DIMENSIONS):] == _UNATTRIBUTED:
        dimensions = dimensions[:-len(ATTRIBUTION_DIMENSIONS)]
    return natural_key(dimensions)


def cost_key(dimensions: tuple[object, ...]) -> str:
    """The natural key of a cost record's `COST_DIMENSIONS` values.

    `user` came later (schema 0007): left out while unset, so every key stored before it is found
    again and a re-synced day still replaces itself.
    """
    if dimensions[-1] is None:
        dimensions = dimensions[:-1]
    return natural_key(dimensions)


# A record's natural-key dimensions as one tuple, read in C rather than by one getattr a field.
usage_dimensions = attrgetter(*USAGE_DIMENSIONS)
cost_dimensions = attrgetter(*COST_DIMENSIONS)


@dataclass(slots=True)
class UsageRecord:
    """A quantity of usage in one time bucket, with every dimension the source reported."""

    source: str  # openai_admin, anthropic_admin, gateway, cursor, csv:<name>
    stream: str  # the source's own feed, e.g. "completions", "messages"
    bucket_start: datetime  # UTC, naive
    bucket_width: str  # 1m | 1h | 1d
    provider: str
    model: str | None = None
    project: str | None = None  # OpenAI project / Anthropic workspace
    api_key: str | None = None
    user: str | None = None
    service_tier: str | None = None
    batch: bool | None = None
    context_window: str | None = None
    inference_geo: str | None = None
    detail: str | None = None  # any further dimension the source has (image size/source, ...)
    unit: str | None = None  # non-token unit: images, characters, seconds, storage_bytes, sessions, ...
    virtual_key: str | None = None  # gateway attribution: the virtual key's public id
    customer: str | None = None
    feature: str | None = None
    business_unit: str | None = None
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    requests: int = 0
    quantity: int = 0
    origin: str = "reported"

    def key(self) -> str:
        return usage_key(usage_dimensions(self))

    def as_row(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class CostRecord:
    """Money a vendor reports for one bucket and line item."""

    source: str
    stream: str
    bucket_start: datetime
    bucket_width: str
    provider: str
    amount: Decimal
    currency: str  # ISO 4217, upper case
    model: str | None = None
    project: str | None = None
    api_key: str | None = None
    line_item: str | None = None
    token_type: str | None = None
    cost_type: str | None = None
    service_tier: str | None = None
    context_window: str | None = None
    inference_geo: str | None = None
    quantity: Decimal | None = None
    quantity_unit: str | None = None
    origin: str = "reported"
    user: str | None = None  # the person (email) or actor charged, where the vendor says

    def key(self) -> str:
        return cost_key(cost_dimensions(self))


@dataclass(slots=True)
class ProviderObject:
    """A provider's name for one of its ids (project, workspace, API key, user)."""

    provider: str
    kind: str  # project | workspace | api_key | user
    object_id: str
    name: str | None = None
    email: str | None = None
    parent_id: str | None = None  # the project or workspace an API key belongs to
    status: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class ToolMember:
    """A coding tool's team member as the vendor lists it (Cursor `GET /teams/members`)."""

    tool: str  # cursor
    email: str
    member_id: str | None = None
    name: str | None = None
    role: str | None = None  # owner | member | free-owner | ...
    removed: bool = False


@dataclass(slots=True)
class CycleSpend:
    """The vendor's spend for one member over one billing cycle, to date (Cursor `POST /teams/spend`).

    A reference figure shown beside the ledger's own sum; never a cost record (the per-event costs
    of the same cycle already are)."""

    tool: str
    cycle_start: datetime  # UTC, naive
    email: str
    spend: Decimal  # `spendCents` / 100
    currency: str = "USD"
    name: str | None = None
    role: str | None = None
    overall_spend: Decimal | None = None
    included_spend: Decimal | None = None
    fast_premium_requests: int | None = None


@dataclass(slots=True)
class ToolDirectory:
    """What a coding-tool connector lists beside its time buckets, written once per sync."""

    tool: str
    members: list[ToolMember] = field(default_factory=list)
    spend: list[CycleSpend] = field(default_factory=list)
    listed_members: bool = False  # False: the members list was not read, keep what is stored
