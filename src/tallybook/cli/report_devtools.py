"""`tallybook report devtools`: coding-tool adoption, activity, acceptance and cost (Claude Code, Cursor).

Thin: turns the options into one call of `tallybook.analytics.devtools.devtools` and prints its rows.
Cost is printed beside its currency and origin: Cursor's is `reported` (charged by Cursor), Claude
Code's `estimated` (the vendor's own estimate, not a bill).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import typer

from tallybook.analytics.devtools import PERIODS, TOOLS, devtools
from tallybook.analytics.rollups import ReportError
from tallybook.cli.common import (
    Context,
    Format,
    FormatOption,
    OrgOption,
    day_range,
    emit,
    handle_errors,
    utcnow,
)
from tallybook.cli.report import report_app
from tallybook.errors import ConfigError

DEFAULT_DAYS = 30
ToolOption = typer.Option(None, "--tool", "-t", help=f"Only this tool ({', '.join(TOOLS)}); repeatable.")
BY_HELP = f"One row per {', '.join(PERIODS)} instead of the whole window."
COLUMNS = ["tool", "period", "start", "end", "active_users", "dau", "wau", "mau", "active_api_keys", "sessions",
           "requests", "lines_added", "lines_removed", "lines_accepted", "acceptance_rate", "tool_accepted",
           "tool_rejected", "commits", "pull_requests", "tokens", "cost", "currency", "cost_origin",
           "cost_per_active_user", "cost_per_accepted_line"]
# A terminal table shows the headline figures; JSON and CSV carry every column.
TABLE = ["tool", "period", "active_users", "dau", "wau", "mau", "sessions", "requests", "lines_added",
         "lines_accepted", "acceptance_rate", "commits", "pull_requests", "cost", "currency", "cost_origin",
         "cost_per_active_user", "cost_per_accepted_line"]


@report_app.command("devtools")
@handle_errors
def report_devtools(
    date_from: str = typer.Option(None, "--from", help=f"First UTC day, YYYY-MM-DD (default: {DEFAULT_DAYS} days "
                                  "before --to)."),
    date_to: str = typer.Option(None, "--to", help="Last UTC day, inclusive (default: yesterday)."),
    tool: list[str] = ToolOption,
    by: str = typer.Option(None, "--by", help=BY_HELP),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Coding-tool KPIs per tool and overall: active users (DAU/WAU/MAU), sessions, requests, lines
    added and accepted, acceptance rate, commits and pull requests, cost per active user and per
    accepted line.

    Definitions are in docs/coding-tools.md. Connect the tools first: `tallybook connect cursor`,
    `tallybook connect claude_code`, then `tallybook sync`.

    Example: tallybook report devtools --from 2026-10-01 --to 2026-10-31 --tool cursor --format json
    """
    start, end = day_range(date_from, date_to, since_opt="--from", until_opt="--to")
    today = datetime.combine(utcnow().date(), datetime.min.time())
    end = end or today
    start = start or end - timedelta(days=DEFAULT_DAYS)
    if end <= start:
        raise typer.BadParameter("--from must be before --to (the default --to is yesterday).", param_hint="--from")
    ctx = Context(org)
    try:
        with ctx.engine.connect() as conn:
            rows = [r.as_dict() for r in devtools(conn, ctx.org_id, start, end, tools=tool or TOOLS, period=by)]
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    columns = [c for c in (TABLE if fmt is Format.table else COLUMNS) if c != "period" or by]
    if fmt is Format.table:  # a fraction of a cent a line: more places than the table's two
        for row in rows:
            if row["cost_per_accepted_line"] is not None:
                row["cost_per_accepted_line"] = f"{row['cost_per_accepted_line']:.4f}"
    emit(rows, fmt, columns, title=f"Coding tools, {start:%Y-%m-%d} .. {end - timedelta(days=1):%Y-%m-%d} "
                                   "(Cursor cost reported, Claude Code cost estimated by the vendor)")
