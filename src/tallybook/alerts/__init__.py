"""Alerts: rules over the ledger (budgets, forecasts, anomalies, syncs, reconciliation) delivered once
per rule and period to Slack, signed webhooks and email. Uses ledger, pricing, analytics and security."""
