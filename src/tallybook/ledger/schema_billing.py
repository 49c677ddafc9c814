"""Tables: Stripe billing: customer map, meter map, the durable meter-event queue and its deliveries, invoice status from webhooks (the alerts/billing/audit issue).

They live on the ledger's one `metadata` (see schema.py, which imports this module last)."""

from __future__ import annotations

from tallybook.ledger.schema import RowId, metadata  # noqa: F401  (used as tables are added)
