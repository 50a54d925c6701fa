"""A mistake in a YAML anchor that many hosts reuse (the shipped inventories declare the sample app once
per file, ``services: *sampleapp`` after it) is one finding at its one place, not one per host."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from govcloud.cli.main import cli

REPO = Path(__file__).resolve().parents[2]


def test_a_bad_anchor_is_reported_once_with_the_count_of_its_uses(tmp_path: Path) -> None:
    shutil.copytree(REPO / "inventories", tmp_path / "inventories")
    (tmp_path / "govcloud.yaml").write_text("version: 1\n")
    amr = tmp_path / "inventories" / "departments" / "amr.yaml"
    text = amr.read_text()
    uses = text.count("services: *sampleapp") + 1  # the anchor's own host, then every alias
    assert uses > 2
    broken = text.replace("            commands:\n", "            kommands:\n", 1)  # a typo in the anchor
    assert broken != text
    amr.write_text(broken)
    r = CliRunner().invoke(cli, ["--root", str(tmp_path), "validate"], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.startswith("inventories/departments/amr.yaml:")]
    assert len(lines) == len({line.split(": ", 1)[0] for line in lines}), lines  # one finding per place
    assert any(f"(and {uses - 1} more place(s) that reuse this block through a YAML alias)" in line
               for line in lines), lines
