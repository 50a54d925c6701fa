"""`devcloud monitor up|status|down`: the demo's exporter + Prometheus, real processes on loopback.

The test runs its own instance (`--instance`, its own PID files, data and free ports), so a demo's
stack left running on the default ports neither fails it nor is touched by it.
"""

from __future__ import annotations

import os
import shutil
import socket
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_up_is_idempotent_scrapes_the_lab_and_down_stops_only_ours(lab: Any, tmp_path: Path) -> None:
    require(shutil.which("prometheus") is not None, "prometheus not installed (run scripts/install-monitoring.sh)")
    instance = f"test-{os.getpid()}"
    exporter, prometheus = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    mon = ["monitor", "--instance", instance]
    demo_before = m.status(lab.paths)  # the demo's stack, if one runs: never touched here
    runner = CliRunner()
    # a project whose topology names the lab's first infra host of each site as its probe host
    shutil.copytree(Path(__file__).parents[1] / "data" / "mig" / "inventories", tmp_path / "inventories")
    (tmp_path / "govcloud.yaml").write_text("version: 1\n")
    try:
        r = runner.invoke(devcloud_cli, [*mon, "up", "--root", str(tmp_path), "--exporter-listen", exporter,
                                         "--prometheus-listen", prometheus])
        assert r.exit_code == 0, r.output
        first = m.status(lab.paths, instance)
        assert first.exporter_pid and first.prometheus_pid
        assert f"http://{prometheus}" in r.output
        again = runner.invoke(devcloud_cli, [*mon, "up", "--root", str(tmp_path)])
        assert again.exit_code == 0 and m.status(lab.paths, instance) == first  # nothing restarted, same ports
        # Prometheus scrapes the exporter, which probes the three datacentres of the lab
        wait_for(lambda: len(m.query("govcloud_site_up == 1", first.prometheus_url)) == 3, timeout=60,
                 what="three datacentres up in the instance's Prometheus")
        assert runner.invoke(devcloud_cli, [*mon, "status"]).exit_code == 0
    finally:
        down = runner.invoke(devcloud_cli, [*mon, "down"])
    assert down.exit_code == 0, down.output
    for pid in (first.exporter_pid, first.prometheus_pid):  # gone (a zombie: started by this very process)
        assert process_starttime(pid) is None or _is_zombie(pid), pid
    assert runner.invoke(devcloud_cli, [*mon, "status"]).exit_code == 1
    assert m.status(lab.paths) == demo_before
    shutil.rmtree(lab.paths.home / f"monitor-{instance}", ignore_errors=True)


def test_a_listen_address_off_loopback_is_refused(tmp_path: Path) -> None:
    r = CliRunner().invoke(devcloud_cli, ["monitor", "--instance", "t-bad", "up", "--root", str(tmp_path),
                                          "--exporter-listen", "0.0.0.0:9477"])
    assert r.exit_code == 1 and "use 127.0.0.1:PORT (loopback only)" in r.output, r.output
