"""Exports: the ledger's figures as files (CSV, Parquet, FOCUS, PDF) for finance tools and people.

May import ledger, pricing and analytics; never cli or web.
"""
