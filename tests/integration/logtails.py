"""The last lines of the component logs a failed integration test touched, for the test's own report.

CI keeps only what the run printed. When an integration test fails, the cause is usually in a log of
a component it used (a devcloud service, named, sshd, PostgreSQL, the reconcile watcher, the
monitoring stack), so the failure report carries the tail of every log under the devcloud's home that
was written while the test ran: the CI output alone is then enough to act on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

LINES = 15
MAX_FILES = 12
MAX_LINE = 400
# never printed: the OpenStack venv, MariaDB/RabbitMQ data, the lab hosts' application data
PRUNE = {"venv-openstack", "state", "data", "www", "app", "db", "backup", "files", "__pycache__"}
SECRET = re.compile(r"(?i)(password|passwd|secret|token|key)(\S*\s*[=:]\s*)(\S+)")


def _logs_written_since(home: Path, since: float) -> list[Path]:
    found: list[tuple[float, Path]] = []
    for top, dirs, files in os.walk(home):
        dirs[:] = [d for d in dirs if d not in PRUNE]
        for name in files:
            if not name.endswith(".log"):
                continue
            path = Path(top) / name
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if mtime >= since:
                found.append((mtime, path))
    return [p for _, p in sorted(found, reverse=True)[:MAX_FILES]]


def _tail(path: Path, lines: int = LINES) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return [f"(unreadable: {exc})"]
    return [SECRET.sub(r"\1\2<redacted>", line)[:MAX_LINE] for line in text.splitlines()[-lines:]]


def log_tails(home: Path, since: float) -> str:
    """The tails of the logs under ``home`` written since ``since`` (newest first), as one text."""
    if not home.is_dir():
        return f"(no devcloud home at {home})"
    out: list[str] = []
    for path in _logs_written_since(home, since):
        out.append(f"--- {path} (last {LINES} lines)")
        out.extend(_tail(path))
    return "\n".join(out) if out else f"(no log under {home} was written during the test)"
