"""The whole suite's first step (devcloud/handover.py): only *live* stacks are taken down.

A home where nothing runs, or where a killed run left PID files naming dead processes, is left as
it is: those are for the suite's `up`s to judge, report and clean (the after-a-kill check). Taking
down a live demo is exercised by the README's two commands in order (docs/testing.md).
"""

from __future__ import annotations

from pathlib import Path

from devcloud.handover import take_down_live_stacks
from devcloud.paths import DevcloudPaths


def test_nothing_running_takes_nothing_down(tmp_path: Path) -> None:
    said: list[str] = []
    assert take_down_live_stacks(DevcloudPaths(tmp_path), said.append) == []
    assert said == []


def test_a_killed_runs_pid_files_are_left_to_the_ups(tmp_path: Path) -> None:
    """Dead processes recorded in PID files (PID 2**22 - 1 is above Linux's pid_max default) are stale,
    not live: nothing is taken down, and the PID files stay for `up` to report."""
    from devcloud import monitor
    from devcloud.cloud.layout import CloudLayout

    paths = DevcloudPaths(tmp_path)
    dead = str(2**22 - 1)
    cloud_pid = CloudLayout(paths).run / "keystone.pid"
    for pidfile in (cloud_pid, paths.home / "monitor" / "run" / "monitor-exporter.pid"):
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(dead)
    assert monitor.survey(paths)["exporter"] == "dead"  # the PID files are where the stacks look
    assert CloudLayout(paths).registry().names() == ["keystone"]
    said: list[str] = []
    assert take_down_live_stacks(paths, said.append) == []
    assert said == []
    assert cloud_pid.read_text() == dead
