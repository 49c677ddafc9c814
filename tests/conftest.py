"""Shared fixtures: fresh ledgers on SQLite and on a real PostgreSQL, CLI environments, fake providers.

PostgreSQL is found through TALLYBOOK_TEST_POSTGRES_URL (default the local server, which
`make test` starts or installs via scripts/ensure-postgres.sh). When none can be reached
the PostgreSQL half of the suite is skipped and the run ends with a loud banner.
"""

from __future__ import annotations

import os
import uuid
import weakref
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tallybook.config import reset_settings
from tallybook.ledger.db import connect, migrate
from tallybook.ledger.schema import metadata

POSTGRES_URL = os.environ.get("TALLYBOOK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_pg_problem: list[str] = []
_engines_used: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


@sa.event.listens_for(sa.Engine, "engine_connect")
def _remember_engine(connection: sa.Connection) -> None:
    _engines_used.add(connection.engine)


@pytest.fixture(autouse=True)
def _close_pooled_connections() -> Iterator[None]:
    """After each test, close the pooled connections of every engine it used.

    An engine a test (or the code under test) forgot to dispose would otherwise keep its pooled
    connections until the garbage collector finds it, in some later test, where psycopg's
    "connection deleted while still open" ResourceWarning then fails that innocent test.
    """
    yield
    for engine in list(_engines_used):
        engine.dispose()
    _engines_used.clear()


def _admin_url() -> sa.URL:
    url = make_url(POSTGRES_URL)
    return url.set(drivername="postgresql+psycopg")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A throw-away database on the test server, created for this session and dropped after."""
    admin = sa.create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"tallybook_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        _pg_problem.append(f"{POSTGRES_URL}: {str(exc.orig).strip().splitlines()[0]}")
        admin.dispose()
        pytest.skip(f"PostgreSQL unavailable at {POSTGRES_URL}; PostgreSQL tests skipped")
    url = _admin_url().set(database=name).render_as_string(hide_password=False)
    engine = connect(url)
    migrate(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A migrated, empty ledger: a new SQLite file, or the session's PostgreSQL database truncated."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        engine = connect(url)
        migrate(engine)
        engine.dispose()
        return url
    url = request.getfixturevalue("postgres_database")
    engine = connect(url)
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    e = connect(database_url)
    yield e
    e.dispose()


@pytest.fixture
def cli_env(database_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Environment for running the CLI against this test's ledger and its own master key file."""
    env = {
        "TALLYBOOK_DATABASE_URL": database_url,
        "TALLYBOOK_MASTER_KEY_FILE": str(tmp_path / "keys" / "master.key"),
        "TALLYBOOK_SYNC_HOURLY_DAYS": "0",
    }
    for key in ("TALLYBOOK_MASTER_KEY", "OPENAI_ADMIN_KEY", "ANTHROPIC_ADMIN_KEY", "TALLYBOOK_ORG"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    yield env
    reset_settings()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    if _pg_problem:
        bar = "!" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line(f"PostgreSQL TESTS WERE SKIPPED: {_pg_problem[0]}", red=True, bold=True)
        terminalreporter.write_line("Run `bash scripts/ensure-postgres.sh` or set TALLYBOOK_TEST_POSTGRES_URL.",
                                    red=True, bold=True)
        terminalreporter.write_line(bar, red=True, bold=True)
