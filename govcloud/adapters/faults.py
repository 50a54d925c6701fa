"""Fault injection for crash tests: ``GOVCLOUD_FAULT_KILL_AT=<point>[@<system>]`` makes the process
SIGKILL itself at a named crash point (``govcloud.migrate.steps.CRASH_POINTS``): the crash a test
needs, on cue, at a boundary between a side effect and its journal record."""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

FAULT_ENV = "GOVCLOUD_FAULT_KILL_AT"


def kill_at(point: str, system: str = "") -> None:
    """SIGKILL this process at ``point`` when ``GOVCLOUD_FAULT_KILL_AT`` names it (optionally ``@system``)."""
    want = os.environ.get(FAULT_ENV)
    if not want:
        return
    name, _, only = want.partition("@")
    if name == point and (not only or only == system):
        log.warning("fault injection: SIGKILL at %s (%s)", point, system)
        os.kill(os.getpid(), signal.SIGKILL)
