"""Pull sources: each provider module turns an admin API into ledger records.

May import `tallybook.ledger.records`, `tallybook.errors` and `tallybook.config`; knows nothing of analytics."""
