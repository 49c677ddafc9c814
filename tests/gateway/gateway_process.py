"""`tallybook gateway` as a real process, for the tests that need whole processes (load, metrics
across workers, kill -9, budgets across gateways): start it, wait until it is ready, stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 90) -> int:
        """A graceful stop (SIGINT, as Ctrl-C): the workers flush their spools into the ledger."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """kill -9 the whole process group: the supervisor and every worker, mid-request."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_gateway(env: dict[str, str], log: Path, *, workers: int = 1, port: int | None = None,
                  timeout: float = 120) -> GatewayProcess:
    """Run `tallybook gateway` with `env` (on top of this process's) and return once /readyz answers 200."""
    port = port or free_port()
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tallybook.cli", "gateway", "--port", str(port), "--workers", str(workers)],
            env={**os.environ, **env}, stdout=stderr, stderr=stderr, start_new_session=True)
    gateway = GatewayProcess(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(gateway.url + "/readyz", timeout=2).status_code == 200:
                return gateway
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                gateway.kill()
            raise AssertionError(f"the gateway did not become ready:\n{gateway.output()}")
        time.sleep(0.1)
