"""Where the cloud's files live inside the devcloud home (own subdirectories, so `up`'s reset never touches the lab's)."""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from devcloud.paths import DevcloudPaths
from devcloud.procs import ProcessRegistry


@dataclass(frozen=True)
class CloudLayout:
    paths: DevcloudPaths

    @property
    def etc(self) -> Path:
        return self.paths.etc / "cloud"

    @property
    def state(self) -> Path:
        return self.paths.state / "cloud"

    @property
    def log(self) -> Path:
        return self.paths.log / "cloud"

    @property
    def run(self) -> Path:
        """PID files of the cloud's processes (and MariaDB's socket)."""
        return self.paths.run / "cloud"

    @property
    def ready_marker(self) -> Path:
        return self.state / "READY"

    @property
    def schema_cache(self) -> Path:
        return self.paths.cache / "schema"

    @property
    def venv(self) -> Path:
        return self.paths.venv

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def registry(self) -> ProcessRegistry:
        return ProcessRegistry(self.run)

    def reset(self) -> None:
        """Fresh cloud: fake nova-compute cannot restart on old state, so etc/state/log start empty."""
        import shutil

        for d in (self.etc, self.state, self.log):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        self.run.mkdir(parents=True, exist_ok=True)
        for f in self.run.iterdir():  # sockets/pidfiles of daemons; our own PID files are gone after stop
            if not f.name.endswith(".pid") and f.name != "lock":
                f.unlink(missing_ok=True)

    def password(self) -> str:
        """The cloud's admin/service/DB/RabbitMQ password: random once, kept with the schema cache it is baked into.

        Written to a temporary file and renamed into place: a run killed half-way never leaves an
        empty password behind (an empty file, from before, is replaced)."""
        f = self.paths.cache / "cloud-password"
        if not f.exists() or not f.read_text().strip():
            f.parent.mkdir(parents=True, exist_ok=True)
            pw = base64.b32encode(secrets.token_bytes(15)).decode().lower()
            tmp = f.with_name(f".{f.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(pw + "\n")
            os.replace(tmp, f)
        return f.read_text().strip()

    def generation(self) -> tuple[int, int] | None:
        """Which cloud this is (the READY marker's inode and time), or None when there is none to
        hold servers: no marker (never up, taken down, or being rebuilt) or every recorded process
        dead (killed: the next `up` builds a fresh cloud, so its servers never come back)."""
        try:
            st = self.ready_marker.stat()
        except OSError:
            return None
        reg = self.registry()
        if not any(reg.alive(n) for n in reg.names()):
            return None
        return st.st_ino, st.st_mtime_ns
