"""Running the CLI in-process and reading its JSON, for the end-to-end tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from typer.testing import CliRunner

from tallybook.cli.main import app
from tallybook.config import reset_settings


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout, parse_float=Decimal)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    reset_settings()
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def ok(*args: str, env: dict[str, str] | None = None) -> Result:
    result = run(*args, env=env)
    assert result.exit_code == 0, f"tallybook {' '.join(args)} failed:\n{result.stderr}\n{result.stdout}"
    return result
