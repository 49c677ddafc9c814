"""OpenTelemetry traces of gateway requests, with the GenAI semantic-convention attributes.

Off by default (TALLYBOOK_GATEWAY_TRACING=false) and then free: the app holds `tracer = None` and the
request path never imports OpenTelemetry. On, it needs the `otel` extra (`pip install "tallybook[otel]"`)
and exports with OTLP over HTTP to the standard `OTEL_EXPORTER_OTLP_*` endpoint, unless the process
already has a tracer provider (e.g. under `opentelemetry-instrument`), which it then uses.

One span per proxied request, kind CLIENT, from the request's arrival to its metering, named
"{gen_ai.operation.name} {gen_ai.request.model}" and parented by the client's `traceparent` if it sent
one. Attributes (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/):
    gen_ai.operation.name  chat | embeddings | ...      gen_ai.provider.name (and gen_ai.system)
    gen_ai.request.model   gen_ai.response.model        gen_ai.request.max_tokens
    gen_ai.usage.input_tokens (all input, cached included, as the convention counts it)
    gen_ai.usage.output_tokens                          http.response.status_code, error.type
and tallybook's own: tallybook.event_id, .outcome, .usage.origin, .customer, .virtual_key,
.list_cost (a decimal string) and .currency. Never any prompt or completion text.
"""

from __future__ import annotations

import time
from typing import Any

from tallybook.errors import ConfigError
from tallybook.gateway.events import UsageEvent

OPERATIONS = {"chat.completions": "chat", "messages": "chat", "responses": "chat", "cohere.chat": "chat",
              "ollama.chat": "chat", "embeddings": "embeddings", "models": "models",
              "messages.count_tokens": "count_tokens"}
PROPAGATED = ("traceparent", "tracestate")


class Tracing:
    """Emits one span per metered request (build it with `Tracing.start()`)."""

    def __init__(self, tracer: Any, propagator: Any, span_kind: Any, status: Any) -> None:
        self.tracer, self.propagator, self.span_kind, self.status = tracer, propagator, span_kind, status

    @classmethod
    def start(cls, service_name: str = "tallybook-gateway") -> Tracing:
        try:
            from opentelemetry import propagate, trace
        except ImportError:
            raise ConfigError('TALLYBOOK_GATEWAY_TRACING needs OpenTelemetry: pip install "tallybook[otel]".') from None
        if type(trace.get_tracer_provider()).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
            trace.set_tracer_provider(_sdk_provider(service_name))
        return cls(trace.get_tracer("tallybook.gateway"), propagate, trace.SpanKind.CLIENT, trace.Status)

    def record(self, event: UsageEvent, started: float, headers: dict[bytes, bytes],
               request: dict[str, Any], server: str | None) -> None:
        """The span of one request that arrived at perf_counter() `started` and was metered just now."""
        now_ns = time.time_ns()
        start_ns = now_ns - int((time.perf_counter() - started) * 1e9)
        operation = OPERATIONS.get(event.endpoint, event.endpoint)
        requested = request.get("model") if isinstance(request.get("model"), str) else None
        usage = event.usage
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation, "gen_ai.provider.name": event.provider, "gen_ai.system": event.provider,
            "gen_ai.usage.input_tokens": usage.input_tokens + usage.cache_read_tokens + usage.cache_write_5m_tokens
            + usage.cache_write_1h_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "http.response.status_code": event.status, "tallybook.event_id": event.event_id,
            "tallybook.outcome": event.outcome, "tallybook.usage.origin": usage.origin,
            "tallybook.currency": event.currency,
        }
        optional = {"gen_ai.request.model": requested, "gen_ai.response.model": event.model,
                    "gen_ai.request.max_tokens": _max_tokens(request), "server.address": server,
                    "tallybook.customer": event.customer, "tallybook.virtual_key": event.virtual_key,
                    "tallybook.list_cost": None if event.list_cost is None else str(event.list_cost)}
        attributes.update({k: v for k, v in optional.items() if v is not None})
        if event.outcome != "ok":
            attributes["error.type"] = event.outcome if event.status < 400 else str(event.status)
        carrier = {name: headers[name.encode()].decode("latin-1") for name in PROPAGATED if name.encode() in headers}
        context = self.propagator.extract(carrier) if carrier else None
        span = self.tracer.start_span(f"{operation} {requested or event.model or ''}".strip(), context=context,
                                      kind=self.span_kind, start_time=start_ns, attributes=attributes)
        if event.outcome != "ok":
            span.set_status(self.status(_error_code(), event.outcome))
        span.end(end_time=now_ns)


def _max_tokens(request: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        if isinstance(request.get(name), int):
            return int(request[name])
    return None


def _error_code() -> Any:
    from opentelemetry.trace import StatusCode

    return StatusCode.ERROR


def _sdk_provider(service_name: str) -> Any:
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError('TALLYBOOK_GATEWAY_TRACING needs the OpenTelemetry SDK: pip install "tallybook[otel]".') from None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError('TALLYBOOK_GATEWAY_TRACING exports with OTLP: pip install "tallybook[otel]".') from None
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
