"""What the migration journal records about a system, as typed values (pure: no I/O).

The journal stores facts as JSON; these types are their shape. ``to_fact`` / ``from_fact`` keep the
JSON exactly as earlier versions wrote it (same keys), so a journal written before this module
existed resumes unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Target:
    """A booted server of a system: the copy of one legacy host in one site."""

    name: str
    id: str
    ip: str
    site: str
    region: str
    primary: bool  # in the primary site: the endpoint points at a primary target
    legacy_host: str
    data: tuple[str, ...]

    def to_fact(self) -> dict[str, object]:
        return {"name": self.name, "id": self.id, "ip": self.ip, "site": self.site, "region": self.region,
                "primary": self.primary, "legacy_host": self.legacy_host, "data": list(self.data)}

    @classmethod
    def from_fact(cls, doc: Mapping[str, object]) -> Target:
        data = doc.get("data") or ()
        return cls(name=str(doc["name"]), id=str(doc.get("id", "")), ip=str(doc["ip"]), site=str(doc.get("site", "")),
                   region=str(doc.get("region", "")), primary=bool(doc.get("primary")),
                   legacy_host=str(doc.get("legacy_host", "")),
                   data=tuple(str(p) for p in data) if isinstance(data, (list, tuple)) else ())


def targets_from_fact(value: object) -> tuple[Target, ...]:
    """The ``targets`` fact (a JSON list) as Targets; empty when absent or malformed."""
    if not isinstance(value, list):
        return ()
    return tuple(Target.from_fact(t) for t in value if isinstance(t, Mapping))


@dataclass(frozen=True)
class SyncStats:
    """What one or more rsync runs moved (summed): the journal's ``bytes_sent`` / ``literal_data`` facts."""

    bytes_sent: int = 0
    literal_data: int = 0
    matched_data: int = 0
    files_transferred: int = 0

    def __add__(self, other: SyncStats) -> SyncStats:
        return SyncStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class TransferKeyRef:
    """A per-migration key a step is about to authorise, named in the step's intent so that a resume
    after a crash can revoke it (the key's expiry is only the safety net)."""

    mig_id: str
    target: str  # the target's address
    target_name: str
    source_host: str  # the legacy host (inventory name) that holds the private half

    def to_fact(self) -> dict[str, str]:
        return {"mig_id": self.mig_id, "target": self.target, "target_name": self.target_name,
                "source_host": self.source_host}

    @classmethod
    def from_fact(cls, doc: Mapping[str, object]) -> TransferKeyRef:
        return cls(mig_id=str(doc["mig_id"]), target=str(doc["target"]),
                   target_name=str(doc.get("target_name", doc["target"])), source_host=str(doc["source_host"]))


def transfer_keys_for(targets: Sequence[Target]) -> tuple[TransferKeyRef, ...]:
    """One key per target (named after the target, at most 64 characters: ssh-keygen comment rules)."""
    return tuple(TransferKeyRef(t.name[:64], t.ip, t.name, t.legacy_host) for t in targets)
