"""The README stays in step with the code: every setting and every top-level command is in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from tallybook.cli.main import app
from tallybook.config import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_every_setting_is_documented(readme: str) -> None:
    missing = [row.env for row in settings_table() if f"`{row.env}`" not in readme]
    assert not missing, f"README.md's configuration table lacks {', '.join(missing)}"


def test_every_command_is_documented(readme: str) -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert commands, "the typer app registers no commands"
    # A word boundary, so `tallybook connections` does not count as a mention of `tallybook connect`.
    missing = [name for name in commands if not re.search(rf"tallybook {re.escape(name)}(?![\w-])", readme)]
    assert not missing, f"README.md never mentions {', '.join('tallybook ' + n for n in missing)}"
