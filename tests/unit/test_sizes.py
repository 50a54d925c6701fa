"""Size rules that stay true: no module in govcloud/ over 600 lines, no function or method over 80.

Big modules and long functions are where a capability lands as scattered edits; the rule keeps each
step, adapter and decision small enough to read and to test on its own. The check is ast-based, so it
names each offender with its size (a function's size excludes its decorators).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "govcloud"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def module_offenders(root: Path, limit: int = MAX_MODULE_LINES) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            out.append(f"{path.relative_to(root.parent)}: module has {lines} lines (limit {limit})")
    return out


def function_offenders(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > limit:
                    out.append(f"{path.relative_to(root.parent)}:{node.lineno}: {node.name} has {size} lines "
                               f"(limit {limit})")
    return out


def test_no_module_over_600_lines() -> None:
    offenders = module_offenders(PACKAGE)
    assert not offenders, "split these modules:\n" + "\n".join(offenders)


def test_no_function_over_80_lines() -> None:
    offenders = function_offenders(PACKAGE)
    assert not offenders, "split these functions into named phases:\n" + "\n".join(offenders)


@pytest.mark.parametrize("body_lines, expected", [(78, 0), (79, 1)])
def test_the_check_names_an_oversized_function(tmp_path: Path, body_lines: int, expected: int) -> None:
    """The rule itself can fail: a scratch package with an 80- and an 81-line function."""
    pkg = tmp_path / "scratch"
    pkg.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(body_lines))
    (pkg / "long.py").write_text(f"@staticmethod\ndef grown():\n{body}    return None\n", encoding="utf-8")
    found = function_offenders(pkg)
    assert len(found) == expected
    if expected:
        assert found[0] == f"scratch/long.py:2: grown has {body_lines + 2} lines (limit 80)"


def test_the_check_names_an_oversized_module(tmp_path: Path) -> None:
    pkg = tmp_path / "scratch"
    pkg.mkdir()
    (pkg / "big.py").write_text("x = 1\n" * 601, encoding="utf-8")
    assert module_offenders(pkg) == ["scratch/big.py: module has 601 lines (limit 600)"]
