"""What the migration journal records about a system, as typed values (pure: no I/O).

The journal stores facts as JSON; these types are their shape. ``to_fact`` / ``from_fact`` keep the
JSON exactly as earlier versions wrote it (same keys), so a journal written before this module
existed resumes unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar

FactReader = Callable[[str], object]  # a system's latest fact by key (None: never recorded)


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


@dataclass(frozen=True)
class SyncedManifests:
    """The composite manifests the last sync recorded (facts ``source_manifest`` / ``target_manifest``):
    the next warm sync skips when they prove the targets current, the cutover's final pass decides
    from them, and verify compares the targets against the source's. Empty: never recorded."""

    source: str = ""
    target: str = ""  # ``differs:<digest>`` when the sites' targets differ

    def to_facts(self) -> dict[str, str]:
        return {"source_manifest": self.source, "target_manifest": self.target}

    @classmethod
    def from_facts(cls, read: FactReader) -> SyncedManifests:
        return cls(source=_text(read("source_manifest")), target=_text(read("target_manifest")))


@dataclass(frozen=True)
class TargetStarts:
    """The exit status of each target's app start at the last cutover (fact ``target_start``, target
    name -> status): verify fails at once on a start its control reported failed, without waiting
    out the health deadline."""

    KEY: ClassVar[str] = "target_start"

    status: Mapping[str, int] = field(default_factory=dict)

    def to_fact(self) -> dict[str, int]:
        return dict(self.status)

    @classmethod
    def from_fact(cls, value: object) -> TargetStarts:
        """Empty when absent or malformed (a cutover that did not reach the starts)."""
        if not isinstance(value, Mapping):
            return cls()
        return cls({str(k): int(v) for k, v in value.items() if isinstance(v, (int, float))})

    def exit_status(self, target: str) -> int:
        """0 (no failure known) for a target whose start was not recorded."""
        return int(self.status.get(target, 0))


def _text(value: object) -> str:
    return "" if value is None else str(value)
