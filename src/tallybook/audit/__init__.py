"""The audit part: a hash-chained log of every change and sensitive read, its verification, and erasure.

Uses `ledger` (tables) and `security` (redaction). `cli`, `connectors.sync` and `web` call `record`;
`ledger` never imports this part."""

from tallybook.audit.log import Subject, cli_actor, entries, record, subject

__all__ = ["Subject", "cli_actor", "entries", "record", "subject"]
