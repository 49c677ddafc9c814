"""Which rules fire now: each check reads the ledger through the analytics functions and returns
`Firing`s, each with the key that makes it one alert (a budget level in a period, a failed run, an
anomalous day). Delivery deduplicates on that key, so checking twice, or in several processes, never
says the same thing twice.

Spend, as budgets see it:
- `key:<id>` and `customer:<name>`: the gateway's metered list cost (usage_events), the figure its own
  budgets settle on; flushed about every second, so a crossing is seen at the next check.
- `team:<name>` and `cost_centre:<name>`: the organisation's spend allocated through the identity map
  (API usage, seats, coding tools: `tallybook report finance`'s allocation).
- `org` and `provider:<name>`: vendor-reported cost where the provider reports cost for the period,
  plus metered gateway cost for providers that report none (never both for one provider).
A level of 100 % means "spent": the gateway stops admitting once the next request's upper bound no
longer fits, so spend stops short of the limit. 100 % fires at 99 % of it, or as soon as the gateway
has refused a request of the scope that only the budget can have refused (a 429 for a key with no
RPM/TPM limit: the gateway records refusals as `rejected` events).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, func, select

from tallybook.alerts.message import Message
from tallybook.alerts.reports import last_month, report_message
from tallybook.alerts.rules import Rule
from tallybook.analytics.allocation import allocate, charges
from tallybook.analytics.anomalies import find_anomalies
from tallybook.analytics.forecast import forecast
from tallybook.analytics.pricers import NegotiatedPricer
from tallybook.analytics.reconcile import reconcile
from tallybook.analytics.rollups import ReportQuery, cost_report
from tallybook.ledger import schema as t
from tallybook.money import fmt_amount
from tallybook.pricing.rules import load_rules

NANOS = Decimal(1_000_000_000)
FULL = Decimal("0.99")  # the 100 % level fires here (see the module docstring)


@dataclass(frozen=True, slots=True)
class Firing:
    rule: Rule
    dedup_key: str
    message: Message


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return start, start + timedelta(days=1)
    start = start.replace(day=1)
    return start, start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def _money(amount: Decimal, currency: str, origin: str) -> str:
    return f"{fmt_amount(amount, 2)} {currency} ({origin})"


def _metered(conn: Connection, rule: Rule, start: datetime, end: datetime,
             providers_excluded: Iterable[str] = ()) -> Decimal:
    c = t.usage_events.c
    where = [c.org_id == rule.org_id, c.ts >= start, c.ts < end, c.currency == rule.currency]
    kind, _, value = rule.scope.partition(":")
    if kind == "key":
        where.append(c.virtual_key == value)
    elif kind == "customer":
        where.append(c.customer == value)
    elif kind == "provider":
        where.append(c.provider == value)
    excluded = list(providers_excluded)
    if excluded:
        where.append(c.provider.not_in(excluded))
    nanos = conn.execute(select(func.coalesce(func.sum(c.list_cost_nanos), 0)).where(*where)).scalar()
    return Decimal(int(nanos or 0)) / NANOS


def spend(conn: Connection, rule: Rule, start: datetime, end: datetime) -> tuple[Decimal, str]:
    """The scope's spend in [start, end) in the rule's currency, and its origin."""
    if rule.scope.startswith(("key:", "customer:")):
        return _metered(conn, rule, start, end), "metered"
    if rule.scope.startswith(("team:", "cost_centre:")):
        by, _, name = rule.scope.partition(":")
        items = charges(conn, rule.org_id, start, end, rule.currency)
        share = next((s for s in allocate(items, by) if s.name == name), None)
        return (share.amount if share else Decimal(0)), "reported + estimated (allocated)"
    filters = {"provider": [rule.scope.split(":", 1)[1]]} if rule.scope.startswith("provider:") else {}
    rows = cost_report(conn, ReportQuery(rule.org_id, start, end, ("provider",), filters))
    reported = {r["provider"] for r in rows}
    total = sum((r["amount"] for r in rows if r["currency"].upper() == rule.currency), Decimal(0))
    gateway = _metered(conn, rule, start, end, providers_excluded=reported)
    origin = "reported" if not gateway else ("metered" if not reported else "reported + metered")
    return total + gateway, origin


def refused_for_budget(conn: Connection, rule: Rule, start: datetime, end: datetime) -> bool:
    """Whether the gateway refused a request of a key or customer scope in [start, end) that only its
    budget can have refused: a 429 `rejected` event made with a key that has no RPM/TPM limit."""
    if not rule.scope.startswith(("key:", "customer:")):
        return False
    e, k = t.usage_events.c, t.virtual_keys.c
    kind, _, value = rule.scope.partition(":")
    query = (select(e.event_id).join(t.virtual_keys, k.id == e.virtual_key)
             .where(e.org_id == rule.org_id, e.ts >= start, e.ts < end, e.outcome == "rejected", e.status == 429,
                    (e.virtual_key if kind == "key" else e.customer) == value, k.rpm.is_(None), k.tpm.is_(None))
             .limit(1))
    return conn.execute(query).first() is not None


def check_budget(conn: Connection, rule: Rule, now: datetime, link: str | None) -> list[Firing]:
    assert rule.amount is not None
    start, end = period_bounds(rule.period, now)
    spent, origin = spend(conn, rule, start, end)
    share = spent / rule.amount
    crossed = [p for p in rule.thresholds if share >= (FULL if p == 100 else Decimal(p) / 100)]
    if 100 in rule.thresholds and 100 not in crossed and refused_for_budget(conn, rule, start, end):
        crossed.append(100)
    if not crossed:
        return []
    level = max(crossed)  # one alert for the highest level reached; lower ones it passed are implied
    what = "Budget spent" if level >= 100 else f"Budget {level} % reached"
    message = Message(rule.name, "budget", f"{what}: {rule.scope} ({rule.name})", (
        (f"{rule.scope} has spent {_money(spent, rule.currency, origin)} of its "
        f"{fmt_amount(rule.amount, 2)} {rule.currency} budget per {rule.period} ({share * 100:.0f} %)."),
        f"The period resets at {end:%Y-%m-%d %H:%M} UTC."), {
        "Spent": _money(spent, rule.currency, origin), "Budget": f"{fmt_amount(rule.amount, 2)} {rule.currency}",
        "Used": f"{share * 100:.1f} %", "Period": f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"}, link)
    return [Firing(rule, f"budget:{start:%Y-%m-%d}:{level}", message)]


def check_forecast(conn: Connection, rule: Rule, now: datetime, link: str | None) -> list[Firing]:
    assert rule.amount is not None
    month = now.date().replace(day=1)
    today = datetime.combine(now.date(), datetime.min.time())
    query = ReportQuery(rule.org_id, today - timedelta(days=56), today)
    if rule.scope.startswith("provider:"):
        query = dataclasses.replace(query, filters={"provider": [rule.scope.split(":", 1)[1]]})
    projected = sum((f.forecast for f in forecast(conn, query, month) if f.currency.upper() == rule.currency),
                    Decimal(0))
    if projected <= rule.amount:
        return []
    message = Message(rule.name, "forecast", f"Forecast over budget: {rule.scope} ({rule.name})", (
        (f"Month-end spend is forecast at {_money(projected, rule.currency, 'estimated')}, over the "
        f"{fmt_amount(rule.amount, 2)} {rule.currency} budget."),), {
        "Forecast": _money(projected, rule.currency, "estimated"),
        "Budget": f"{fmt_amount(rule.amount, 2)} {rule.currency}", "Month": f"{month:%Y-%m}"}, link)
    return [Firing(rule, f"forecast:{month:%Y-%m}", message)]


def check_anomaly(conn: Connection, rule: Rule, now: datetime, link: str | None) -> list[Firing]:
    today = datetime.combine(now.date(), datetime.min.time())
    since = max(today - timedelta(days=3), datetime.combine(rule.created_at.date(), datetime.min.time())
                - timedelta(days=1))
    query = ReportQuery(rule.org_id, since, today, ("provider",))
    firings = []
    for a in find_anomalies(conn, query):
        provider = a.group.get("provider") or "all"
        message = Message(rule.name, "anomaly", f"Spend {a.direction} on {a.day:%Y-%m-%d}: {provider}", (
            (f"{provider} spent {_money(a.actual, a.currency, 'reported')} on {a.day:%Y-%m-%d}; expected "
            f"{fmt_amount(a.expected, 2)} {a.currency} (between {fmt_amount(a.low, 2)} and {fmt_amount(a.high, 2)})."),),
            {"Actual": _money(a.actual, a.currency, "reported"),
             "Expected": _money(a.expected, a.currency, "estimated")}, link)
        firings.append(Firing(rule, f"anomaly:{a.day:%Y-%m-%d}:{provider}:{a.currency}", message))
    return firings


def check_syncs(conn: Connection, rule: Rule, now: datetime, link: str | None) -> list[Firing]:
    """sync_failed: each failed run since the rule was made; key_failing: each connection whose key the
    provider refuses (401/403), once a day; sync_stale: each connection not synced for `amount` hours."""
    c, r = t.connections.c, t.sync_runs.c
    names = {row.id: (row.name, row.provider) for row in conn.execute(
        select(c.id, c.name, c.provider).where(c.org_id == rule.org_id))}
    firings = []
    if rule.kind == "sync_failed":
        for run in conn.execute(select(t.sync_runs).where(
                r.org_id == rule.org_id, r.status == "failed", r.started_at >= rule.created_at).order_by(r.id)):
            name, provider = names.get(run.connection_id, (f"#{run.connection_id}", run.provider))
            message = Message(rule.name, "sync_failed", f"Sync failed: {name} ({provider})", (
                (f"The sync of {name} for {run.window_start:%Y-%m-%d} to {run.window_end:%Y-%m-%d} failed: "
                f"{(run.error or 'no error recorded')[:300]}"),), {"Run": str(run.id), "Connection": name}, link)
            firings.append(Firing(rule, f"sync_failed:run:{run.id}", message))
    elif rule.kind == "key_failing":
        for row in conn.execute(select(t.connections).where(c.org_id == rule.org_id, c.status == "failing")):
            error = row.last_error or ""
            if not any(code in error for code in ("401", "403", "admin key", "permission")):
                continue
            message = Message(rule.name, "key_failing", f"Provider key refused: {row.name} ({row.provider})", (
                f"{row.provider} refuses the admin key of {row.name}: {error[:300]}",
                f"Rotate it with `tallybook connect {row.provider} --name {row.name}`."),
                {"Connection": row.name}, link)
            firings.append(Firing(rule, f"key_failing:{row.id}:{now:%Y-%m-%d}", message))
    else:  # sync_stale
        assert rule.amount is not None
        cutoff = now - timedelta(hours=float(rule.amount))
        for row in conn.execute(select(t.connections).where(c.org_id == rule.org_id)):
            last = row.last_sync_at or row.created_at
            if last < cutoff:
                message = Message(rule.name, "sync_stale", f"No sync for {rule.amount} h: {row.name}", (
                    f"{row.name} ({row.provider}) last synced {last:%Y-%m-%d %H:%M} UTC.",),
                    {"Last sync": f"{last:%Y-%m-%d %H:%M} UTC"}, link)
                firings.append(Firing(rule, f"sync_stale:{row.id}:{now:%Y-%m-%d}", message))
    return firings


def check_reconcile(conn: Connection, rule: Rule, now: datetime, link: str | None) -> list[Firing]:
    """Each day and model of the last week whose estimated and reported cost differ by more than
    `amount` percent (the organisation's negotiated rates applied, as `report reconcile` does)."""
    assert rule.amount is not None
    today = datetime.combine(now.date(), datetime.min.time())
    query = ReportQuery(rule.org_id, today - timedelta(days=7), today)
    if rule.scope.startswith("provider:"):
        query = dataclasses.replace(query, filters={"provider": [rule.scope.split(":", 1)[1]]})
    firings = []
    for row in reconcile(conn, query, NegotiatedPricer(load_rules(conn, rule.org_id))):
        found = row.as_dict(rule.amount / 100)
        if not found["flagged"] or not row.reported_cost:
            continue
        message = Message(rule.name, "reconcile", f"Reconciliation gap on {row.day}: {row.provider} {row.model or ''}", (
            (f"Estimated {fmt_amount(row.estimated_cost or Decimal(0), 2)} vs reported "
            f"{fmt_amount(row.reported_cost, 2)} {row.currency} ({found['reason']})."),),
            {"Reported": _money(row.reported_cost, row.currency, "reported"),
             "Estimated": _money(row.estimated_cost or Decimal(0), row.currency, "estimated"),
             "Delta": f"{found['cost_delta_pct']} %"}, link)
        firings.append(Firing(rule, f"reconcile:{row.day}:{row.provider}:{row.model}", message))
    return firings


def check_monthly_report(conn: Connection, rule: Rule, now: datetime, link: str | None) -> list[Firing]:
    """The last complete month's finance report, once per month (the first check of a new month)."""
    month = last_month(now)
    return [Firing(rule, f"monthly_report:{month}", report_message(conn, rule.org_id, rule.name, month, link))]


CHECKS: dict[str, Callable[[Connection, Rule, datetime, str | None], list[Firing]]] = {
    "budget": check_budget, "forecast": check_forecast, "anomaly": check_anomaly,
    "sync_failed": check_syncs, "key_failing": check_syncs, "sync_stale": check_syncs,
    "reconcile": check_reconcile,
    "monthly_report": check_monthly_report,
}


def evaluate(conn: Connection, rules: Iterable[Rule], now: datetime, link: str | None = None) -> list[Firing]:
    firings = []
    for rule in rules:
        check = CHECKS.get(rule.kind)
        if check is not None and rule.enabled:
            firings += check(conn, rule, now, link)
    return firings

