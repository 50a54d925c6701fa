"""What govcloud last published for the HA service name, kept in the state directory (one JSON file).

Why a record and not the name server's answer: a compare-and-swap whose "expected" value is the one
just read would overwrite whatever is there (issue 31). The expected value is what govcloud itself
published last, written here after the switch; the intent is written before it, so a run that died in
between resumes the same switch (the name already answering the new address is then a no-op).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from govcloud.errors import JournalError


@dataclass(frozen=True)
class NameRecord:
    service: str
    published: str | None = None  # the address govcloud last switched the name to
    intent: str | None = None  # a switch begun and not yet recorded as done


class NameState:
    def __init__(self, state: Path, scope: str) -> None:
        self.path = state / "ha" / f"{scope}.name.json"

    def read(self, service: str) -> NameRecord:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return NameRecord(service)
        except (OSError, ValueError) as exc:
            raise JournalError(f"cannot read {self.path}: {exc}",
                               hint="restore it from the state directory's backup, or remove it if the name "
                                    "does not exist yet") from exc
        if doc.get("service") != service:
            return NameRecord(service)  # the topology renamed the service: nothing was published under this name
        return NameRecord(service, doc.get("published"), doc.get("intent"))

    def write(self, record: NameRecord) -> None:
        """Atomically (write, fsync, rename): a crash leaves the old record or the new one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(asdict(record), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
