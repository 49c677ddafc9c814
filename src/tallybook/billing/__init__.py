"""Billing: the usage each customer caused, priced with the markup rules, sent to Stripe Billing Meters
as hourly meter events (deterministic identifiers, a durable queue, corrections by cancellation), an
invoice preview and Stripe's webhook. Uses ledger and pricing; never the removed usage-records API."""
