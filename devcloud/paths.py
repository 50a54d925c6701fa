"""Where devcloud keeps its state: one directory tree it owns, outside the repository."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path("/var/tmp/govcloud-devcloud")


@dataclass(frozen=True)
class DevcloudPaths:
    """All devcloud directories, derived from one root (``DEVCLOUD_HOME``)."""

    home: Path

    @classmethod
    def from_env(cls) -> "DevcloudPaths":
        return cls(Path(os.environ.get("DEVCLOUD_HOME", str(DEFAULT_HOME))))

    @property
    def run(self) -> Path:
        """PID files of every process devcloud started."""
        return self.home / "run"

    @property
    def log(self) -> Path:
        return self.home / "log"

    @property
    def etc(self) -> Path:
        """Rendered configuration files."""
        return self.home / "etc"

    @property
    def state(self) -> Path:
        """Service data: MariaDB datadir, RabbitMQ mnesia, Glance images, nova state_path."""
        return self.home / "state"

    @property
    def cache(self) -> Path:
        """Survives `down`: the migrated-schema snapshot keyed by package versions."""
        return self.home / "cache"

    @property
    def venv(self) -> Path:
        """The OpenStack services' own virtualenv (kept apart from govcloud's)."""
        return Path(os.environ.get("DEVCLOUD_VENV", str(self.home / "venv-openstack")))

    @property
    def lab(self) -> Path:
        """Site lab: host keys, per-host /srv, known_hosts, sshd configs."""
        return self.home / "lab"

    @property
    def clouds_yaml(self) -> Path:
        return self.home / "clouds.yaml"

    def ensure(self) -> None:
        for d in (self.run, self.log, self.etc, self.state, self.cache, self.lab):
            d.mkdir(parents=True, exist_ok=True)
