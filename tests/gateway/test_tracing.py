"""OpenTelemetry: off by default and never imported then; on, one span per request with the GenAI attributes."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest

from tallybook.config import Settings
from tallybook.gateway.app import create_app
from tallybook.gateway.providers import OpenAIUpstream
from tallybook.gateway.server import serve_in_thread as serve_gateway
from tallybook.gateway.tracing import Tracing
from tests.gateway.conftest import CapturingSpool, Stack


def test_tracing_off_imports_no_opentelemetry() -> None:
    code = ("import sys; import tallybook.gateway.app, tallybook.gateway.tracing; "
            "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_request_becomes_one_span_with_genai_attributes(stack: Stack) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import propagate, trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider.get_tracer("test"), propagate, trace.SpanKind.CLIENT, trace.Status)
    spool = CapturingSpool()
    app = create_app(keys=stack.keys, limits=None, spool=spool, settings=Settings(), tracing=tracing,
                     upstreams=[OpenAIUpstream(stack.upstream_urls["openai"], "sk-test")])
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with serve_gateway(app) as server:
        response = httpx.post(server.url + "/v1/chat/completions", headers={
            "authorization": f"Bearer {stack.key}", "traceparent": parent},
            json={"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]})
        assert app.loop is not None  # close the upstream pool on the loop that opened it
        asyncio.run_coroutine_threadsafe(app.aclose(), app.loop).result(timeout=10)
    assert response.status_code == 200
    (span,) = exporter.get_finished_spans()
    event = spool.last()
    usage = event.usage
    assert span.name == "chat gpt-4o-mini" and span.kind == trace.SpanKind.CLIENT
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"  # the client's trace
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini" and attributes["gen_ai.request.max_tokens"] == 20
    assert attributes["gen_ai.usage.input_tokens"] == usage.input_tokens + usage.cache_read_tokens > 0
    assert attributes["gen_ai.usage.output_tokens"] == usage.output_tokens > 0
    assert attributes["tallybook.event_id"] == event.event_id and attributes["tallybook.customer"] == "acme"
    assert attributes["tallybook.list_cost"] == str(event.list_cost) and attributes["http.response.status_code"] == 200
    assert span.end_time > span.start_time
