"""Opening the ledger: one engine per URL, SQLite tuned for WAL, migrations applied with Alembic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool

from tallybook.errors import LedgerError

MIGRATIONS = Path(__file__).parent / "migrations"


def connect(url: str) -> Engine:
    """An engine for `url` (sqlite:///file.db or postgresql+psycopg://...). Does not migrate."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LedgerError(f"TALLYBOOK_DATABASE_URL {url!r} is not a database URL.") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, poolclass=NullPool if database in ("", ":memory:") else None)
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # 16 KiB pages: a shallower B-tree for the wide natural-key index, about 6% faster ingest
    # and no slower reads (bench/README.md). Only a new file takes it; an existing ledger keeps its own.
    cursor.execute("PRAGMA page_size=16384")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the ledger to the newest schema (each migration in its own transaction)."""
    try:
        command.upgrade(alembic_config(engine), "head")
    except OperationalError as exc:
        raise LedgerError(f"Cannot open the ledger at {engine.url.render_as_string()}: {exc.orig}") from None


def is_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head


def open_ledger(url: str) -> Engine:
    """Connect and migrate: what every command does before touching the ledger."""
    engine = connect(url)
    migrate(engine)
    return engine
