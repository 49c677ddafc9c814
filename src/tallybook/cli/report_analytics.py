"""`tallybook report trend|anomalies|forecast`: spend over time, odd days, and where the month will end.

Thin: each command turns its options into a ReportQuery, calls one function of
`tallybook.analytics` (trends, anomalies, forecast) and prints what it returns. Every money
figure is printed beside its currency and its origin: `reported` (vendor cost) or `estimated`.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import typer

from tallybook.analytics.anomalies import AnomalyRule, find_anomalies
from tallybook.analytics.forecast import forecast
from tallybook.analytics.rollups import ReportError, ReportQuery
from tallybook.analytics.trends import TREND_PERIODS, period_start, trend
from tallybook.cli.common import (
    Context,
    Format,
    FormatOption,
    OrgOption,
    day_range,
    emit,
    err,
    handle_errors,
    parse_month,
    utcnow,
)
from tallybook.cli.report import ModelFilter, ProjectFilter, ProviderFilter, report_app
from tallybook.errors import ConfigError

# How far back each period's trend reaches by default, in periods (the current one included).
DEFAULT_PERIODS = {"day": 30, "week": 12, "month": 12, "quarter": 8, "year": 3}
GROUPS_HELP = "Comma-separated dimensions: provider, model, project (or any cost dimension)."


def _today() -> date:
    return utcnow().date()


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def _groups(group_by: str) -> list[str]:
    return [g.strip() for g in group_by.split(",") if g.strip()]


def _filters(provider: list[str] | None, model: list[str] | None,
             project: list[str] | None) -> dict[str, list[str]]:
    return {k: v for k, v in {"provider": provider, "model": model, "project": project}.items() if v}


def _decimal(value: str, option: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter(f"{value!r} is not a number.", param_hint=option) from None


def _names(rows: list[dict[str, Any]], groups: list[str]) -> list[str]:
    return [f"{g}_name" for g in groups if rows and f"{g}_name" in rows[0]]


def _days(date_from: str | None, date_to: str | None,
          month: str | None) -> tuple[datetime | None, datetime | None]:
    if month:
        if date_from or date_to:
            raise typer.BadParameter("Give --month or --from/--to, not both.")
        return parse_month(month)
    return day_range(date_from, date_to, since_opt="--from", until_opt="--to")


@report_app.command("trend")
@handle_errors
def report_trend(
    period: str = typer.Option("month", "--period", "-p", help=f"One of {', '.join(TREND_PERIODS)}."),
    date_from: str = typer.Option(None, "--from", help="First UTC day, YYYY-MM-DD (default: the start of the "
                                  "period 30 days / 12 weeks / 12 months / 8 quarters / 3 years back)."),
    date_to: str = typer.Option(None, "--to", help="Last UTC day, inclusive (default: today)."),
    month: str = typer.Option(None, "--month", help="One calendar month, YYYY-MM (instead of --from/--to)."),
    group_by: str = typer.Option("", "--group-by", "-g", help=GROUPS_HELP + " Default: totals only."),
    provider: list[str] = ProviderFilter, model: list[str] = ModelFilter, project: list[str] = ProjectFilter,
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Reported spend per day, week, month, quarter or year, with the change on the period before.

    Each currency is its own series; `change` is exact, `change_pct` rounded to 0.01 % and empty
    after a period of zero. `complete` is false for a period the window cuts short.

    Example: tallybook report trend --period quarter --group-by provider --format json
    """
    if period not in TREND_PERIODS:
        raise typer.BadParameter(f"{period!r} is not a period; choose from {', '.join(TREND_PERIODS)}.",
                                 param_hint="--period")
    start, end = _days(date_from, date_to, month)
    end = end or _midnight(_today() + timedelta(days=1))
    if start is None:
        first = period_start(end.date() - timedelta(days=1), period)
        for _ in range(DEFAULT_PERIODS[period] - 1):
            first = period_start(first - timedelta(days=1), period)
        start = _midnight(first)
    ctx = Context(org)
    query = ReportQuery(org_id=ctx.org_id, start=start, end=end, group_by=_groups(group_by),
                        filters=_filters(provider, model, project))
    try:
        with ctx.engine.connect() as conn:
            rows = [r.as_dict() for r in trend(conn, query, period)]
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    groups = list(query.group_by)
    emit(rows, fmt, ["period", *groups, *_names(rows, groups), "amount", "currency", "origin", "change",
                     "change_pct", "tokens", "complete"],
         title=f"Spend per {period}, {start:%Y-%m-%d} .. {end - timedelta(days=1):%Y-%m-%d} "
               "(vendor-reported)")


@report_app.command("anomalies")
@handle_errors
def report_anomalies(
    date_from: str = typer.Option(None, "--from",
                                  help="First UTC day to check (default: 30 days before --to)."),
    date_to: str = typer.Option(None, "--to", help="Last UTC day to check, inclusive (default: yesterday, "
                                "the last complete day)."),
    month: str = typer.Option(None, "--month", help="Check one calendar month, YYYY-MM (up to yesterday)."),
    group_by: str = typer.Option("provider,model", "--group-by", "-g", help=GROUPS_HELP),
    provider: list[str] = ProviderFilter, model: list[str] = ModelFilter, project: list[str] = ProjectFilter,
    weeks: int = typer.Option(8, "--weeks", min=3, max=52,
                              help="Weeks of same-weekday history to compare with."),
    k: float = typer.Option(3.5, "--k", min=1.0,
                            help="Robust standard deviations a day must be off to be flagged."),
    min_abs: str = typer.Option("1.00", "--min-abs", help="Smallest flagged difference, in the currency."),
    min_rel: str = typer.Option("0.25", "--min-rel",
                                help="Smallest flagged difference, as a share of the expected spend."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Days whose reported spend is far from what the same weekday in recent weeks predicts.

    Per group and currency: `expected` and its range (`low`..`high`) are estimated from the same
    weekday over the last --weeks weeks, scaled by the recent growth; docs/analytics.md has the
    method. A day above the range is a `spike`, below it a `drop`.

    Example: tallybook report anomalies --from 2026-10-01 --to 2026-10-31 --group-by provider
    """
    start, end = _days(date_from, date_to, month)
    today = _midnight(_today())
    end = min(end, today) if month and end else end or today  # a month stops before today's partial day
    start = start or end - timedelta(days=30)
    if end <= start:
        raise typer.BadParameter("Nothing to check: the window ends before it starts (or is today).")
    rule = AnomalyRule(weeks=weeks, k=k, min_abs=_decimal(min_abs, "--min-abs"),
                       min_rel=_decimal(min_rel, "--min-rel"))
    ctx = Context(org)
    query = ReportQuery(org_id=ctx.org_id, start=start, end=end, group_by=_groups(group_by),
                        filters=_filters(provider, model, project))
    try:
        with ctx.engine.connect() as conn:
            rows = [a.as_dict() for a in find_anomalies(conn, query, rule)]
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    last = end - timedelta(days=1)
    groups = list(query.group_by)
    emit(rows, fmt, ["day", *groups, *_names(rows, groups), "actual", "expected", "low", "high", "currency",
                     "direction", "score", "origin", "expected_origin"],
         title=f"Anomalies {start:%Y-%m-%d} .. {last:%Y-%m-%d} (actual reported, expected estimated)")
    if not rows and fmt is Format.table:
        err.print(f"No anomalies between {start:%Y-%m-%d} and {last:%Y-%m-%d}.")


@report_app.command("forecast")
@handle_errors
def report_forecast(
    month: str = typer.Option(None, "--month", help="The month to forecast, YYYY-MM (default: the month of "
                              "the day after --to)."),
    date_from: str = typer.Option(None, "--from", help="First UTC day of history to learn from "
                                  "(default: 56 days up to --to)."),
    date_to: str = typer.Option(None, "--to", help="Last observed UTC day, inclusive (default: yesterday, "
                                "the last complete day; later days are projected)."),
    group_by: str = typer.Option("", "--group-by", "-g", help=GROUPS_HELP + " Default: totals only."),
    provider: list[str] = ProviderFilter, model: list[str] = ModelFilter, project: list[str] = ProjectFilter,
    level: float = typer.Option(0.8, "--level", min=0.5, max=0.99,
                                help="Prediction interval, e.g. 0.8 = 80 %."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Month-end spend: reported spend to date plus a projection of the days left, with an interval.

    The projection is a least-squares trend with weekday factors over the history (method in
    docs/analytics.md); `low`..`high` is the --level prediction interval (default 80 %).

    Example: tallybook report forecast --month 2026-10 --group-by provider --format json
    """
    start, end = day_range(date_from, date_to, since_opt="--from", until_opt="--to")
    end = end or _midnight(_today())
    start = start or end - timedelta(days=56)
    if month:
        target = parse_month(month)[0].date()
    else:
        target = period_start(end.date(), "month")
    ctx = Context(org)
    query = ReportQuery(org_id=ctx.org_id, start=start, end=end, group_by=_groups(group_by),
                        filters=_filters(provider, model, project))
    try:
        with ctx.engine.connect() as conn:
            rows = [f.as_dict() for f in forecast(conn, query, target, level=level)]
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    groups = list(query.group_by)
    emit(rows, fmt, ["month", *groups, *_names(rows, groups), "spent_to_date", "forecast", "low", "high",
                     "currency", "interval", "method", "days_observed", "days_remaining", "through"],
         title=f"Forecast {target:%Y-%m} through {end - timedelta(days=1):%Y-%m-%d} "
               f"(spent: reported; forecast and {level:.0%} interval: estimated)")
    if not rows and fmt is Format.table:
        err.print(f"No reported spend from {start:%Y-%m-%d} on to forecast {target:%Y-%m} from.")
