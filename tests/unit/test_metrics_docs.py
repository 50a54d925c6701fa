"""monitoring/README.md lists every metric, generated from the code: it must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from govcloud.adapters.metrics import METRICS, render_markdown

REPO = Path(__file__).resolve().parents[2]


def test_readme_is_generated_from_the_code() -> None:
    readme = (REPO / "monitoring" / "README.md").read_text()
    assert readme == render_markdown(), (
        "monitoring/README.md is stale: run `python -m govcloud.adapters.metrics --markdown > monitoring/README.md`")
    for m in METRICS:
        assert f"`{m.name}`" in readme


def test_markdown_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "govcloud.adapters.metrics", "--markdown"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert out == render_markdown()


def test_dashboard_and_rules_only_use_declared_metrics() -> None:
    """A typo in a panel or rule query would silently show nothing: every govcloud_ name must exist."""
    import re

    names = {m.name for m in METRICS}
    suffixes = ("_bucket", "_sum", "_count")
    for f in [REPO / "monitoring" / "grafana" / "govcloud.json", *(REPO / "monitoring" / "rules").glob("*.yml")]:
        for used in set(re.findall(r"govcloud_[a-z0-9_]+", f.read_text())):
            base = next((used.removesuffix(s) for s in suffixes if used.endswith(s) and used.removesuffix(s) in names),
                        used)
            assert base in names, f"{f.name} uses undeclared metric {used}"
