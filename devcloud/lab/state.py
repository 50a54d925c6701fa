"""The lab's state file: which hosts exist and which sites are cut, under an exclusive lock.

``down`` does not rely on it alone (it also removes everything named ``gcl-``), but reconcile and
``legacy`` use it to know what they created, and a crashed run leaves it consistent enough to
clean up after.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path


@dataclass
class HostSpec:
    """One lab host. ``key`` names its namespace and directory; ``hostname`` is what it answers."""

    key: str
    hostname: str
    site: str
    ip: str
    prefixlen: int
    gateway: str
    kind: str = "infra"  # infra | legacy | nova
    authorized_keys: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)  # server_id, region, system, ...
    pid: int | None = None  # sshd (also the host's mount/UTS namespace anchor)

    @property
    def iface(self) -> IPv4Interface:
        return IPv4Interface(f"{self.ip}/{self.prefixlen}")

    @property
    def gateway_ip(self) -> IPv4Address:
        return IPv4Address(self.gateway)

    def same_shape(self, other: "HostSpec") -> bool:
        """True when ``other`` can be kept as it is for this spec (no re-create needed)."""
        return (
            self.hostname == other.hostname
            and self.site == other.site
            and self.ip == other.ip
            and self.prefixlen == other.prefixlen
            and self.gateway == other.gateway
            and sorted(self.authorized_keys) == sorted(other.authorized_keys)
        )


@dataclass
class LabState:
    up: bool = False
    cut: list[str] = field(default_factory=list)
    partitions: list[list[str]] = field(default_factory=list)  # sorted site pairs
    hosts: dict[str, HostSpec] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"up": self.up, "cut": sorted(self.cut), "partitions": sorted(self.partitions), "hosts": {k: asdict(h) for k, h in sorted(self.hosts.items())}},
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> "LabState":
        d = json.loads(text)
        return cls(
            up=bool(d.get("up")),
            cut=list(d.get("cut", [])),
            partitions=[list(p) for p in d.get("partitions", [])],
            hosts={k: HostSpec(**h) for k, h in d.get("hosts", {}).items()},
        )


class StateStore:
    """``state.json`` next to a lock file; ``locked()`` yields the state and saves it on exit."""

    def __init__(self, lab_dir: Path) -> None:
        self.dir = lab_dir
        self.file = lab_dir / "state.json"
        self.lockfile = lab_dir / ".lock"

    def load(self) -> LabState:
        try:
            return LabState.from_json(self.file.read_text())
        except FileNotFoundError:
            return LabState()

    def save(self, st: LabState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(st.to_json())
        os.replace(tmp, self.file)

    @contextlib.contextmanager
    def shared(self) -> Iterator[LabState]:
        """The state, read under a shared lock held until the block ends: a writer (adding or removing
        hosts) waits, so what the block also observes (e.g. which sshd run) matches the state."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.lockfile, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)
            try:
                yield self.load()
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def locked(self) -> Iterator[LabState]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.lockfile, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            st = self.load()
            try:
                yield st
            finally:
                self.save(st)
                fcntl.flock(fh, fcntl.LOCK_UN)
