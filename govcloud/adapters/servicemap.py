"""The service map: where each service's endpoint points now (the lab's stand-in for a DNS zone).

Cutover and failover both end by pointing a service at a new address. Consumers (the sample clients,
the failover writer, an SRE with ``cat``) read one small JSON file; writers switch an entry with a
compare-and-swap under an exclusive ``flock`` so two controllers can never both "win": the switch
names the address it expects to replace and fails when someone else moved the endpoint first.

The file is replaced atomically (write to a temporary file, fsync, rename, fsync the directory), so a
reader or a crash never sees half a map. Each entry keeps a bounded history of earlier targets.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from govcloud.errors import ServiceMapError

FORMAT_VERSION = 1
HISTORY_KEPT = 20
DEFAULT_RELATIVE = Path(".govcloud") / "service-map.json"


@dataclass(frozen=True)
class Endpoint:
    """One service's current endpoint. ``version`` grows by one per switch (a fencing token)."""

    service: str
    address: str
    port: int
    site: str
    version: int
    updated_at: str
    reason: str = ""
    history: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = list(self.history)
        return d


def default_path(root: Path) -> Path:
    return root / DEFAULT_RELATIVE


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ServiceMap:
    """A JSON service map file; every write holds ``<file>.lock`` exclusively."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    # ------------------------------------------------------------ reading

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ServiceMapError(f"cannot read the service map {self.path}: {exc.strerror}",
                                  hint="check the file's permissions") from exc
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise ServiceMapError(f"{self.path}: not valid JSON ({exc})",
                                  hint="restore it from the journal's audit log or remove it to start empty") from exc
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION or not isinstance(doc.get("services"), dict):
            raise ServiceMapError(f"{self.path}: not a govcloud service map (version {FORMAT_VERSION})",
                                  hint="was it written by another tool? move it aside")
        services: dict[str, dict[str, Any]] = doc["services"]
        return services

    @staticmethod
    def _endpoint(name: str, d: dict[str, Any]) -> Endpoint:
        return Endpoint(service=name, address=str(d["address"]), port=int(d["port"]), site=str(d.get("site", "")),
                        version=int(d["version"]), updated_at=str(d.get("updated_at", "")),
                        reason=str(d.get("reason", "")), history=tuple(d.get("history", ())))

    def lookup(self, service: str) -> Endpoint | None:
        d = self._read().get(service)
        return None if d is None else self._endpoint(service, d)

    def all(self) -> dict[str, Endpoint]:
        return {name: self._endpoint(name, d) for name, d in sorted(self._read().items())}

    # ------------------------------------------------------------ writing

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _write(self, services: dict[str, dict[str, Any]]) -> None:
        body = json.dumps({"version": FORMAT_VERSION, "services": services}, indent=2, sort_keys=True,
                          ensure_ascii=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def check(self) -> None:
        """The map is a local file: nothing to check before a switch."""

    def switch(self, service: str, *, address: str, port: int, site: str = "", expect: str | None = None,
               reason: str = "") -> Endpoint:
        """Point ``service`` at ``address:port``; idempotent when it already points there.

        ``expect`` is the address the caller believes is current (``None``: do not check; ``""``: the
        service must not exist yet). A mismatch raises ServiceMapError and changes nothing.
        """
        with self._locked():
            services = self._read()
            cur = services.get(service)
            if cur is not None and cur["address"] == address and int(cur["port"]) == port:
                return self._endpoint(service, cur)  # already there: a rerun after a crash
            current_addr = "" if cur is None else str(cur["address"])
            if expect is not None and expect != current_addr:
                raise ServiceMapError(
                    f"service {service!r} points at {current_addr or '(nothing)'} in {self.path}, "
                    f"not {expect or '(nothing)'} as expected: someone else switched it",
                    hint="run `govcloud migrate status` / `govcloud failover status` to see who did, then retry")
            history = list(cur.get("history", ())) if cur else []
            if cur is not None:
                history.append({k: cur[k] for k in ("address", "port", "site", "version", "updated_at", "reason")
                                if k in cur})
            entry = {"address": address, "port": port, "site": site,
                     "version": (int(cur["version"]) + 1) if cur else 1, "updated_at": _now(), "reason": reason,
                     "history": history[-HISTORY_KEPT:]}
            services[service] = entry
            self._write(services)
            return self._endpoint(service, entry)

    def remove(self, service: str) -> bool:
        with self._locked():
            services = self._read()
            if services.pop(service, None) is None:
                return False
            self._write(services)
            return True
