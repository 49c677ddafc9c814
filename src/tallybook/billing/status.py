"""The meter-event queue by status (`tallybook billing status`, the API and the dashboard)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from tallybook.ledger import schema_billing as tb


def queue_status(conn: Connection, org_id: int) -> list[dict[str, Any]]:
    """One row per status (pending, sent, cancel_pending, cancelled, failed): events and the last error."""
    e = tb.billing_events.c
    return [{"status": r.status, "events": int(r.n), "last_error": r.err} for r in conn.execute(
        select(e.status, func.count().label("n"), func.max(e.last_error).label("err"))
        .where(e.org_id == org_id).group_by(e.status).order_by(e.status))]
