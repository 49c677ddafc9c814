"""`tallybook import csv ...`: vendor exports and bills with no API, through a mapping."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
