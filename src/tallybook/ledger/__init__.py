"""The store: tables, migrations and the one write door for usage, cost and name records.

Imports no other part of tallybook (only `tallybook.errors`)."""
