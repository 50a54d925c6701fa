"""A service an `up` started but never recorded (killed between the start and its PID file) is still
found as the cloud's, by the environment line every service of the cloud carries."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from devcloud.procs import ProcessRegistry, wait_for


def _start(env_line: str) -> subprocess.Popen[bytes]:
    key, value = env_line.split("=", 1)
    return subprocess.Popen(["sleep", "60"], env={**os.environ, key: value}, start_new_session=True)


def test_an_unrecorded_process_with_the_cloud_line_is_found_and_a_recorded_one_is_not(tmp_path: Path) -> None:
    line = f"DEVCLOUD_CLOUD_STATE={tmp_path / 'state'}"
    reg = ProcessRegistry(tmp_path / "run")
    stray, recorded, other = _start(line), _start(line), _start(f"DEVCLOUD_CLOUD_STATE={tmp_path / 'elsewhere'}")
    try:
        reg.adopt("svc", recorded.pid)
        wait_for(lambda: stray.pid in reg.marked(line), timeout=10, what="the stray's environment readable")
        found = reg.marked(line)
        assert stray.pid in found  # no PID file names it: it is what the next `up` must clean
        assert recorded.pid not in found  # recorded and alive: the registry stops it itself
        assert other.pid not in found  # another cloud's (another state directory)
    finally:
        for p in (stray, recorded, other):
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
