"""The gateway's background process: the spool into the ledger, and the alert checks, off the workers.

    process = start_background()             # from the `tallybook gateway` supervisor, before the workers
    ...
    stop_background(process, settings)        # after they stopped: one last flush, here

It replays what the spool holds (a crashed or killed gateway's segments), flushes every second, and
runs `alerts.runner.AlertLoop`; at a lower CPU priority (nice 10) than the workers, so on a busy
machine the requests come first and the ledger a moment later. It stops when its stdin closes: the
supervisor closes it, and so does the kernel when the supervisor dies (even by `kill -9`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tallybook.config import Settings, get_settings
from tallybook.gateway.flusher import Flusher
from tallybook.ledger.db import connect

log = logging.getLogger(__name__)


def spool_directory(settings: Settings) -> Path:
    return Path(settings.gateway_spool_dir).expanduser()


def background(interval: float = 1.0) -> None:
    """The background process's body: flush every `interval` seconds and run the alert checks until
    stdin closes (the supervisor closes it to stop us, and it closes by itself when the supervisor dies)."""
    from tallybook.alerts.runner import AlertLoop
    from tallybook.security.vault import Vault

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the supervisor, which then stops us
    stop = threading.Event()
    def wait_for_eof() -> None:
        sys.stdin.buffer.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    settings = get_settings()
    engine = connect(settings.database_url)
    flusher = Flusher(engine, spool_directory(settings))
    alerts = AlertLoop(engine, settings, Vault.from_settings(settings)).start()
    try:
        while not stop.is_set():
            try:
                flusher.flush_once()
            except Exception:  # the lines stay in the spool; the next round tries again
                log.exception("Flushing the gateway spool failed; retrying in %ss", interval)
            stop.wait(interval)
    finally:
        alerts.stop()
        engine.dispose()


def _lower_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(10)


def start_background() -> subprocess.Popen[bytes]:
    """Start the background process (nice 10 from its first instruction, so its start-up and its
    flushes never outrun the workers for the CPU)."""
    return subprocess.Popen([sys.executable, "-c", "from tallybook.gateway.background import background; background()"],
                            stdin=subprocess.PIPE, preexec_fn=_lower_priority)  # noqa: PLW1509 - only os.nice


def stop_background(process: subprocess.Popen[bytes], settings: Settings) -> None:
    """Stop the background process, then flush what the stopped workers left in the spool, here."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    engine = connect(settings.database_url)
    try:
        Flusher(engine, spool_directory(settings)).flush_once()
    finally:
        engine.dispose()
