"""Plan names: ``govcloud plan --name NAME`` writes ``migration_plans/NAME.yaml`` and ``govcloud migrate run
NAME`` reads it, so a name must stay a plain file name inside that directory (pure; no I/O).

Without this rule ``--name ../inventories/topology`` overwrote the inventories, an absolute name wrote
anywhere, ``''`` wrote a hidden ``.yaml`` and ``a/b`` created a directory (issue 29).
"""

from __future__ import annotations

import re
import unicodedata

EXAMPLE_NAME = "wave-plan"
#: room for ".yaml.~NNN~" (the backup of an edited plan) within the 255-byte file-name limit
MAX_NAME_BYTES = 200
RULE = "a plain file name: not empty, no '/' or '\\', no '..', no leading dot, printable characters only"


def _printable(ch: str) -> bool:
    """Letters, marks, digits, punctuation, symbols and the plain space: nothing invisible (control,
    format, surrogate, private-use or unassigned code points) and no line or other space separators."""
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def plan_name_problem(name: str) -> str | None:
    """Why ``name`` is not a plan name ("it holds ..."), or None when it is one."""
    if not name:
        return "it is empty"
    sep = next((ch for ch in name if ch in "/\\"), None)
    if sep is not None:
        return f"it holds the path separator '{sep}'"
    if name.startswith("."):
        return "it starts with a dot (a hidden file)"
    if ".." in name:
        return "it holds '..'"
    bad = next((ch for ch in name if not _printable(ch)), None)
    if bad is not None:
        return f"it holds the unprintable character U+{ord(bad):04X}"
    if name != name.strip():
        return "it starts or ends with a space"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes in UTF-8"
    return None


def suggest_plan_name(name: str) -> str:
    """An allowed name close to ``name`` (its parts joined by '-'), for the error message to show."""
    parts = []
    for part in re.split(r"[/\\]+", name):
        kept = re.sub(r"\.{2,}", ".", "".join(ch for ch in part if _printable(ch))).strip().lstrip(".").strip()
        if kept:
            parts.append(kept)
    candidate = "-".join(parts)
    while len(candidate.encode("utf-8")) > MAX_NAME_BYTES:
        candidate = candidate[:-1]
    candidate = candidate.strip()
    return candidate if candidate and plan_name_problem(candidate) is None else EXAMPLE_NAME
