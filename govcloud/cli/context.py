"""What every command gets: the project root, the output format, verbosity, and rendering helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from govcloud.errors import Diagnostic

MARKER = "govcloud.yaml"


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding a govcloud.yaml marker, else ``start``."""
    for candidate in (start, *start.parents):
        if (candidate / MARKER).is_file():
            return candidate
    return start


@dataclass
class AppContext:
    root: Path
    output: str = "text"
    debug: bool = False
    verbosity: int = 0

    @property
    def json(self) -> bool:
        return self.output == "json"

    def emit_json(self, payload: Any) -> None:
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True, default=str))

    def echo(self, text: str = "", *, err: bool = False) -> None:
        if self.verbosity < 0 and not err:
            return
        click.echo(text, err=err)

    def diagnostics(self, diags: tuple[Diagnostic, ...] | list[Diagnostic]) -> None:
        """Errors and warnings go to stderr so stdout stays the command's result."""
        for d in diags:
            click.echo(d.render(), err=True)

    def console(self) -> Any:
        from rich.console import Console

        return Console(highlight=False, soft_wrap=True, file=sys.stdout)


pass_app = click.make_pass_decorator(AppContext)
