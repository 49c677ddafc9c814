"""Tables: Users, organisation memberships and roles, web sessions, API tokens, login attempts (the web issue).

They live on the ledger's one `metadata` (see schema.py, which imports this module last)."""

from __future__ import annotations

from tallybook.ledger.schema import RowId, metadata  # noqa: F401  (used as tables are added)
