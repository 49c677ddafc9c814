"""Tallybook: the ledger of an organisation's AI spend."""

__version__ = "0.1.0"
