"""Mutated inventories never crash govcloud: the answer is exit 0 or 2, never a traceback."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govcloud.cli.main import cli

MINI = Path(__file__).resolve().parent.parent / "data" / "mini" / "inventories"
FILES = ["topology.yaml", "departments/hrss.yaml", "departments/zsj.yaml"]
NASTY = [":", "-", "[", "]", "{", "}", "&a", "*a", " ", "\t", "x", "0", "!!binary", "<<: ", "'", '"', "\x00", "~", "\n  "]

mutation = st.one_of(
    st.tuples(st.just("delete_line"), st.integers(0, 60)),
    st.tuples(st.just("duplicate_line"), st.integers(0, 60)),
    st.tuples(st.just("insert"), st.integers(0, 3000), st.sampled_from(NASTY)),
    st.tuples(st.just("replace"), st.integers(0, 3000), st.sampled_from(NASTY)),
    st.tuples(st.just("truncate"), st.integers(0, 3000)),
    st.tuples(st.just("bytes"), st.integers(0, 3000), st.binary(min_size=1, max_size=3)),
)


def mutate(raw: bytes, op: tuple) -> bytes:  # type: ignore[type-arg]
    kind = op[0]
    lines = raw.split(b"\n")
    if kind == "delete_line":
        del lines[op[1] % len(lines)]
        return b"\n".join(lines)
    if kind == "duplicate_line":
        i = op[1] % len(lines)
        lines.insert(i, lines[i])
        return b"\n".join(lines)
    pos = op[1] % (len(raw) + 1)
    if kind == "insert":
        return raw[:pos] + op[2].encode() + raw[pos:]
    if kind == "replace":
        return raw[:pos] + op[2].encode() + raw[pos + 1:]
    if kind == "truncate":
        return raw[:pos]
    return raw[:pos] + op[2] + raw[pos:]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FILES), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_inventory_never_crashes(file: str, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(MINI, root / "inventories")
        target = root / "inventories" / file
        raw = target.read_bytes()
        for op in ops:
            raw = mutate(raw, op)
        target.write_bytes(raw)
        runner = CliRunner()
        for args in (["validate"], ["plan", "--dry-run"]):
            result = runner.invoke(cli, ["--root", str(root), *args], catch_exceptions=False)
            output = result.stdout + result.stderr
            assert result.exit_code in (0, 2), output
            assert "Traceback" not in output and "internal error" not in output, output
            if result.exit_code == 2:
                assert "error" in result.stderr
