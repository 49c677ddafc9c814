"""Rate limits and budgets (gateway.limits) refuse in the provider's own shape, with retry-after."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import anthropic
import openai
import pytest

from tallybook.config import Settings
from tallybook.gateway.app import Gateway, create_app
from tallybook.gateway.keys import KeyCache, create_key
from tallybook.gateway.limits import Limits
from tallybook.gateway.providers import AnthropicUpstream, OpenAIUpstream
from tallybook.gateway.server import Running
from tallybook.gateway.server import serve_in_thread as serve_gateway
from tallybook.ledger import store
from tests.gateway.conftest import CapturingSpool, Stack

HELLO = [{"role": "user", "content": "Say hello to the ledger."}]


@pytest.fixture
def limited(stack: Stack) -> Iterator[tuple[str, dict[str, str], CapturingSpool]]:
    with stack.engine.begin() as conn:
        org = store.ensure_org(conn, "default")
        _, slow = create_key(conn, org_id=org, name="slow", rpm=1)
        _, poor = create_key(conn, org_id=org, name="poor", budget=Decimal("0.0000001"), budget_period="day")
    spool = CapturingSpool()
    limits = Limits(stack.engine)
    app: Gateway = create_app(
        keys=KeyCache(stack.engine), limits=limits, spool=spool, settings=Settings(),
        upstreams=[OpenAIUpstream(stack.upstream_urls["openai"], "sk-test"),
                   AnthropicUpstream(stack.upstream_urls["anthropic"], "sk-ant-test")])
    server: Running = serve_gateway(app)
    yield server.url, {"slow": slow, "poor": poor}, spool
    if app.loop is not None:
        import asyncio

        asyncio.run_coroutine_threadsafe(limits.close(), app.loop).result(timeout=10)
        asyncio.run_coroutine_threadsafe(app.aclose(), app.loop).result(timeout=10)
    server.stop()


def test_rate_limit_answers_429_with_retry_after(limited) -> None:
    url, keys, spool = limited
    with openai.OpenAI(base_url=url + "/v1", api_key=keys["slow"], max_retries=0) as client:
        assert client.chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert "Rate limit" in caught.value.message
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert spool.last().outcome == "rejected" and spool.last().status == 429


def test_spent_budget_answers_429_in_anthropics_shape(limited) -> None:
    url, keys, spool = limited
    with anthropic.Anthropic(base_url=url, api_key=keys["poor"], max_retries=0) as client:
        for _ in range(3):  # the first may be admitted at the edge of the budget; then it is spent
            try:
                client.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=HELLO)
            except anthropic.RateLimitError as exc:
                assert exc.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
                assert "resets at" in exc.message
                break
        else:
            pytest.fail("the spent budget never refused a request")
    assert spool.last().outcome == "rejected"
