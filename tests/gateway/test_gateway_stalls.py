"""A fresh gateway worker's first estimated event (a cancelled stream) must not stall the streams it
is relaying for other clients: the tokenizer is ready before the worker takes requests.

Regression: tiktoken's ranks loaded on the event loop at a worker's first estimate (~1.3 s), so every
other stream of that worker stalled, and cancellations meanwhile were metered as completed (fixed in 128ee4e)."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import httpx
import pytest

from tallybook.fakes.chat_upstreams import plan_reply
from tallybook.fakes.openai_chat import OpenAIChatFake
from tallybook.fakes.server import serve_in_thread
from tests.cli.helpers import ok
from tests.gateway.gateway_process import start_gateway

DELAY = 0.05  # seconds between the fake's frames


def long_prompt(at_least: int) -> str:
    text = "tell the ledger a story"
    while plan_reply([text]).completion_tokens < at_least:
        text += " again"
    return text


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_workers_first_cancelled_stream_does_not_stall_the_others(cli_env: dict[str, str], tmp_path: Path) -> None:
    fake = OpenAIChatFake()
    with serve_in_thread(fake.app) as upstream:
        env = {**cli_env, "TALLYBOOK_GATEWAY_SPOOL_DIR": str(tmp_path / "spool")}
        ok("providers", "add", "openai", "--base-url", upstream.url, env={**env, "OPENAI_API_KEY": "sk-test"})
        secret = ok("keys", "create", "--name", "k", "--format", "json", env=env).json()["secret"]
        gateway = start_gateway(env, tmp_path / "gateway.log")
        headers = {"authorization": f"Bearer {secret}", "x-fake-chunk-delay": str(DELAY)}
        arrivals: list[float] = []
        started = threading.Event()

        def watched_stream() -> None:
            body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": long_prompt(40)}]}
            with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=headers,
                              timeout=30) as response:
                for _ in response.iter_raw():
                    arrivals.append(time.monotonic())
                    if len(arrivals) == 5:
                        started.set()

        try:
            watcher = threading.Thread(target=watched_stream)
            watcher.start()
            assert started.wait(10)
            body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": long_prompt(30)}]}
            with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=headers) as cancelled:
                for _ in zip(range(2), cancelled.iter_raw(), strict=False):
                    pass
            hung_up = time.monotonic()
            watcher.join(20)
        finally:
            gateway.stop()
    gaps = [b - a for a, b in itertools.pairwise(arrivals) if b > hung_up]
    assert gaps and max(gaps) < 0.5, f"the other stream stalled for {max(gaps):.2f} s"
