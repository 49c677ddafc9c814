"""Alert channels and rules: what to watch, and where to say it.

A channel's address is a credential (a Slack webhook URL posts to your workspace; a webhook secret
signs payloads; SMTP passwords), so its configuration is sealed in the vault and only a hint of it is
ever shown. A rule names its channels; deliveries are recorded per rule, channel and period.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tallybook.audit.erase import register_eraser
from tallybook.errors import AlertError
from tallybook.ledger import schema_alerts as ta
from tallybook.security.vault import Vault

CHANNEL_KINDS = ("slack", "webhook", "email")
RULE_KINDS = ("budget", "forecast", "anomaly", "sync_failed", "sync_stale", "key_failing", "reconcile",
              "monthly_report")
SCOPE_PREFIXES = ("org", "key:", "customer:", "provider:", "team:", "cost_centre:")


@dataclass(frozen=True, slots=True)
class Channel:
    id: int
    org_id: int
    name: str
    kind: str
    target_hint: str
    config: dict[str, Any]  # opened from the vault: never print it


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    org_id: int
    name: str
    kind: str
    scope: str
    period: str
    amount: Decimal | None
    currency: str
    thresholds: tuple[int, ...]
    channels: tuple[str, ...]
    enabled: bool
    created_at: datetime


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _context(org_id: int, name: str) -> str:
    return f"org:{org_id}/alert-channel:{name}"


def _hint(kind: str, config: dict[str, Any]) -> str:
    if kind == "email":
        return ", ".join(config["to"])
    url = str(config["url"])
    host = url.split("//", 1)[-1].split("/", 1)[0]
    return f"{host}/...{url[-4:]}"


def add_channel(conn: Connection, vault: Vault, org_id: int, name: str, kind: str, *,
                url: str | None = None, to: list[str] | None = None, secret: str | None = None) -> tuple[Channel, str | None]:
    """Store a channel. Returns it and, for a webhook, the signing secret (shown once; generated when not given)."""
    if kind not in CHANNEL_KINDS:
        raise AlertError(f"A channel kind is one of {', '.join(CHANNEL_KINDS)}, not {kind!r}.")
    config: dict[str, Any]
    shown: str | None = None
    if kind == "email":
        if not to or not all("@" in a for a in to):
            raise AlertError("An email channel needs --to with one or more addresses (a@example.com).")
        config = {"to": list(to)}
    else:
        if not url or not url.startswith(("http://", "https://")):
            raise AlertError(f"A {kind} channel needs --url with an http(s) address.")
        config = {"url": url}
        if kind == "webhook":
            shown = secret or "whsec_" + secrets.token_urlsafe(24)
            config["secret"] = shown
    sealed = vault.seal(json.dumps(config), context=_context(org_id, name))
    try:
        row = conn.execute(insert(ta.alert_channels).values(
            org_id=org_id, name=name, kind=kind, config_sealed=sealed, target_hint=_hint(kind, config),
            created_at=_now()).returning(ta.alert_channels.c.id)).one()
    except IntegrityError:
        raise AlertError(f"There is already a channel named {name!r}; remove it first or pick another name.") from None
    return Channel(int(row.id), org_id, name, kind, _hint(kind, config), config), (shown if not secret else None)


def channels(conn: Connection, vault: Vault | None, org_id: int) -> dict[str, Channel]:
    """The organisation's channels by name; `config` is opened only when a vault is given."""
    c = ta.alert_channels.c
    found = {}
    for r in conn.execute(select(ta.alert_channels).where(c.org_id == org_id).order_by(c.name)):
        config = json.loads(vault.open(r.config_sealed, context=_context(org_id, r.name))) if vault else {}
        found[r.name] = Channel(int(r.id), org_id, r.name, r.kind, r.target_hint, config)
    return found


def remove_channel(conn: Connection, org_id: int, name: str) -> None:
    used = [r.name for r in rules(conn, org_id) if name in r.channels]
    if used:
        raise AlertError(f"Channel {name!r} is used by rule(s) {', '.join(used)}; remove or change them first.")
    c = ta.alert_channels.c
    if not conn.execute(delete(ta.alert_channels).where(c.org_id == org_id, c.name == name)).rowcount:
        raise AlertError(f"No channel named {name!r}; `tallybook alerts channels` lists them.")


def parse_thresholds(text: str) -> tuple[int, ...]:
    try:
        found = tuple(sorted({int(p) for p in text.replace(" ", "").split(",") if p}))
    except ValueError:
        found = ()
    if not found or any(not 0 < p <= 1000 for p in found):
        raise AlertError(f"--thresholds takes percents such as 50,80,100, not {text!r}.")
    return found


def add_rule(conn: Connection, org_id: int, name: str, kind: str, *, channel_names: list[str],
             scope: str = "org", period: str = "month", amount: str | None = None, currency: str = "USD",
             thresholds: str = "100") -> Rule:
    """Validate and store a rule. Budget and forecast rules need an amount; reconcile rules a delta amount."""
    if kind not in RULE_KINDS:
        raise AlertError(f"A rule kind is one of {', '.join(RULE_KINDS)}, not {kind!r}.")
    if period not in ("day", "month"):
        raise AlertError(f"--period is day or month, not {period!r}.")
    if scope != "org" and not scope.startswith(SCOPE_PREFIXES[1:]):
        raise AlertError(f"--scope is org, key:<id>, customer:<name>, provider:<name>, team:<name> or "
                         f"cost_centre:<name>, not {scope!r}.")
    value: Decimal | None = None
    if amount is not None:
        try:
            value = Decimal(amount)
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or value <= 0:
            raise AlertError(f"--amount is a positive number such as 250 or 99.50, not {amount!r}.")
    if kind in ("budget", "forecast", "reconcile", "sync_stale") and value is None:
        needs = {"sync_stale": "the hours after which a sync is stale"}.get(kind, "an amount")
        raise AlertError(f"A {kind} rule needs --amount ({needs}).")
    if not channel_names:
        raise AlertError("A rule needs at least one --channel; add one with `tallybook alerts channels add`.")
    known = channels(conn, None, org_id)
    missing = [n for n in channel_names if n not in known]
    if missing:
        raise AlertError(f"No channel named {', '.join(missing)}; add it with `tallybook alerts channels add`.")
    levels = parse_thresholds(thresholds)
    try:
        row = conn.execute(insert(ta.alert_rules).values(
            org_id=org_id, name=name, kind=kind, scope=scope, period=period,
            amount=str(value) if value is not None else None, currency=currency.upper(),
            thresholds=",".join(map(str, levels)), channels=",".join(channel_names), enabled=True,
            created_at=_now()).returning(ta.alert_rules.c.id)).one()
    except IntegrityError:
        raise AlertError(f"There is already a rule named {name!r}.") from None
    return rule(conn, org_id, int(row.id))


def _rule(r: Any) -> Rule:
    return Rule(int(r.id), int(r.org_id), r.name, r.kind, r.scope, r.period,
                Decimal(r.amount) if r.amount is not None else None, r.currency,
                tuple(int(p) for p in r.thresholds.split(",")), tuple(r.channels.split(",")), bool(r.enabled),
                r.created_at)


def rules(conn: Connection, org_id: int | None = None, *, enabled_only: bool = False) -> list[Rule]:
    c = ta.alert_rules.c
    query = select(ta.alert_rules).order_by(c.org_id, c.id)
    if org_id is not None:
        query = query.where(c.org_id == org_id)
    if enabled_only:
        query = query.where(c.enabled.is_(True))
    return [_rule(r) for r in conn.execute(query)]


def rule(conn: Connection, org_id: int, rule_id_or_name: int | str) -> Rule:
    c = ta.alert_rules.c
    where = c.id == rule_id_or_name if isinstance(rule_id_or_name, int) else c.name == rule_id_or_name
    found = conn.execute(select(ta.alert_rules).where(c.org_id == org_id, where)).first()
    if found is None:
        raise AlertError(f"No alert rule {rule_id_or_name!r}; `tallybook alerts list` shows them.")
    return _rule(found)


def remove_rule(conn: Connection, org_id: int, name: str) -> None:
    c = ta.alert_rules.c
    if not conn.execute(delete(ta.alert_rules).where(c.org_id == org_id, c.name == name)).rowcount:
        raise AlertError(f"No alert rule {name!r}; `tallybook alerts list` shows them.")


def erase_customer(conn: Connection, org_id: int, customer: str, token: str) -> int:
    """`tallybook erase --customer`: rules scoped to the customer, and what their alerts said, name the token."""
    scope, replacement = f"customer:{customer}", f"customer:{token}"
    r, d = ta.alert_rules.c, ta.alert_deliveries.c
    changed = conn.execute(update(ta.alert_rules).where(r.org_id == org_id, r.scope == scope)
                           .values(scope=replacement)).rowcount
    for row in conn.execute(select(d.id, d.subject, d.payload).where(
            d.org_id == org_id, (d.subject.contains(scope)) | (d.payload.contains(scope)))).all():
        conn.execute(update(ta.alert_deliveries).where(d.id == row.id).values(
            subject=row.subject.replace(scope, replacement), payload=row.payload.replace(scope, replacement)))
        changed += 1
    return changed


register_eraser("alerts", erase_customer)
