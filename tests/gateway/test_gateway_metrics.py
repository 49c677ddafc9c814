"""/metrics with several workers: whichever worker a scrape reaches, it reports every worker's requests."""

from __future__ import annotations

import multiprocessing
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tallybook.fakes.openai_chat import OpenAIChatFake
from tallybook.fakes.server import serve_in_thread
from tallybook.gateway.events import Usage, UsageEvent, new_event_id, utcnow
from tallybook.gateway.metrics import MULTIPROC_ENV, Metrics, shared_across_workers
from tests.cli.helpers import ok
from tests.gateway.gateway_process import start_gateway

HELLO = [{"role": "user", "content": "Say hello to the ledger."}]
REQUESTS = 40


def requests_counted(text: str) -> float:
    """The sum of tallybook_gateway_requests_total over its label sets."""
    found = re.findall(r"^tallybook_gateway_requests_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
    return sum(float(m) for m in found)


def _worker(requests: int, tokens: int) -> None:
    """A worker process: meters `requests` events of `tokens` output tokens each."""
    metrics = Metrics()
    for _ in range(requests):
        usage = Usage(input_tokens=1, output_tokens=tokens)
        metrics.observe(UsageEvent(event_id=new_event_id(), ts=utcnow(), org_id=1, virtual_key="vk", customer=None,
                                   feature=None, business_unit=None, tags={}, provider="openai",
                                   model="gpt-4o-mini", endpoint="chat.completions", streamed=False, status=200,
                                   outcome="ok", usage=usage, latency_ms=12))


def _scrape(out: Any) -> None:
    out.put(Metrics().render().decode())


@pytest.mark.slow
def test_workers_share_their_metrics_while_the_directory_lives() -> None:
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters, as uvicorn starts its workers
    with shared_across_workers(2) as directory:
        assert directory and os.environ[MULTIPROC_ENV] == directory
        workers = [spawn.Process(target=_worker, args=(n, 7)) for n in (3, 5)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
            assert worker.exitcode == 0
        out = spawn.Queue()
        scraper = spawn.Process(target=_scrape, args=(out,))  # a third worker answers the scrape
        scraper.start()
        text = out.get(timeout=30)
        scraper.join(30)
    assert requests_counted(text) == 8
    assert 'tokens_total{kind="output_tokens",model="gpt-4o-mini",origin="metered",provider="openai"} 56.0' in text
    assert 'requests_total{endpoint="chat.completions",outcome="ok",provider="openai",status="200",virtual_key="vk"} 8.0' \
        in text
    assert MULTIPROC_ENV not in os.environ and not Path(directory).exists()


def test_one_worker_keeps_its_metrics_in_memory_and_leaves_no_directory() -> None:
    with shared_across_workers(1) as directory:
        assert directory is None and MULTIPROC_ENV not in os.environ
    assert b"tallybook_gateway_requests" in Metrics().render()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_worker_reports_the_sum_over_all_workers(cli_env: dict[str, str], tmp_path: Path) -> None:
    fake = OpenAIChatFake()
    with serve_in_thread(fake.app) as upstream:
        env = {**cli_env, "TALLYBOOK_GATEWAY_SPOOL_DIR": str(tmp_path / "spool")}
        ok("providers", "add", "openai", "--base-url", upstream.url, env={**env, "OPENAI_API_KEY": "sk-test"})
        secret = ok("keys", "create", "--name", "k", "--format", "json", env=env).json()["secret"]
        gateway = start_gateway(env, tmp_path / "gateway.log", workers=2)
        try:
            for _ in range(REQUESTS):  # a new connection each: the kernel spreads them over the workers
                with httpx.Client(headers={"authorization": f"Bearer {secret}"}) as client:
                    response = client.post(gateway.url + "/v1/chat/completions",
                                           json={"model": "gpt-4o-mini", "messages": HELLO})
                    assert response.status_code == 200
            scrapes = []
            for _ in range(8):
                with httpx.Client() as client:
                    scrapes.append(requests_counted(client.get(gateway.url + "/metrics").text))
        finally:
            assert gateway.stop() == 0, gateway.output()
    assert len(fake.served) == REQUESTS
    assert scrapes == [REQUESTS] * len(scrapes)
