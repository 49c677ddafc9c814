"""Prometheus metrics of one gateway app, in its own registry (so tests can build many apps).

With several worker processes (`tallybook gateway --workers N`) every worker answers /metrics with
the SUM over all workers, whichever worker the scrape reaches: the supervisor enters
`shared_across_workers(N)` before it starts them, which turns on prometheus_client's multiprocess
mode in a fresh directory (each worker writes its values to its own memory-mapped files there;
`render` adds them up) and removes the directory when the gateway stops. Counters and histograms
survive a worker's restart, as Prometheus expects of one target.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from tallybook.gateway.events import UsageEvent

TOKEN_KINDS = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
               "output_tokens", "reasoning_tokens")


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.requests = Counter("tallybook_gateway_requests", "Requests metered, by outcome and virtual key.",
                                ("provider", "endpoint", "outcome", "status", "virtual_key"), registry=self.registry)
        self.tokens = Counter("tallybook_gateway_tokens", "Tokens metered, by model, kind and origin.",
                              ("provider", "model", "kind", "origin"), registry=self.registry)
        self.cost = Counter("tallybook_gateway_list_cost_usd", "List cost of priced requests, USD, by model.",
                            ("provider", "model"), registry=self.registry)
        self.unpriced = Counter("tallybook_gateway_unpriced_requests", "Requests whose model has no price.",
                                ("provider",), registry=self.registry)
        self.latency = Histogram("tallybook_gateway_request_seconds", "Time from request to last byte.",
                                 ("provider", "endpoint"), registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120))
        self.refused = Counter("tallybook_gateway_refused", "Requests answered by the gateway itself.",
                               ("status",), registry=self.registry)
        self._children: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def observe(self, event: UsageEvent) -> None:
        """Count one metered request. The label children are looked up once per label combination and
        kept (prometheus_client's `labels()` validates and locks on every call: ~15 % of the gateway's own
        Python time per request before)."""
        provider = event.provider
        model = event.model or ""
        usage = event.usage
        key = (provider, model, event.endpoint, event.outcome, event.status, event.virtual_key, usage.origin,
               event.currency, event.list_cost is None)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._label(key)
        requests, latency, tokens, cost, unpriced = children
        requests.inc()
        latency.observe(event.latency_ms / 1000)
        for kind in TOKEN_KINDS:
            value = getattr(usage, kind)
            if value:
                counter = tokens.get(kind)
                if counter is None:  # a series appears with its first token, as before
                    counter = tokens[kind] = self.tokens.labels(provider, model, kind, usage.origin)
                counter.inc(value)
        if cost is not None and event.list_cost is not None:
            cost.inc(float(event.list_cost))
        if unpriced is not None:
            unpriced.inc()

    def _label(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        provider, model, endpoint, outcome, status, virtual_key, _origin, currency, unpriced = key
        tokens: dict[str, Any] = {}
        return (self.requests.labels(provider, endpoint, outcome, str(status), virtual_key or ""),
                self.latency.labels(provider, endpoint), tokens,
                self.cost.labels(provider, model) if not unpriced and currency == "USD" else None,
                self.unpriced.labels(provider) if unpriced and outcome != "rejected" else None)

    def render(self) -> bytes:
        shared = os.environ.get(MULTIPROC_ENV)
        if not shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]  # prometheus_client has no hints here
        return generate_latest(registry)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_across_workers(workers: int) -> Iterator[str | None]:
    """Around starting `workers` worker processes: with more than one, their metrics are shared through
    a fresh directory (yielded; None with one worker). Enter it before the workers are started: they
    read the setting when they import prometheus_client."""
    if workers <= 1 or os.environ.get(MULTIPROC_ENV):
        yield os.environ.get(MULTIPROC_ENV)
        return
    directory = tempfile.mkdtemp(prefix="tallybook-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield directory
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(directory, ignore_errors=True)
