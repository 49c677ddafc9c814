"""Users, organisations, roles and API tokens (`tallybook users ...`, `tallybook tokens ...`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
