"""`devcloud monitor up|status|down`: the demo's exporter + Prometheus, real processes on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from devcloud import monitor as m
from devcloud.cli import main as devcloud_cli
from devcloud.lab.testing import lab_session
from devcloud.testing import require
from devcloud.procs import _is_zombie, process_starttime, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[Any]:
    with lab_session(hosts_per_site=1) as lb:
        yield lb


def test_up_is_idempotent_scrapes_the_lab_and_down_stops_only_ours(lab: Any, tmp_path: Path) -> None:
    require(shutil.which("prometheus") is not None, "prometheus not installed (run scripts/install-monitoring.sh)")
    require(m.status(lab.paths).prometheus_pid is None, "a `devcloud monitor` stack is already running here")
    runner = CliRunner()
    try:
        r = runner.invoke(devcloud_cli, ["monitor", "up", "--root", str(tmp_path)])
        assert r.exit_code == 0, r.output
        first = m.status(lab.paths)
        assert first.exporter_pid and first.prometheus_pid
        assert "http://127.0.0.1:9090" in r.output
        again = runner.invoke(devcloud_cli, ["monitor", "up", "--root", str(tmp_path)])
        assert again.exit_code == 0 and m.status(lab.paths) == first  # nothing restarted
        # Prometheus scrapes the exporter, which probes the three datacentres of the lab
        wait_for(lambda: len(m.query("govcloud_site_up == 1")) == 3, timeout=60,
                 what="three datacentres up in the demo's Prometheus")
        assert runner.invoke(devcloud_cli, ["monitor", "status"]).exit_code == 0
    finally:
        down = runner.invoke(devcloud_cli, ["monitor", "down"])
    assert down.exit_code == 0, down.output
    for pid in (first.exporter_pid, first.prometheus_pid):  # gone (a zombie: started by this very process)
        assert process_starttime(pid) is None or _is_zombie(pid), pid
    assert runner.invoke(devcloud_cli, ["monitor", "status"]).exit_code == 1
