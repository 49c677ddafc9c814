"""Acceptance: 1,000 mixed requests through a real `tallybook gateway` (two workers) to the fakes.

Streams and non-streams from the official openai and anthropic SDKs (sync and async), cancellations
from a raw HTTP client, upstream 500s the SDKs retry with their Idempotency-Key, and explicit
duplicate retries, from several customers. Then, with the gateway stopped (its spools flushed):

- per customer, the metered token totals in the ledger equal the fakes' own counts exactly, every
  measure, counting each idempotency key once (the fakes serve a retry twice; it is billed once);
- every cancelled request is in the ledger once, cancelled and estimated; only one whose whole answer
  had reached the gateway before it saw the hang-up may be metered instead (exactly; at most 5 %);
- the upstream 500s are there with no usage, and nothing else is;
- `tallybook report usage --source gateway --group-by customer` says the same.

The fakes' counts come from their own logs alone: every request carries an Idempotency-Key that
names its customer, and the fakes record the key of every request they answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa

from tallybook.fakes.anthropic_messages import AnthropicMessagesFake
from tallybook.fakes.chat_upstreams import ServedLog, Tokens, plan_reply
from tallybook.fakes.openai_chat import OpenAIChatFake
from tallybook.fakes.server import serve_in_thread
from tallybook.ledger import schema as t
from tallybook.ledger.db import connect
from tests.cli.helpers import ok
from tests.gateway.gateway_process import start_gateway

pytestmark = pytest.mark.slow

TOTAL = 1000
CUSTOMERS = ("acme", "globex", "initech", "umbrella")
KINDS = {  # kind: weight
    "openai_sync": 14, "openai_sync_stream": 10, "openai_async": 12, "openai_async_stream": 12,
    "anthropic_sync": 10, "anthropic_sync_stream": 8, "anthropic_async": 10, "anthropic_async_stream": 8,
    "openai_cancel": 5, "anthropic_cancel": 5, "openai_twice": 3, "anthropic_twice": 3,
}
FAULT_EVERY = 30  # one upstream 500 per this many requests, on the path the request is about to take
WORDS = ["spend", "tokens", "ledger", "budget", "stream", "replica", "invoice", "customer", "gateway", "model", "cache"]
LONG = "All spend is metered, every token once. " * 140  # over 1024 tokens: OpenAI reads part from cache
MEASURES = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")


@dataclass(frozen=True)
class Planned:
    index: int
    kind: str
    customer: str
    key: str  # "a" (its default customer is acme) or "b" (none)
    header: bool  # send X-Tallybook-Customer
    model: str
    text: str
    cached_system: bool  # an Anthropic system prompt with cache_control

    @property
    def idempotency_key(self) -> str:
        return f"{self.customer}.{self.index}"

    @property
    def provider(self) -> str:
        return self.kind.split("_")[0]


def plan(seed: int = 4) -> list[Planned]:
    rng = random.Random(seed)
    kinds = rng.choices(list(KINDS), weights=list(KINDS.values()), k=TOTAL)
    plans = []
    for index, kind in enumerate(kinds):
        customer = rng.choice(CUSTOMERS)
        key = rng.choice("ab")
        header = not (key == "a" and customer == "acme" and rng.random() < 0.5)
        text = " ".join(rng.choices(WORDS, k=rng.randint(3, 40)))
        if kind.endswith("cancel"):  # long enough an answer that it is still streaming when cancelled
            while plan_reply([text]).completion_tokens < 25:
                text += " " + rng.choice(WORDS)
        elif kind.startswith("openai") and rng.random() < 0.1:
            text = LONG + text
        openai_models = ("gpt-4o-mini", "gpt-4o", "o3-mini")
        model = rng.choice(openai_models if kind.startswith("openai") else ("claude-haiku-4-5", "claude-sonnet-4-6"))
        # A cached system prompt writes on its first use and reads after: a duplicate would differ, so not there.
        cached = kind.startswith("anthropic") and not kind.endswith(("twice", "cancel")) and rng.random() < 0.2
        plans.append(Planned(index, kind, customer, key, header, model, text, cached))
    return plans


@dataclass
class Outcomes:
    cancelled_keys: list[str] = dataclasses.field(default_factory=list)  # their idempotency keys
    failed: list[str] = dataclasses.field(default_factory=list)  # requests the client saw fail in the end


class Driver:
    """Sends the planned requests, at most `concurrency` at a time, sync SDK calls on a thread pool."""

    def __init__(self, url: str, secrets: dict[str, str], faults: Callable[[str], None]) -> None:
        self.url, self.secrets, self.add_fault = url, secrets, faults
        self.outcomes = Outcomes()
        self.sync_openai = {k: openai.OpenAI(base_url=url + "/v1", api_key=s, max_retries=2) for k, s in secrets.items()}
        self.sync_anthropic = {k: anthropic.Anthropic(base_url=url, api_key=s, max_retries=2)
                               for k, s in secrets.items()}

    def headers(self, p: Planned) -> dict[str, str]:
        headers = {"Idempotency-Key": p.idempotency_key}
        if p.header:
            headers["X-Tallybook-Customer"] = p.customer
        return headers

    def openai_args(self, p: Planned) -> dict[str, Any]:
        args: dict[str, Any] = {"model": p.model, "messages": [{"role": "user", "content": p.text}],
                                "extra_headers": self.headers(p)}
        if p.kind == "openai_sync_stream":
            args["stream_options"] = {"include_usage": True}
        return args

    def anthropic_args(self, p: Planned) -> dict[str, Any]:
        args: dict[str, Any] = {"model": p.model, "max_tokens": 64, "messages": [{"role": "user", "content": p.text}],
                                "extra_headers": self.headers(p)}
        if p.cached_system:
            args["system"] = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]
        return args

    def run_sync(self, p: Planned) -> None:
        if p.provider == "openai":
            client = self.sync_openai[p.key]
            if p.kind == "openai_sync_stream":
                chunks = list(client.chat.completions.create(stream=True, **self.openai_args(p)))
                assert chunks[-1].usage is not None
            else:
                for _ in range(2 if p.kind == "openai_twice" else 1):
                    assert client.chat.completions.create(**self.openai_args(p)).usage is not None
        else:
            ant = self.sync_anthropic[p.key]
            if p.kind == "anthropic_sync_stream":
                with ant.messages.stream(**self.anthropic_args(p)) as stream:
                    assert stream.get_final_message().usage.output_tokens > 0
            else:
                for _ in range(2 if p.kind == "anthropic_twice" else 1):
                    assert ant.messages.create(**self.anthropic_args(p)).usage.output_tokens > 0

    async def run_async(self, p: Planned, clients: dict[str, Any]) -> None:
        if p.kind == "openai_async":
            assert (await clients["openai"][p.key].chat.completions.create(**self.openai_args(p))).usage
        elif p.kind == "openai_async_stream":  # no include_usage: the gateway asks, the client sees none
            stream = await clients["openai"][p.key].chat.completions.create(stream=True, **self.openai_args(p))
            assert all([c.usage is None async for c in stream])
        elif p.kind == "anthropic_async":
            assert (await clients["anthropic"][p.key].messages.create(**self.anthropic_args(p))).usage
        elif p.kind == "anthropic_async_stream":
            async with clients["anthropic"][p.key].messages.stream(**self.anthropic_args(p)) as stream:
                assert (await stream.get_final_message()).usage.output_tokens > 0
        else:
            await self.cancel(p, clients["raw"])

    async def cancel(self, p: Planned, raw: httpx.AsyncClient) -> None:
        """Read the first few chunks of a slowed-down stream, then hang up."""
        key = self.secrets[p.key]
        if p.provider == "openai":
            path, body = "/v1/chat/completions", {"model": p.model, "stream": True,
                                                  "messages": [{"role": "user", "content": p.text}]}
            headers = {"authorization": f"Bearer {key}"}
        else:
            path, body = "/v1/messages", {"model": p.model, "stream": True, "max_tokens": 64,
                                          "messages": [{"role": "user", "content": p.text}]}
            headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        headers.update(self.headers(p), **{"x-fake-chunk-delay": "0.05"})
        async with raw.stream("POST", self.url + path, json=body, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                self.outcomes.failed.append(f"{p.kind} {p.index}: {response.status_code}")
                return
            seen = 0
            async for _ in response.aiter_raw():
                seen += 1
                if seen == 3:
                    break
        self.outcomes.cancelled_keys.append(p.idempotency_key)

    async def run(self, plans: list[Planned], concurrency: int = 24) -> Outcomes:
        gate = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()
        async_openai = {k: openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=s, max_retries=2)
                        for k, s in self.secrets.items()}
        async_anthropic = {k: anthropic.AsyncAnthropic(base_url=self.url, api_key=s, max_retries=2)
                           for k, s in self.secrets.items()}
        clients = {"openai": async_openai, "anthropic": async_anthropic,
                   "raw": httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))}
        pool = ThreadPoolExecutor(max_workers=10)

        async def one(p: Planned) -> None:
            async with gate:
                if p.index % FAULT_EVERY == 7:
                    path = "/v1/chat/completions" if p.provider == "openai" else "/v1/messages"
                    self.add_fault(path)
                try:
                    if "async" in p.kind or p.kind.endswith("cancel"):
                        await self.run_async(p, clients)
                    else:
                        await loop.run_in_executor(pool, self.run_sync, p)
                except (openai.APIStatusError, anthropic.APIStatusError) as exc:  # 500s past the SDK's retries
                    self.outcomes.failed.append(f"{p.kind} {p.index}: {exc.status_code}")

        try:
            await asyncio.gather(*(one(p) for p in plans))
        finally:
            pool.shutdown(wait=True)
            for group in (async_openai, async_anthropic):
                for client in group.values():
                    await client.close()
            await clients["raw"].aclose()
            for sync in (*self.sync_openai.values(), *self.sync_anthropic.values()):
                sync.close()
        return self.outcomes


def fake_totals(*logs: ServedLog, leave_out: set[str]) -> tuple[dict[str, dict[str, int]], Counter[str]]:
    """Per customer, the tokens the fakes reported for answers they completed, each idempotency key
    once (but those in `leave_out`); and per customer, how many keys got an answer."""
    by_key: dict[str, Tokens] = {}
    for log in logs:
        for served in log.all():
            if served.status != 200 or not served.completed or served.tokens is None:
                continue
            if served.idempotency_key in leave_out:
                continue
            key = served.idempotency_key
            assert key, f"{served.path} was served without the client's Idempotency-Key"
            if key in by_key:  # a retry the upstream answered again: the same prompt, the same usage
                assert by_key[key] == served.tokens, key
            by_key[key] = served.tokens
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(MEASURES, 0))
    answered: Counter[str] = Counter()
    for key, tokens in by_key.items():
        customer = key.split(".")[0]
        answered[customer] += 1
        for name in MEASURES:
            totals[customer][name] += getattr(tokens, name)
    return dict(totals), answered


def ledger_totals(rows: list[Any]) -> dict[str, dict[str, int]]:
    """Ledger rows (events or report rows) per customer, in the fakes' vocabulary (whole input)."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(MEASURES, 0))
    for row in rows:
        writes = int(row["cache_write_5m_tokens"]) + int(row["cache_write_1h_tokens"])
        out = totals[row["customer"]]
        out["input_tokens"] += int(row["input_tokens"]) + int(row["cache_read_tokens"]) + writes
        out["cache_read_tokens"] += int(row["cache_read_tokens"])
        out["cache_write_tokens"] += writes
        out["output_tokens"] += int(row["output_tokens"])
        out["reasoning_tokens"] += int(row["reasoning_tokens"])
    return dict(totals)


@pytest.fixture
def fakes() -> Iterator[tuple[OpenAIChatFake, AnthropicMessagesFake, str, str]]:
    oai, ant = OpenAIChatFake(), AnthropicMessagesFake()
    with serve_in_thread(oai.app) as oai_server, serve_in_thread(ant.app) as ant_server:
        yield oai, ant, oai_server.url, ant_server.url


def test_a_thousand_mixed_requests_are_in_the_ledger_exactly_as_the_fakes_counted(
        cli_env: dict[str, str], fakes, tmp_path: Path) -> None:
    oai, ant, oai_url, ant_url = fakes
    env = {**cli_env, "TALLYBOOK_GATEWAY_SPOOL_DIR": str(tmp_path / "spool")}
    ok("providers", "add", "openai", "--base-url", oai_url, env={**env, "OPENAI_API_KEY": "sk-test"})
    ok("providers", "add", "anthropic", "--base-url", ant_url, env={**env, "ANTHROPIC_API_KEY": "sk-ant-test"})
    secrets = {
        "a": ok("keys", "create", "--name", "app-a", "--customer", "acme", "--format", "json", env=env).json()["secret"],
        "b": ok("keys", "create", "--name", "app-b", "--format", "json", env=env).json()["secret"],
    }
    fault = {"kind": "status", "status": 500, "message": "The server had an error while processing your request."}

    def add_fault(path: str) -> None:
        (oai if path == "/v1/chat/completions" else ant).faults.add({**fault, "path": path})

    plans = plan()
    gateway = start_gateway(env, tmp_path / "gateway.log", workers=2)
    try:
        outcomes = asyncio.run(Driver(gateway.url, secrets, add_fault).run(plans))
    finally:
        assert gateway.stop() == 0, gateway.output()

    statuses = Counter(s.status for s in [*oai.served.all(), *ant.served.all()])
    assert statuses[500] >= TOTAL // FAULT_EVERY - 2, statuses  # the 500s happened (and the SDKs retried them)
    # Only a cancellation (no retries) or an SDK call that met 500 three times in a row can fail.
    assert all(f.endswith(": 500") for f in outcomes.failed), outcomes.failed
    assert sum("cancel" not in f for f in outcomes.failed) <= 1, outcomes.failed
    cancelled = set(outcomes.cancelled_keys)
    assert len(cancelled) >= 80
    expected, answered = fake_totals(oai.served, ant.served, leave_out=cancelled)
    assert set(expected) == set(CUSTOMERS)

    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            events = [dict(r) for r in conn.execute(sa.select(t.usage_events)).mappings()]
    finally:
        engine.dispose()
    served = [s for s in [*oai.served.all(), *ant.served.all()] if s.status == 200]
    completed = {s.idempotency_key: s.tokens for s in served if s.completed}
    late = []
    for key in sorted(cancelled):
        # Each cancellation is in the ledger once, as cancelled and estimated from what was relayed;
        # metered only if the upstream's whole answer had reached the gateway before it saw the hang-up.
        [event] = [e for e in events if e["idempotency_key"] == key and e["outcome"] != "upstream_error"]
        if event["outcome"] == "cancelled":
            assert event["usage_origin"] == "estimated"
            assert event["input_tokens"] + event["cache_read_tokens"] > 0 and event["output_tokens"] >= 1
        else:
            assert (event["outcome"], event["usage_origin"]) == ("ok", "metered") and key in completed, event
            assert ledger_totals([event])[event["customer"]] == dataclasses.asdict(completed[key])
            late.append(key)
    print(f"{len(cancelled)} cancellations, {len(late)} seen only after the upstream had finished: {late}")
    assert len(late) <= len(cancelled) // 20, late
    requests = [e for e in events if e["idempotency_key"] not in cancelled]
    metered = [e for e in requests if e["outcome"] == "ok"]

    # Exact per customer, every measure, each idempotency key once.
    assert {e["usage_origin"] for e in metered} == {"metered"}
    assert ledger_totals(metered) == expected
    assert Counter(e["customer"] for e in metered) == answered
    assert len({e["idempotency_key"] for e in metered}) == len(metered)
    # The rest are upstream errors (the 500s), in the ledger with no usage.
    others = [e for e in requests if e["outcome"] != "ok"]
    assert {e["outcome"] for e in others} == {"upstream_error"} and len(others) == statuses[500]
    assert all(sum(ledger_totals([e])[e["customer"]].values()) == 0 for e in others)

    # The report a user reads says the same: the metered totals plus the cancelled requests.
    report = ok("report", "usage", "--source", "gateway", "--group-by", "customer", "--format", "json",
                env=env).json()
    guessed = ledger_totals([e for e in events if e["idempotency_key"] in cancelled])
    assert ledger_totals(report) == {
        customer: {m: expected[customer][m] + guessed.get(customer, dict.fromkeys(MEASURES, 0))[m] for m in MEASURES}
        for customer in CUSTOMERS}
