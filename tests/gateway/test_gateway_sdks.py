"""The official SDKs, pointed at the gateway with only base_url and key changed, get exactly what the
upstream sent, and every request is metered with the upstream's own usage."""

from __future__ import annotations

import asyncio
import json

import anthropic
import httpx
import openai
import pytest

from tallybook.gateway.events import UsageEvent

HELLO = [{"role": "user", "content": "Say hello to the ledger."}]
LONG = "All spend is metered. " * 300  # ~1650 tokens: long enough for the fakes to cache


def oai(gw, **headers: str) -> openai.OpenAI:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0, default_headers=headers)
    gw.clients.append(client)
    return client


def ant(gw, key: str | None = None) -> anthropic.Anthropic:
    client = anthropic.Anthropic(base_url=gw.url, api_key=key or gw.key, max_retries=0)
    gw.clients.append(client)
    return client


def assert_exact(event: UsageEvent, fake) -> None:
    """The event's usage is the upstream's ground truth, in the ledger's vocabulary."""
    truth = fake.served.last().tokens
    u = event.usage
    assert u.origin == "metered"
    assert u.input_tokens + u.cache_read_tokens + u.cache_write_5m_tokens + u.cache_write_1h_tokens \
        == truth.input_tokens
    assert u.cache_read_tokens == truth.cache_read_tokens
    assert u.cache_write_5m_tokens + u.cache_write_1h_tokens == truth.cache_write_tokens
    assert u.output_tokens == truth.output_tokens
    assert u.reasoning_tokens == truth.reasoning_tokens


# -- OpenAI ---------------------------------------------------------------------------------------------


def test_chat_completion_is_relayed_and_metered_with_attribution(gw) -> None:
    client = oai(gw, **{"X-Tallybook-Customer": "globex", "X-Tallybook-Business-Unit": "sales",
                        "X-Tallybook-Tags": "env=prod,team=core"})
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": LONG}])
    assert reply.choices[0].message.content
    event = gw.spool.last()
    assert_exact(event, gw.openai)
    assert event.usage.cache_read_tokens > 0  # the long prompt read from OpenAI's cache
    assert (event.provider, event.model, event.endpoint, event.status, event.outcome, event.streamed) == \
        ("openai", "gpt-4o-mini", "chat.completions", 200, "ok", False)
    assert (event.virtual_key, event.customer, event.feature, event.business_unit) == \
        (gw.key_id, "globex", "chat", "sales")  # customer from the header, feature from the key
    assert event.tags == {"env": "prod", "team": "core"}
    assert event.list_cost is not None and event.list_cost > 0 and event.price_version
    assert event.upstream_request_id == gw.openai.served.last().request_id
    assert "Say" not in event.to_json() and "metered" not in event.to_json().replace('"metered"', "")


def test_non_stream_bytes_are_the_upstreams_bytes(gw) -> None:
    body = {"model": "gpt-4o", "messages": HELLO}
    response = httpx.post(gw.url + "/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer {gw.key}"})
    assert response.status_code == 200
    assert response.content == gw.recorders["openai"].bodies[-1]
    assert response.headers["x-request-id"] == gw.openai.served.last().request_id
    assert response.headers["x-tallybook-event-id"] == gw.spool.last().event_id


def test_stream_with_include_usage_reaches_the_client_unchanged(gw) -> None:
    client = oai(gw)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == gw.openai.served.last().tokens.output_tokens
    event = gw.spool.last()
    assert event.streamed and event.outcome == "ok"
    assert_exact(event, gw.openai)


def test_stream_without_include_usage_is_metered_but_the_client_sees_no_usage(gw) -> None:
    body = {"model": "gpt-4o-mini", "messages": HELLO, "stream": True}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {gw.key}"}) as response:
        received = response.read()
    upstream = gw.recorders["openai"].bodies[-1]
    assert b'"usage":{' in upstream  # the gateway asked for it ...
    assert b'"usage"' not in received  # ... and the client never sees it
    frames = upstream.split(b"\n\n")
    expected = b"\n\n".join(f.replace(b',"usage":null', b"") for f in frames if b'"usage":{' not in f)
    assert received == expected
    assert_exact(gw.spool.last(), gw.openai)

    chunks = list(oai(gw).chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)
    assert_exact(gw.spool.last(), gw.openai)


def test_responses_and_embeddings(gw) -> None:
    client = oai(gw)
    response = client.responses.create(model="o3-mini", input="Count the tokens, please.")
    assert response.output_text
    event = gw.spool.last()
    assert event.endpoint == "responses" and event.usage.reasoning_tokens > 0
    assert_exact(event, gw.openai)

    with client.responses.stream(model="gpt-4o", input="Stream the ledger.") as stream:
        final = stream.get_final_response()
    assert final.usage is not None
    event = gw.spool.last()
    assert event.streamed and event.endpoint == "responses"
    assert_exact(event, gw.openai)

    vectors = client.embeddings.create(model="text-embedding-3-small", input=["a ledger", "of spend"])
    assert len(vectors.data) == 2
    event = gw.spool.last()
    assert event.endpoint == "embeddings" and event.usage.input_tokens == vectors.usage.prompt_tokens
    assert_exact(event, gw.openai)

    assert [m.id for m in client.models.list()][:1] == ["gpt-4o-mini"]
    assert gw.spool.last().endpoint == "models"


def test_async_client(gw) -> None:
    async def run() -> str | None:
        async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0) as client:
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(run())
    assert_exact(gw.spool.last(), gw.openai)


def test_client_provider_key_passes_through_only_when_enabled(gw) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-clients-own", max_retries=0,
                           default_headers={"X-Tallybook-Key": gw.key})
    gw.clients.append(client)
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert gw.openai.served.last().api_key == "sk-test"  # off by default: the vault's key
    gw.app.passthrough = True
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    finally:
        gw.app.passthrough = False
    assert gw.openai.served.last().api_key == "sk-clients-own"
    assert gw.spool.last().virtual_key == gw.key_id


def test_idempotent_retries_are_one_event(gw) -> None:
    client = oai(gw)
    gw.openai.faults.add({"path": "/v1/chat/completions", "kind": "status", "status": 503})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO,
                                       extra_headers={"Idempotency-Key": "order-42"})
    failed = gw.spool.last()  # a failed try keeps an id of its own, so it cannot shadow the retry
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO,
                                       extra_headers={"Idempotency-Key": "order-42"})
    first, second = gw.spool.events[-2:]
    assert first.event_id == second.event_id and first.idempotency_key == "order-42"
    assert failed.outcome == "upstream_error" and failed.event_id != first.event_id
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, extra_headers={"Idempotency-Key": "x"})
    assert gw.spool.last().event_id != first.event_id


# -- Anthropic -------------------------------------------------------------------------------------------


def test_anthropic_messages_create_and_stream(gw) -> None:
    gw.anthropic.forget_cache()
    client = ant(gw)
    system = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=200, system=system, messages=HELLO)
    assert message.content[0].text
    event = gw.spool.last()
    assert (event.provider, event.endpoint) == ("anthropic", "messages")
    assert event.usage.cache_write_1h_tokens > 0
    assert_exact(event, gw.anthropic)
    assert event.list_cost is not None and event.list_cost > 0

    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=200, system=system,
                                messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.cache_read_input_tokens > 0
    event = gw.spool.last()
    assert event.streamed and event.outcome == "ok" and event.usage.cache_read_tokens > 0
    assert_exact(event, gw.anthropic)

    count = client.messages.count_tokens(model="claude-sonnet-4-6", messages=HELLO)
    assert count.input_tokens > 0
    assert gw.spool.last().endpoint == "messages.count_tokens" and gw.spool.last().usage.total_tokens == 0


def test_anthropic_non_stream_bytes_are_the_upstreams_bytes(gw) -> None:
    body = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": HELLO}
    response = httpx.post(gw.url + "/v1/messages", json=body,
                          headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"})
    assert response.status_code == 200
    assert response.content == gw.recorders["anthropic"].bodies[-1]
    assert response.headers["request-id"] == gw.anthropic.served.last().request_id


# -- other upstreams -------------------------------------------------------------------------------------


def test_cohere_native_chat_stream_and_not(gw) -> None:
    headers = {"authorization": f"Bearer {gw.key}"}
    body = {"model": "command-r-plus", "messages": HELLO}
    response = httpx.post(gw.url + "/v2/chat", json=body, headers=headers)
    assert response.status_code == 200 and response.content == gw.recorders["cohere"].bodies[-1]
    assert_exact(gw.spool.last(), gw.cohere)
    with httpx.stream("POST", gw.url + "/v2/chat", json={**body, "stream": True}, headers=headers) as streamed:
        assert streamed.read() == gw.recorders["cohere"].bodies[-1]
    event = gw.spool.last()
    assert event.streamed and event.provider == "cohere"
    assert_exact(event, gw.cohere)


def test_ollama_native_and_openai_compatible(gw) -> None:
    headers = {"authorization": f"Bearer {gw.key}"}
    with httpx.stream("POST", gw.url + "/api/chat", headers=headers,
                      json={"model": "llama3.2", "messages": HELLO}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1]["done"] is True
    event = gw.spool.last()
    assert_exact(event, gw.ollama)
    assert event.usage.gpu_seconds is not None
    assert event.usage.gpu_seconds * 1_000_000_000 == lines[-1]["total_duration"]
    assert event.list_cost == event.usage.gpu_seconds * 2 / 3600

    client = oai(gw, **{"X-LLM-Provider": "ollama"})
    reply = client.chat.completions.create(model="qwen2.5:7b", messages=HELLO)
    assert reply.system_fingerprint == "fp_ollama"
    event = gw.spool.last()
    assert event.provider == "ollama" and event.usage.gpu_seconds is not None
    assert_exact(event, gw.ollama)


# -- failures ------------------------------------------------------------------------------------------


def test_client_cancelled_stream_is_metered_as_estimated(gw) -> None:
    gw.openai.chunk_delay = 0.05
    before = len(gw.spool.events)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell a long story " * 20}],
            "stream": True}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {gw.key}"}) as response:
        for _ in zip(range(3), response.iter_raw(), strict=False):
            pass
    event = gw.spool.wait_for(before + 1)[-1]
    assert event.outcome == "cancelled" and event.usage.origin == "estimated"
    assert event.usage.input_tokens > 0 and event.usage.output_tokens >= 1
    assert event.list_cost is not None


def test_cancelled_anthropic_stream_keeps_the_providers_input_figures(gw) -> None:
    gw.anthropic.chunk_delay = 0.05
    before = len(gw.spool.events)
    body = {"model": "claude-haiku-4-5", "max_tokens": 200, "stream": True,
            "messages": [{"role": "user", "content": "Tell a long story " * 20}]}
    with httpx.stream("POST", gw.url + "/v1/messages", json=body,
                      headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"}) as response:
        for _ in zip(range(5), response.iter_raw(), strict=False):
            pass
    event = gw.spool.wait_for(before + 1)[-1]
    truth = gw.anthropic.served.last()
    assert event.outcome == "cancelled" and event.usage.origin == "estimated"
    assert event.usage.input_tokens == truth.usage["input_tokens"]  # from message_start, exact
    assert 1 <= event.usage.output_tokens < truth.tokens.output_tokens  # counted from the text relayed


def test_upstream_errors(gw) -> None:
    gw.openai.faults.add({"path": "/v1/chat/completions", "kind": "status", "status": 500})
    with pytest.raises(openai.InternalServerError):
        oai(gw).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    event = gw.spool.last()
    assert (event.status, event.outcome, event.usage.total_tokens) == (500, "upstream_error", 0)

    gw.openai.faults.add({"path": "/v1/chat/completions", "kind": "stream_cut", "after_chunks": 3})
    chunks = list(oai(gw).chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))
    assert len(chunks) == 3  # the role chunk and two words, then the upstream dropped
    event = gw.spool.last()
    assert event.outcome == "upstream_error" and event.usage.origin == "estimated"
    assert event.usage.output_tokens >= 1

    gw.openai.faults.add({"path": "/v1/chat/completions", "kind": "delay", "seconds": 3})
    with pytest.raises(openai.APIStatusError) as caught:
        oai(gw).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert caught.value.status_code == 504 and "did not answer in time" in caught.value.message
    assert gw.spool.last().outcome == "upstream_error"
    assert oai(gw).chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices


@pytest.mark.parametrize(("path", "headers", "content", "status", "says"), [
    ("/v1/chat/completions", {}, b'{"model":"gpt-4o"}', 401, "No virtual key"),
    ("/v1/chat/completions", {"authorization": "Bearer tb-nope"}, b"{}", 401, "unknown or revoked"),
    ("/v1/chat/completions", {"authorization": "Bearer KEY"}, b'{"model": gpt', 400, "not valid JSON"),
    ("/v1/chat/completions", {"authorization": "Bearer KEY", "x-llm-provider": "mistral"},
     b'{"model":"gpt-4o","messages":[]}', 404, "Unknown provider"),
    ("/v1/chat/completions", {"authorization": "Bearer KEY"}, b'{"model":"mystery-9","messages":[]}', 404,
     "X-LLM-Provider"),
    ("/v1/chat/completions", {"authorization": "Bearer KEY"}, b'{"x":"' + b"a" * 300_000 + b'"}', 413,
     "larger than"),
    ("/v1/nothing", {}, b"{}", 404, "No route"),
])
def test_bad_requests_get_openai_shaped_errors(gw, path, headers, content, status, says) -> None:
    headers = {k: v.replace("KEY", gw.key) for k, v in headers.items()}
    response = httpx.post(gw.url + path, content=content, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert says in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert oai(gw).chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices  # still serving


def test_bad_requests_get_anthropic_shaped_errors(gw) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        ant(gw, gw.revoked_key).messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=HELLO)
    assert "unknown or revoked" in caught.value.message
    response = httpx.post(gw.url + "/v1/messages", content=b"{oops", headers={"x-api-key": gw.key})
    assert response.status_code == 400
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "invalid_request_error"
    assert gw.spool.last().outcome == "rejected"
    with pytest.raises(anthropic.NotFoundError):
        ant(gw).messages.create(model="claude-haiku-4-5", max_tokens=10, messages=HELLO,
                                extra_headers={"X-LLM-Provider": "openai"})
    assert ant(gw).messages.create(model="claude-haiku-4-5", max_tokens=10, messages=HELLO).content


def test_operations_endpoints(gw) -> None:
    assert httpx.get(gw.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gw.url + "/readyz").status_code == 200
    oai(gw).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    text = httpx.get(gw.url + "/metrics").text
    assert 'tallybook_gateway_requests_total{endpoint="chat.completions",outcome="ok",provider="openai"' in text
    assert "tallybook_gateway_tokens_total" in text
