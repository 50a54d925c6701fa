"""The HA cluster's passwords: made once per Patroni scope, kept 0600 in the state directory.

Why a file the controller keeps, read by the Ansible role through a lookup in a no_log task: the
passwords then never travel in Ansible's inventory, extra variables or events (all written to the run's
artifacts), never reach a log, and a redeployment reuses them (a new password on one member would lock
its replication out).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import yaml

from govcloud.errors import InvalidInputError
from govcloud.failover.patroni_config import HaSecrets

FIELDS = ("superuser", "replication", "rewind", "restapi")


def secrets_path(state: Path, scope: str) -> Path:
    return state / "ha" / f"{scope}.secrets.yaml"


def load_or_create(state: Path, scope: str) -> tuple[HaSecrets, Path]:
    """The scope's passwords, made (0600, in a 0700 directory) on first use."""
    path = secrets_path(state, scope)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if not path.exists():
        doc = {f: secrets.token_urlsafe(24) for f in FIELDS}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yaml.safe_dump(doc, out)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"cannot read the HA passwords in {path}: {exc}",
                                hint="restore the file from the state directory's backup; a new password "
                                     "would not match the one the running cluster has") from exc
    if not isinstance(doc, dict) or any(not isinstance(doc.get(f), str) or not doc.get(f) for f in FIELDS):
        raise InvalidInputError(f"{path} must hold {', '.join(FIELDS)} as non-empty strings",
                                hint="restore the file from the state directory's backup")
    if path.stat().st_mode & 0o077:
        raise InvalidInputError(f"{path} is readable by others (mode {path.stat().st_mode & 0o777:o})",
                                hint=f"chmod 600 {path}")
    return HaSecrets(doc["superuser"], doc["replication"], doc["rewind"], doc["restapi"]), path
