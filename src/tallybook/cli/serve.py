"""`tallybook serve`: the web app (dashboard + REST API) and the sync scheduler."""

from __future__ import annotations

import errno
import logging
import socket

import typer

from tallybook.cli.common import err, handle_errors, safe_url
from tallybook.config import Settings, get_settings
from tallybook.errors import ConfigError

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "tallybook-demo"  # printed by `tallybook demo`; a demo ledger only


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
    app.command("serve")(serve)


@handle_errors
def serve(
    host: str = typer.Option(None, "--host", help="Address to listen on (default TALLYBOOK_WEB_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, "--port", min=1, max=65535, help="Port (default TALLYBOOK_WEB_PORT, 8000)."),
    no_scheduler: bool = typer.Option(False, "--no-scheduler",
                                      help="Do not run the daily sync here (another process does)."),
) -> None:
    """Serve the dashboard and the REST API (/api/v1, OpenAPI at /api/v1/openapi.json), and sync every
    connection daily at TALLYBOOK_SYNC_SCHEDULE.

    On a new ledger, open /setup to create the first admin. Behind a reverse proxy, see docs/deployment.md.

    Example: tallybook serve --host 0.0.0.0 --port 8000
    """
    settings = get_settings()
    serve_dashboard(settings, host or settings.web_host, port or settings.web_port, scheduler=not no_scheduler)


def dashboard_url(settings: Settings, host: str, port: int) -> str:
    if settings.web_base_url:
        return settings.web_base_url.rstrip("/") + "/"
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}/"


def serve_dashboard(settings: Settings, host: str, port: int, *, scheduler: bool = True,
                    banner: str | None = None) -> None:
    """Run the web app (and the scheduler) until Ctrl-C; `banner` is printed once it listens."""
    import uvicorn

    from tallybook.alerts.runner import AlertLoop
    from tallybook.security.vault import Vault
    from tallybook.web.app import create_app
    from tallybook.web.auth.users import setup_needed
    from tallybook.web.scheduler import Scheduler

    check_port_free(host, port)
    app = create_app(settings)
    engine = app.state.engine
    with engine.connect() as conn:
        first_run = setup_needed(conn)
    url = dashboard_url(settings, host, port)
    err.print(f"tallybook dashboard on [bold]{url}[/] (ledger {safe_url(settings.database_url)}); "
              f"REST API at {url}api/v1/docs. Ctrl-C to stop.")
    if first_run:
        err.print(f"First run: open [bold]{url}setup[/] to create the first admin "
                  "(or `tallybook users create --email ... --org ... --role admin`).")
    if banner:
        err.print(banner, soft_wrap=True, highlight=False)
    jobs = Scheduler(engine, settings) if scheduler else None
    alerts = AlertLoop(engine, settings, Vault.from_settings(settings)) if scheduler else None
    if jobs is not None and alerts is not None:
        jobs.start()
        alerts.start()
        err.print(f"Sync schedule: {settings.sync_schedule} (UTC), per organisation unless it sets its own.")
    logging.getLogger("tallybook").setLevel(logging.INFO)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", proxy_headers=True,
                            server_header=False)
    try:
        uvicorn.Server(config).run()  # returns after a graceful shutdown, then re-raises Ctrl-C / SIGTERM
    except KeyboardInterrupt:
        pass
    finally:
        if jobs is not None and alerts is not None:
            jobs.stop()
            alerts.stop()
        engine.dispose()


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"Port {port} on {host} is already in use; choose another with --port.") from None
            raise ConfigError(f"Cannot listen on {host}:{port} ({exc.strerror}); check --host.") from None


def ensure_demo_user(settings: Settings, org_slug: str) -> tuple[str, str]:
    """The demo organisation's admin login (created, or its password reset to the demo one).

    The demo has just synced: today's scheduled sync of its organisation is marked done."""
    from tallybook.ledger.db import open_ledger
    from tallybook.ledger.store import utcnow
    from tallybook.web.auth.users import (
        add_member,
        create_user,
        find_user_id,
        org_id_for,
        role_of,
        set_password,
    )
    from tallybook.web.scheduler import claim

    engine = open_ledger(settings.database_url)
    try:
        with engine.begin() as conn:
            org_id = org_id_for(conn, org_slug, create=True)
            user_id = find_user_id(conn, DEMO_EMAIL)
            if user_id is None:
                user_id = create_user(conn, DEMO_EMAIL, DEMO_PASSWORD)
            else:
                set_password(conn, user_id, DEMO_PASSWORD)
            if role_of(conn, org_id, user_id) is None:
                add_member(conn, org_id, user_id, "admin", actor="system:demo")
        claim(engine, org_id, utcnow().date())
    finally:
        engine.dispose()
    return DEMO_EMAIL, DEMO_PASSWORD
