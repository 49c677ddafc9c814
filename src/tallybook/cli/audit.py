"""`tallybook audit ...` and `tallybook erase`: the hash-chained audit log and erasure on request."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
