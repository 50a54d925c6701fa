"""Static guarantees: the core type-checks strictly, layers hold, and the CLI starts light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_mypy_strict_on_the_package() -> None:
    r = subprocess.run([str(BIN / "mypy"), "govcloud"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_contracts_hold() -> None:
    r = subprocess.run([str(BIN / "lint-imports")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout
    # the product never imports the test rig; the one exception (the lab's failover controller, issue 31)
    # is listed in setup.cfg with its issue
    assert "The product never imports the test rig (devcloud) KEPT (1 ignored import)" in r.stdout


def test_the_product_distribution_carries_no_rig() -> None:
    """Issue 30, item 4: installing govcloud installs the product only; devcloud and its console script
    are the rig's own distribution (rig/pyproject.toml), which scripts/bootstrap.sh installs beside it."""
    from importlib.metadata import distribution

    product = distribution("govcloud")
    assert {ep.name for ep in product.entry_points if ep.group == "console_scripts"} == {"govcloud"}
    top_level = product.read_text("top_level.txt")  # setuptools writes it for wheels and editable installs
    assert top_level is not None and top_level.split() == ["govcloud"], top_level
    rig = distribution("govcloud-devcloud")
    assert [ep.value for ep in rig.entry_points if ep.name == "devcloud"] == ["devcloud.cli:main"]
    assert "govcloud" in [req.split(";")[0].strip() for req in rig.requires or []], rig.requires


def test_help_does_not_import_heavy_libraries() -> None:
    """`govcloud --help` must stay fast: the cloud, Ansible and SSH libraries load only when used."""
    code = (
        "import sys\n"
        "from govcloud.cli.main import cli\n"
        "try:\n    cli.main(['--help'], prog_name='govcloud')\nexcept SystemExit:\n    pass\n"
        "heavy = {'openstack', 'ansible_runner', 'paramiko', 'prometheus_client', 'jsonschema', 'networkx', 'yaml', 'rich'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_exit_codes_are_documented_in_help() -> None:
    r = subprocess.run([sys.executable, "-m", "govcloud", "--help"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0
    for code in ("0    ok", "1    runtime failure", "2    invalid input", "3    changes pending", "130  interrupted"):
        assert code in r.stdout
