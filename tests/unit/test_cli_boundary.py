"""The CLI's one error boundary: an EOFError raised inside a command is a failure, not a Ctrl-C.

click turns any EOFError escaping a command into ``Abort``. paramiko raises EOFError when a host
closes the connection during the SSH handshake (a host still starting, an sshd over MaxStartups),
and the migrate run then exited 130 "interrupted" although nobody pressed Ctrl-C (issue 28).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, *args: str, stdin: str | None = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], input=stdin, text=True, capture_output=True,
                          timeout=60, cwd=REPO, check=False)


PATCHED = """
import sys
import govcloud.inventory
def boom(*a, **k):
    raise EOFError("the host closed the connection")
govcloud.inventory.validate_inventory = boom
from govcloud.cli.main import main
sys.argv = ["govcloud", *sys.argv[1:]]
main()
"""


def test_an_eoferror_inside_a_command_is_an_internal_error_with_exit_1(project: Path) -> None:
    r = _run(PATCHED, "--root", str(project), "validate")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "internal error: EOFError: the host closed the connection" in r.stderr
    assert "interrupted" not in r.stderr and "Traceback" not in r.stderr


def test_an_eof_at_a_prompt_stays_an_interruption(monkeypatch: pytest.MonkeyPatch) -> None:
    """click's prompt aborts ``from None``; only click's main chains a library's EOFError."""
    import io

    import click

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # stdin closed: the prompt reads EOF
    with pytest.raises(click.exceptions.Abort) as at_prompt:
        click.confirm("delete?")
    assert at_prompt.value.__cause__ is None
