"""What the ledger holds for one coding-tool source, summed in SQL: the tests compare it with the fakes."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from tallybook.connectors.sync import sync_connection
from tallybook.ledger import schema as t
from tallybook.ledger import store
from tallybook.money import from_nanos


def ledger_totals(engine: sa.Engine, source: str) -> dict[str, Any]:
    """Quantities per unit, token sums, events (requests) and cost per origin, from the records and the rollup."""
    u, c, d = t.usage_records.c, t.cost_records.c, t.usage_daily.c
    out: dict[str, Any] = defaultdict(int)
    with engine.connect() as conn:
        for unit, quantity in conn.execute(sa.select(u.unit, sa.func.sum(u.quantity)).where(
                u.source == source, u.unit.is_not(None)).group_by(u.unit)):
            out[unit] = int(quantity)
        tokens = conn.execute(sa.select(
            sa.func.sum(u.input_tokens), sa.func.sum(u.output_tokens), sa.func.sum(u.cache_read_tokens),
            sa.func.sum(u.cache_write_5m_tokens), sa.func.sum(u.requests)).where(u.source == source)).one()
        out.update(zip(("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "request_measure"),
                       (int(v or 0) for v in tokens)))
        for origin, nanos in conn.execute(sa.select(c.origin, sa.func.sum(c.amount_nanos)).where(
                c.source == source).group_by(c.origin)):
            out[f"cost_{origin}"] = from_nanos(int(nanos))
        out["rows"] = conn.execute(sa.select(sa.func.count()).select_from(t.usage_records)
                                   .where(u.source == source)).scalar_one()
        rolled = conn.execute(sa.select(sa.func.sum(d.quantity), sa.func.sum(d.input_tokens))
                              .where(d.source == source)).one()
        out["rollup_quantity"], out["rollup_input_tokens"] = (int(v or 0) for v in rolled)
    return dict(out)


def per_user(engine: sa.Engine, source: str, unit: str) -> dict[str, int]:
    u = t.usage_records.c
    with engine.connect() as conn:
        return {user: int(q) for user, q in conn.execute(sa.select(u.user, sa.func.sum(u.quantity)).where(
            u.source == source, u.unit == unit).group_by(u.user))}


def cost_by_user(engine: sa.Engine, source: str) -> dict[str | None, Decimal]:
    c = t.cost_records.c
    with engine.connect() as conn:
        return {user: from_nanos(int(n)) for user, n in conn.execute(
            sa.select(c.user, sa.func.sum(c.amount_nanos)).where(c.source == source).group_by(c.user))}


def run(engine: sa.Engine, connector: Any, start, end, now) -> Any:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
    return sync_connection(engine, connector, org_id=org, connection_id=1, connection_name=connector.provider,
                           start=start, end=end, hourly_from=None, now=now)
