"""`tallybook gateway`: run the metering gateway on its own HTTP/1.1 server (gateway/server.py, uvloop +
httptools), one worker process or several sharing one socket (gateway/workers.py).

Each worker process builds its own app (`build_app`, the workers' factory): the ledger engine, the
virtual key cache, rate limits and budgets, its spool, and one Upstream per stored provider
credential, opened with the vault. The workers only serve: ledger writes and alert checks run in one
background process (`background`), so their database work never holds a worker's GIL (a flush
thread inside a worker cost ~28 % of it at full load and stalled the event loop for milliseconds).

    tallybook gateway (supervisor; after a graceful stop it flushes what the workers left)
      +- background process: replays what the spool holds, then flushes it every second; alerts
      +- worker 1..N: the server + the Gateway app; spools rotate every second so the flusher may take them
"""

from __future__ import annotations

import gc
from decimal import Decimal, InvalidOperation

import typer
from sqlalchemy import Engine

from tallybook.cli.common import err, handle_errors, safe_url
from tallybook.config import Settings, get_settings
from tallybook.errors import ConfigError
from tallybook.gateway.app import Gateway, create_app
from tallybook.gateway.background import spool_directory, start_background, stop_background
from tallybook.gateway.credentials import open_credentials
from tallybook.gateway.keys import KeyCache
from tallybook.gateway.limits import Limits
from tallybook.gateway.metering import load_tokenizer
from tallybook.gateway.metrics import shared_across_workers
from tallybook.gateway.providers import UPSTREAMS, Upstream
from tallybook.gateway.server import listen
from tallybook.gateway.spool import Spool
from tallybook.gateway.tracing import Tracing
from tallybook.gateway.workers import supervise
from tallybook.ledger.db import connect, open_ledger
from tallybook.pricing.catalog import default_catalog
from tallybook.security.vault import Vault

ROTATE_SECONDS = 1.0  # a worker's spool segment is closed (and may be flushed) at most this long after opening


def load_upstreams(settings: Settings, engine: Engine) -> list[Upstream]:
    """One Upstream per stored credential (`tallybook providers add`), its key opened with the vault."""
    vault = Vault.from_settings(settings)
    with engine.connect() as conn:
        opened = open_credentials(conn, vault)
    upstreams = []
    for credential, secret in opened:
        kind = UPSTREAMS.get(credential.provider)
        if kind is None:
            continue
        upstreams.append(kind(credential.base_url, secret, org_id=credential.org_id,
                              timeout=settings.gateway_upstream_timeout))
    return upstreams


def build_app() -> Gateway:
    """The gateway app of one worker process, from the settings (the workers' factory)."""
    settings = get_settings()
    engine = connect(settings.database_url)
    spool = Spool(spool_directory(settings), rotate_seconds=ROTATE_SECONDS)
    limits = Limits.from_settings(engine, settings)

    async def start() -> None:
        # Before the worker serves (readyz waits): never on a request's path.
        load_tokenizer()
        default_catalog()  # the list-price catalog (~0.7 s to load)
        # Everything loaded so far (catalog, tokenizer ranks, modules: ~115k objects) lives as long as
        # the worker: take it out of the cyclic GC, whose full passes over it stalled the event loop for
        # ~150-300 ms every few thousand requests (the p95/p99 at 500 req/s).
        gc.collect()
        gc.freeze()

    async def stop() -> None:
        await spool.close()
        await limits.close()
        engine.dispose()

    tracing = Tracing.start() if settings.gateway_tracing else None
    return create_app(keys=KeyCache(engine), limits=limits, spool=spool, upstreams=load_upstreams(settings, engine),
                      settings=settings, tracing=tracing, on_startup=[start], on_shutdown=[stop])


@handle_errors
def gateway(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 for every one)."),
    port: int = typer.Option(4000, "--port", help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (each with its own spool file)."),
) -> None:
    """Run the metering gateway: point the OpenAI or Anthropic SDK's base_url at it with a virtual key.

    Needs a provider key (`tallybook providers add openai`) and a virtual key (`tallybook keys create`).
    Usage goes to a spool (TALLYBOOK_GATEWAY_SPOOL_DIR) and from there into the ledger every second.

    Example: tallybook gateway --host 0.0.0.0 --port 4000 --workers 4
    """
    settings = get_settings()
    if settings.gateway_gpu_hour_cost is not None:
        try:
            Decimal(settings.gateway_gpu_hour_cost)
        except InvalidOperation:
            raise ConfigError("TALLYBOOK_GATEWAY_GPU_HOUR_COST must be a decimal number of USD, e.g. 2.50.") from None
    engine = open_ledger(settings.database_url)  # migrate once, before the workers start
    try:
        upstreams = load_upstreams(settings, engine)
    finally:
        engine.dispose()
    if not upstreams:
        raise ConfigError("No upstream provider is configured: run `tallybook providers add openai` "
                          "(or anthropic, cohere, ollama) first.")
    names = ", ".join(sorted({u.name for u in upstreams}))
    try:
        sock = listen(host, port)
    except OSError as exc:
        raise ConfigError(f"The gateway cannot listen on {host}:{port}: {exc.strerror or exc}. "
                          "Choose another --port or stop what holds it.") from None
    err.print(f"Gateway on http://{host}:{port} ({workers} worker{'s' * (workers > 1)}) for {names}; "
              f"ledger {safe_url(settings.database_url)}; spool {spool_directory(settings)}")
    flusher = start_background()
    try:
        with shared_across_workers(workers):  # /metrics of any worker sums them all
            supervise(sock, workers)
    finally:
        sock.close()
        stop_background(flusher, settings)
