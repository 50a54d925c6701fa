"""Config templates (devcloud/templates/*) rendered with string.Template: stdlib only, ``$$`` for a literal dollar."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def render(name: str, **values: object) -> str:
    """Render a template; a missing value is an error, not a silent gap."""
    text = (TEMPLATES / name).read_text()
    return Template(text).substitute({k: str(v) for k, v in values.items()})


def write(dest: Path, name: str, **values: object) -> Path:
    """Render into ``dest``, mode 0600 (configs hold the cloud's password)."""
    return write_mapping(dest, name, values)


def write_mapping(dest: Path, name: str, values: Mapping[str, object]) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render(name, **values))
    dest.chmod(0o600)
    return dest
