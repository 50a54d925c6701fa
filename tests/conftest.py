"""Shared fixtures: the mini inventory copied into a scratch project, and a CLI runner."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A scratch govcloud project holding a copy of tests/data/mini/inventories."""
    shutil.copytree(DATA / "mini" / "inventories", tmp_path / "inventories")
    (tmp_path / "govcloud.yaml").write_text("version: 1\n")
    return tmp_path


@pytest.fixture
def run_cli() -> Callable[..., CliResult]:
    """Run `govcloud ARGS...` in-process and capture exit code, stdout and stderr separately."""
    from govcloud.cli.main import cli

    def run(*args: str) -> CliResult:
        runner = CliRunner()
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run
