"""`tallybook export ...`: usage and cost as CSV or Parquet, and the FOCUS 1.2 export."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
