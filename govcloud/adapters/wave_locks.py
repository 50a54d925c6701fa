"""Who holds a wave's lock: the holder as data, whether its process still lives, and the refusal a
second run gets (worded here, tested as a pure function).

Kept apart from ``journal.py``, which stores the locks, so the journal reads as storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from govcloud.errors import WaveLockedError


def process_starttime(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), ``None`` if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def pid_alive(pid: int, starttime: int | None) -> bool:
    """Alive and the same process (a recycled pid has another start time)."""
    current = process_starttime(pid)
    return current is not None and (starttime is None or current == starttime)


@dataclass(frozen=True)
class LockHolder:
    plan: str
    wave: int
    run_id: str
    pid: int
    host: str
    user: str
    started_at: str
    pid_starttime: int | None = None

    def describe(self) -> str:
        return (f"run {self.run_id} (pid {self.pid} on host {self.host}, user {self.user}, "
                f"since {self.started_at})")

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def lock_refusal(holder: LockHolder, *, this_host: str) -> WaveLockedError:
    """The error a second run of the same wave gets (pure: unit-tested for its wording)."""
    if holder.host == this_host:
        hint = (f"wait for it to finish, or stop it (kill {holder.pid}) and run again: a lock whose process "
                "is gone is taken over automatically")
    else:
        hint = (f"the holder runs on another host ({holder.host}); wait for it, or if it is certainly dead "
                "take the lock over explicitly (steal=True / --steal-lock)")
    return WaveLockedError(f"wave {holder.wave} of plan {holder.plan} is already being migrated by {holder.describe()}",
                           hint=hint, holder=holder.as_dict())
