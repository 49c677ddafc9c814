"""What the API's routes share: who is asking (by role), the ledger, and the report options of the CLI.

The options mean exactly what `tallybook report ...` means by them: `from`/`to` are inclusive UTC
days, `month` is a calendar month instead of them, `group_by` is comma-separated, and the filters
repeat (`?provider=openai&provider=anthropic`). A bad value is a 422 naming the parameter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy import Connection, Engine

from tallybook.analytics.rollups import ReportQuery
from tallybook.ledger.store import utcnow
from tallybook.web.api.errors import invalid
from tallybook.web.auth import Principal, api_principal, require

# Who may call a route: every member (the dashboards' figures), analysts (every read, exports), admins.
Member = Annotated[Principal, Depends(api_principal)]
Analyst = Annotated[Principal, Depends(require("analyst"))]
Admin = Annotated[Principal, Depends(require("admin"))]

EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)
MAX_ID = 2**31 - 1  # ids are 32-bit integers on both databases
ObjectId = Annotated[int, Path(ge=1, le=MAX_ID, description="The object's id.")]
MAX_DAYS = 3700  # about ten years: a report over a longer window is a mistake, not a question
MONTH_PATTERN = r"^(20\d{2}|2100)-(0[1-9]|1[0-2])$"  # a month between EARLIEST and LATEST


def actor(principal: Principal) -> str:
    """Who made a change, for the audit log (a person: the log keeps a token for the email)."""
    return f"web:{principal.email}"


def engine(request: Request) -> Engine:
    return request.app.state.engine


def reading(request: Request) -> Iterator[Connection]:
    """A read connection to the ledger for the length of the request."""
    with engine(request).connect() as conn:
        yield conn


Reading = Annotated[Connection, Depends(reading)]


def today() -> date:
    return utcnow().date()


def midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def first_of_month(text: str) -> tuple[datetime, datetime]:
    first = datetime.strptime(text, "%Y-%m")
    return first, (first.replace(day=28) + timedelta(days=4)).replace(day=1)


@dataclass(frozen=True)
class Days:
    """The window options as given: inclusive days, or a month, or nothing (each route has its default)."""

    date_from: date | None
    date_to: date | None
    month: str | None

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """[start, end) as datetimes, either side None when not given."""
        if self.month:
            if self.date_from or self.date_to:
                raise invalid("Give `month` or `from`/`to`, not both.")
            return first_of_month(self.month)
        start = midnight(self.date_from) if self.date_from else None
        end = midnight(self.date_to) + timedelta(days=1) if self.date_to else None
        return start, end

    def window(self) -> tuple[datetime, datetime]:
        """`tallybook report usage|costs|rates`' window: the given days, else the 30 days up to today."""
        start, end = self.bounds()
        end = end or midnight(today()) + timedelta(days=1)
        return checked(start or end - timedelta(days=30), end)


def checked(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    if end <= start:
        raise invalid("`to` must not be before `from`.")
    if (end - start).days > MAX_DAYS:
        raise invalid(f"The window is {(end - start).days} days long; ask for at most {MAX_DAYS} days at a time.")
    return start, end


def _in_range(value: date | None, name: str) -> date | None:
    if value is not None and not EARLIEST <= value <= LATEST:
        raise invalid(f"`{name}` must be a day between {EARLIEST} and {LATEST}, not {value}.")
    return value


def days(
    date_from: Annotated[date | None, Query(alias="from", description="First UTC day, YYYY-MM-DD.")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Last UTC day, inclusive, YYYY-MM-DD.")] = None,
    month: Annotated[str | None, Query(pattern=MONTH_PATTERN,
                                       description="A calendar month, YYYY-MM (instead of from/to).")] = None,
) -> Days:
    return Days(_in_range(date_from, "from"), _in_range(date_to, "to"), month)


DaysOption = Annotated[Days, Depends(days)]


def groups(text: str) -> list[str]:
    return [g.strip() for g in text.split(",") if g.strip()]


@dataclass(frozen=True)
class Filters:
    provider: list[str] | None
    model: list[str] | None
    project: list[str] | None
    source: list[str] | None = None

    def as_dict(self, *names: str) -> dict[str, list[str]]:
        return {n: v for n in names if (v := getattr(self, n))}


ProviderFilter = Annotated[list[str] | None, Query(description="Only these providers (repeatable).")]
ModelFilter = Annotated[list[str] | None, Query(description="Only these models, as the provider names them.")]
ProjectFilter = Annotated[list[str] | None, Query(description="Only these project/workspace ids.")]


def filters(
    provider: ProviderFilter = None, model: ModelFilter = None, project: ProjectFilter = None,
    source: Annotated[list[str] | None, Query(description="Only these sources: openai_admin, anthropic_admin, "
                                                          "gateway, csv:<name>, ...")] = None,
) -> Filters:
    return Filters(provider, model, project, source)


def series_filters(provider: ProviderFilter = None, model: ModelFilter = None,
                   project: ProjectFilter = None) -> Filters:
    return Filters(provider, model, project)


FilterOptions = Annotated[Filters, Depends(filters)]
SeriesFilters = Annotated[Filters, Depends(series_filters)]


def decimal_option(value: str, name: str, *, at_most: Decimal | None = None) -> Decimal:
    """A number option (a share, a floor) as a Decimal: at least 0, and at most `at_most` when given."""
    wanted = f"a number from 0 to {at_most}" if at_most is not None else "a number of at least 0"
    try:
        found = Decimal(value)
    except InvalidOperation:
        raise invalid(f"`{name}` must be {wanted}, not {value!r}.") from None
    if not found.is_finite() or found < 0 or (at_most is not None and found > at_most):
        raise invalid(f"`{name}` must be {wanted}, not {value!r}.")
    return found


def share(value: str, name: str) -> Decimal:
    return decimal_option(value, name, at_most=Decimal(1))


def report_query(principal: Principal, start: datetime, end: datetime, group_by: str,
                 chosen: dict[str, list[str]]) -> ReportQuery:
    """The same ReportQuery `tallybook report` builds (cli/report.py build_query), for the principal's org."""
    return ReportQuery(org_id=principal.org_id, start=start, end=end, group_by=groups(group_by), filters=chosen)
