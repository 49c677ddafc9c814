"""Cost allocation: every piece of spend to a person, team and cost centre, or to `unallocated`.

    charges(conn, org_id, start, end, currency) -> list[Charge]     the window's spend, one charge a piece
    allocate(charges, by) -> list[Share]                             summed by person | team | cost_centre
    unknown_identities(conn, org_id, start, end) -> list[dict]       keys, e-mails, projects with no mapping

Spend is of two kinds:
  usage  the ledger's daily cost records: API costs (vendor cost reports), coding-tool charges (Cursor
         usage events), CSV imports of kind `cost`. Left out: invoices (stream `invoice`, the vendor's
         statement shown beside our figures by the finance report) and `estimated` cost records (Claude
         Code's estimate of spend the Anthropic cost report or a seat already bills).
  seat   each seat held on any day of a month costs that month its plan's price (a yearly price / 12),
         from `ledger.seats`; origin `estimated` (our plan prices, not the vendor's invoice).

A charge is matched on the day it falls, through the identity map (`ledger.identities`), most
specific first: the e-mail of the person charged, the API key (by id, then by its name), the project
or workspace (by id, then by its name; names from the providers' lists). So a person who changes team on the 15th takes only spend from the 15th along. A charge
no mapping covers goes to `unallocated`, never dropped: teams + unallocated = total, to the cent.
Amounts are converted to `currency` at each day's ECB rate (`pricing.fx`) when they are in another.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select

from tallybook.analytics.trends import next_period
from tallybook.ledger import schema as t
from tallybook.ledger.identities import Identity, IdentityMap, load_identities
from tallybook.ledger.seats import load_assignments, load_plans, plan_at
from tallybook.money import from_nanos
from tallybook.pricing.fx import convert, load_rates

UNALLOCATED = "unallocated"
GROUPS = ("person", "team", "cost_centre")


@dataclass(frozen=True, slots=True)
class Charge:
    day: datetime
    platform: str  # the provider: openai, anthropic, cursor, google, chatgpt, claude, ...
    kind: str  # usage | seat
    amount: Decimal  # in the report currency
    currency: str
    origin: str  # reported | estimated
    identity: Identity | None  # None: unallocated
    matched_by: str | None  # email | api_key | project
    subject: str | None  # the e-mail, key or project the charge names (for top users and unknowns)

    def group(self, by: str) -> str:
        value = getattr(self.identity, by) if self.identity is not None else None
        return value or UNALLOCATED


@dataclass(frozen=True, slots=True)
class Share:
    name: str
    amount: Decimal
    share: Decimal  # of the total, 0..1
    currency: str
    seat: Decimal
    usage: Decimal


class Matcher:
    """Who a charge belongs to on its day, from the identity map and the providers' key names."""

    def __init__(self, identities: IdentityMap, key_names: dict[str, str],
                 project_names: dict[str, str] | None = None, user_emails: dict[str, str] | None = None) -> None:
        self.identities, self.key_names, self.project_names = identities, key_names, project_names or {}
        self.user_emails = user_emails or {}

    def email(self, user: str | None) -> str | None:
        """A record's user as an e-mail address: as given, or the provider's address for a user id."""
        return self.user_emails.get(user, user) if user else None

    def __call__(self, day: datetime, *, email: str | None = None, api_key: str | None = None,
                 project: str | None = None) -> tuple[Identity | None, str | None]:
        for kind, value in (("email", self.email(email)), ("api_key", api_key), ("api_key", self.key_names.get(api_key or "")),
                            ("project", project), ("project", self.project_names.get(project or ""))):
            found = self.identities.lookup(kind, value, day)
            if found is not None:
                return found, kind
        return None, None


def matcher(conn: Connection, org_id: int) -> Matcher:
    o = t.provider_objects.c
    names: dict[str, dict[str, str]] = {"api_key": {}, "project": {}, "user": {}}
    for kind, object_id, name, email in conn.execute(select(o.kind, o.object_id, o.name, o.email).where(
            o.org_id == org_id, o.kind.in_(("api_key", "project", "workspace", "user")))):
        if kind == "user":
            if email:
                names["user"][object_id] = email.lower()
        elif name:
            names["api_key" if kind == "api_key" else "project"][object_id] = name
    return Matcher(load_identities(conn, org_id), names["api_key"], names["project"], names["user"])


class Converter:
    """Amounts in one currency, each day at that day's ECB rate; rates read once for the window."""

    def __init__(self, conn: Connection, currency: str, currencies: Iterable[str], start: datetime,
                 end: datetime) -> None:
        self.currency = currency.upper()
        wanted = {c.upper() for c in currencies} | {self.currency}
        self.rates = load_rates(conn, wanted, since=start.date() - timedelta(days=14), until=end.date()) \
            if wanted != {self.currency} else None

    def __call__(self, amount: Decimal, currency: str, day: datetime) -> Decimal:
        if currency.upper() == self.currency or not amount:
            return amount
        assert self.rates is not None
        return convert(amount, currency, self.currency, on=day, rates=self.rates).amount


def usage_rows(conn: Connection, org_id: int, start: datetime, end: datetime, *,
               invoices: bool = False) -> list[Any]:
    """Daily cost records summed over the dimensions allocation reads (or the invoices, if asked)."""
    c = t.cost_records.c
    keys = (c.bucket_start, c.provider, c.api_key, c.project, c.user, c.currency, c.origin)
    where = [c.org_id == org_id, c.bucket_width == "1d", c.bucket_start >= start, c.bucket_start < end]
    where += [c.stream == "invoice"] if invoices else [c.stream != "invoice", c.origin != "estimated"]
    return list(conn.execute(select(*keys, func.sum(c.amount_nanos).label("nanos")).where(*where).group_by(*keys)))


def charges(conn: Connection, org_id: int, start: datetime, end: datetime, currency: str) -> list[Charge]:
    """Every charge of [start, end) in `currency`: the ledger's spend and the seats held."""
    rows = usage_rows(conn, org_id, start, end)
    plans = load_plans(conn, org_id)
    convert_to = Converter(conn, currency, {r.currency for r in rows} | {p.currency for p in plans}, start, end)
    match = matcher(conn, org_id)
    out = []
    for r in rows:
        who, how = match(r.bucket_start, email=r.user, api_key=r.api_key, project=r.project)
        out.append(Charge(r.bucket_start, r.provider, "usage", convert_to(from_nanos(int(r.nanos)), r.currency,
                                                                           r.bucket_start),
                          convert_to.currency, r.origin, who, how, r.user or r.api_key or r.project))
    out.extend(seat_charges(conn, org_id, start, end, convert_to, match))
    return out


def months(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The calendar months that start in [start, end)."""
    first = date(start.year, start.month, 1)
    if datetime.combine(first, datetime.min.time()) < start:
        first = next_period(first, "month")
    spans = []
    while datetime.combine(first, datetime.min.time()) < end:
        nxt = next_period(first, "month")
        spans.append((datetime.combine(first, datetime.min.time()), datetime.combine(nxt, datetime.min.time())))
        first = nxt
    return spans


def seat_charges(conn: Connection, org_id: int, start: datetime, end: datetime, convert_to: Converter,
                 match: Matcher) -> list[Charge]:
    plans = load_plans(conn, org_id)
    seats = load_assignments(conn, org_id)
    out = []
    for month_start, month_end in months(start, end):
        for seat in seats:
            if not seat.held_during(month_start, month_end):
                continue
            plan = plan_at(plans, seat.platform, seat.plan, month_start)
            if plan is None:
                continue  # no price for the plan: `seats list` shows it as unpriced
            day = max(month_start, seat.assigned_from)
            who, how = match(day, email=seat.email)
            out.append(Charge(day, seat.platform, "seat", convert_to(plan.monthly_price, plan.currency, month_start),
                              convert_to.currency, "estimated", who, how, seat.email))
    return out


def allocate(items: Sequence[Charge], by: str) -> list[Share]:
    """Charges summed by person, team or cost centre, largest first; `unallocated` is always present."""
    if by not in GROUPS:
        raise ValueError(f"allocate by one of {', '.join(GROUPS)}, not {by!r}")
    sums: dict[str, list[Decimal]] = {UNALLOCATED: [Decimal(0), Decimal(0)]}
    for c in items:
        seat_usage = sums.setdefault(c.group(by), [Decimal(0), Decimal(0)])
        seat_usage[0 if c.kind == "seat" else 1] += c.amount
    total = sum((c.amount for c in items), Decimal(0))
    currency = items[0].currency if items else ""
    shares = [Share(name, s + u, (s + u) / total if total else Decimal(0), currency, s, u)
              for name, (s, u) in sums.items()]
    shares.sort(key=lambda x: (x.name == UNALLOCATED, -x.amount, x.name))
    return shares


def unknown_identities(conn: Connection, org_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """API keys, e-mails and projects that have spend or usage in the window and no mapping on the
    last day they were seen: listed with their spend, never dropped (it goes to `unallocated`).
    A provider's user id is shown as its e-mail address when the provider lists one (kind `user` if not)."""
    match = matcher(conn, org_id)
    seen: dict[tuple[str, str], dict[str, Any]] = {}

    def see(kind: str, value: str | None, day: datetime, provider: str, amount: Decimal = Decimal(0),
            currency: str | None = None) -> None:
        if not value:
            return
        entry = seen.setdefault((kind, value), {"kind": kind, "value": value, "providers": set(),
                                                "last_seen": day, "spend": {}})
        entry["last_seen"] = max(entry["last_seen"], day)
        entry["providers"].add(provider)
        if currency:
            entry["spend"][currency] = entry["spend"].get(currency, Decimal(0)) + amount

    def see_user(user: str | None, day: datetime, provider: str, amount: Decimal = Decimal(0),
                 currency: str | None = None) -> None:
        email = match.email(user)
        see("email" if email and "@" in email else "user", email, day, provider, amount, currency)

    for r in usage_rows(conn, org_id, start, end):
        amount = from_nanos(int(r.nanos))
        see_user(r.user, r.bucket_start, r.provider, amount, r.currency)
        see("api_key", r.api_key, r.bucket_start, r.provider, amount, r.currency)
        see("project", r.project, r.bucket_start, r.provider, amount, r.currency)
    u = t.usage_records.c
    keys = (u.provider, u.api_key, u.project, u.user)
    for r in conn.execute(select(*keys, func.max(u.bucket_start).label("last")).where(
            u.org_id == org_id, u.bucket_width == "1d", u.bucket_start >= start, u.bucket_start < end,
            u.source != "gateway").group_by(*keys)):
        see_user(r.user, r.last, r.provider)
        see("api_key", r.api_key, r.last, r.provider)
        see("project", r.project, r.last, r.provider)
    for seat in load_assignments(conn, org_id):
        if seat.held_during(start, end):
            see("email", seat.email, min(end - timedelta(days=1), seat.assigned_to or end), seat.platform)
    unknown = []
    for (kind, value), entry in sorted(seen.items()):
        lookup = {"email": {"email": value}, "user": {"email": value}, "api_key": {"api_key": value},
                  "project": {"project": value}}[kind]
        who, _ = match(entry["last_seen"], **lookup)
        if who is None:
            entry["providers"] = ", ".join(sorted(entry["providers"]))
            entry["name"] = {"api_key": match.key_names, "project": match.project_names}.get(kind, {}).get(value)
            unknown.append(entry)
    return unknown
