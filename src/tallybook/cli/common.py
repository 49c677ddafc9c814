"""What every command shares: options, the ledger, the organisation, output and error handling."""

from __future__ import annotations

import csv
import functools
import io
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from tallybook.config import Settings, get_settings
from tallybook.errors import TallybookError
from tallybook.ledger import store
from tallybook.ledger.db import open_ledger
from tallybook.money import fmt_amount
from tallybook.security.redaction import redact

out = Console(soft_wrap=True)  # data, on stdout
WIDE = 240  # tables printed to a pipe or file are not squeezed into 80 columns
err = Console(stderr=True)  # progress and messages, on stderr


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


OrgOption = typer.Option(None, "--org", help="Organisation slug (default: TALLYBOOK_ORG or 'default').")
FormatOption = typer.Option(Format.table, "--format", "-f", help="table, json or csv.")

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn a TallybookError into one red line on stderr and its exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TallybookError as exc:
            err.print(f"[bold red]Error:[/] {redact(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        finally:
            while _open_contexts:
                _open_contexts.pop().close()

    return wrapper  # type: ignore[return-value]


_open_contexts: list[Context] = []


class Context:
    """Settings, the migrated ledger and the organisation id, opened once per command
    (and closed by `handle_errors` when the command ends)."""

    def __init__(self, org: str | None = None) -> None:
        self.settings: Settings = get_settings()
        self.org_slug = org or self.settings.org
        self._engine: Engine | None = None
        self._org_id: int | None = None
        _open_contexts.append(self)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_ledger(self.settings.database_url)
        return self._engine

    @property
    def org_id(self) -> int:
        if self._org_id is None:
            with self.engine.begin() as conn:
                self._org_id = store.ensure_org(conn, self.org_slug)
        return self._org_id


def safe_url(url: str) -> str:
    """A database URL fit to print: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL, whatever the parser raised: say nothing of it
        return "(unreadable database URL)"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD (UTC).", param_hint=option) from None


def parse_month(value: str) -> tuple[datetime, datetime]:
    try:
        first = datetime.strptime(value, "%Y-%m")
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a month; use YYYY-MM.", param_hint="--month") from None
    nxt = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, nxt


def day_range(since: str | None, until: str | None, *, since_opt: str, until_opt: str) -> tuple[datetime | None, datetime | None]:
    """Inclusive UTC days on the command line -> [start, end) datetimes."""
    start = datetime.combine(parse_day(since, since_opt), datetime.min.time()) if since else None
    end = datetime.combine(parse_day(until, until_opt), datetime.min.time()) + timedelta(days=1) if until else None
    if start and end and end <= start:
        raise typer.BadParameter(f"{until_opt} must not be before {since_opt}.")
    return start, end


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return fmt_amount(value, 9)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def emit(rows: Sequence[dict[str, Any]], fmt: Format, columns: Sequence[str], *, title: str = "") -> None:
    """Print rows as a rich table, JSON (a list of objects) or CSV, to stdout."""
    if fmt is Format.json:
        sys.stdout.write(json.dumps([jsonable(r) for r in rows], indent=2) + "\n")
        return
    if fmt is Format.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k), csv_mode=True) for k in columns})
        sys.stdout.write(buffer.getvalue())
        return
    table = Table(title=title or None, show_lines=False)
    for col in columns:
        table.add_column(col, justify="right" if rows and isinstance(rows[0].get(col), int | Decimal) else "left")
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    if out.is_terminal:
        out.print(table)
    else:
        Console(width=WIDE, soft_wrap=True).print(table)


def _cell(value: Any, csv_mode: bool = False) -> str:
    if value is None:
        return "" if csv_mode else "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value) if csv_mode else f"{value:,}"
    if isinstance(value, Decimal):
        return fmt_amount(value, 9 if csv_mode else 2)
    if isinstance(value, dict):
        return "; ".join(f"{k}={_cell(v, csv_mode)}" for k, v in value.items())
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds") if csv_mode else f"{value:%Y-%m-%d %H:%M}"
    return str(value)
