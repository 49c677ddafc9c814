"""Answers computed from the ledger: rollups, rates, benchmarks, savings, reconciliation, forecasts.

Uses `ledger` and `pricing`; every view (CLI, API, dashboard) calls these functions instead of recomputing."""
