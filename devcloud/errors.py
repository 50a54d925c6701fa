"""One error type the CLI turns into a clear message (what failed, which log to read)."""

from __future__ import annotations

from pathlib import Path


class DevcloudError(RuntimeError):
    """A failure the user can act on; ``log`` names the file that explains it."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg} (see {self.log})" if self.log else msg
