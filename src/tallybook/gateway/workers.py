"""`tallybook gateway --workers N`: one listening socket, N worker processes serving it.

    supervise(sock, workers, factory="tallybook.cli.gateway:build_app")

With one worker the server runs in this process. With more, each worker is a fresh interpreter that
inherits the socket (the kernel hands each new connection to one of them), builds its own app from
`factory` and serves until SIGTERM. The supervisor restarts a worker that dies, stops them all on
SIGINT or SIGTERM (each finishes what is in flight), and gives up when a worker fails at its start
(a bad setting would otherwise restart forever).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from tallybook.errors import ConfigError
from tallybook.gateway.server import GRACE_SECONDS, run

log = logging.getLogger(__name__)
FD_ENV = "TALLYBOOK_GATEWAY_LISTEN_FD"
EARLY_EXIT_SECONDS = 10.0  # a worker that dies this soon after its start failed to start


def load(factory: str) -> Any:
    module, _, name = factory.partition(":")
    return getattr(importlib.import_module(module), name)


def worker(factory: str) -> None:
    """A worker process's body: serve the inherited socket until SIGTERM or SIGINT."""
    sock = socket.socket(fileno=int(os.environ[FD_ENV]))
    sock.setblocking(False)
    run(load(factory)(), sock)


def _spawn(sock: socket.socket, factory: str) -> subprocess.Popen[bytes]:
    code = f"from tallybook.gateway.workers import worker; worker({factory!r})"
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, FD_ENV: str(sock.fileno())},
                            pass_fds=(sock.fileno(),))


def supervise(sock: socket.socket, workers: int, factory: str = "tallybook.cli.gateway:build_app") -> None:
    if workers <= 1:
        run(load(factory)(), sock)
        return
    stopping: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: stopping.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    procs = {index: (_spawn(sock, factory), time.monotonic()) for index in range(workers)}
    try:
        while not stopping:
            for index, (proc, started) in list(procs.items()):
                code = proc.poll()
                if code is None or stopping:
                    continue
                if time.monotonic() - started < EARLY_EXIT_SECONDS:
                    raise ConfigError(f"A gateway worker exited with status {code} as it started; "
                                      "its error is printed above.")
                log.warning("gateway worker %s exited with status %s; starting another", proc.pid, code)
                procs[index] = (_spawn(sock, factory), time.monotonic())
            time.sleep(0.2)
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS + 15
        for proc, _ in procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
