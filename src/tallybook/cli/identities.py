"""`tallybook identities ...` and `tallybook seats ...`: who is behind each key, and the seats paid for."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
