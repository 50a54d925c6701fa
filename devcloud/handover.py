"""Before the whole suite: take down the live stacks a demo or a developer left running.

The suite must not depend on what the machine held before it started. A live stack would be adopted
(left running, shared with the tests), and the README's first command, the demo, leaves a cloud
holding 23 departments' landing zones and 170 servers, a lab with their hosts, and its monitoring:
beside that, the suite took 35 minutes instead of 15, and a fault test timed out on Neutron's load.
So ``bash scripts/test.sh`` (the whole suite, what ``.ci/run`` runs) first takes each *live* stack
down, in one line each, and builds its own. A dead or half-dead stack (a killed run) is left alone
here: the suite's ``up``s judge it, say so, and clean it (devcloud/stale.py).

``GOVCLOUD_TEST_ADOPT=1`` keeps them and runs beside them; running a chosen set of tests
(``bash scripts/test.sh tests/integration/test_dns.py``) never takes anything down.

    python -m devcloud.handover        # prints one line per stack taken down; exit 0
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from devcloud import monitor, stale
from devcloud.cloud import stack
from devcloud.lab.api import Lab
from devcloud.paths import DevcloudPaths


def take_down_live_stacks(paths: DevcloudPaths, say: Callable[[str], None]) -> list[str]:
    """Monitoring first (it watches the others), then the lab (its hosts are the cloud's servers),
    then the cloud. Returns the stacks taken down."""
    taken: list[str] = []
    why = "the suite builds its own (GOVCLOUD_TEST_ADOPT=1 runs beside it instead)"
    states = monitor.survey(paths)
    if stale.judge_monitor(states).action == stale.ADOPT:
        monitor.down(paths)
        say(f"suite: a live monitoring stack (exporter, Prometheus) was running: taken down; {why}")
        taken.append("monitor")
    lab = Lab(paths)
    if lab.is_up():
        facts = lab.survey()
        lab.down()
        say(f"suite: a live lab was running ({facts.hosts} hosts): taken down with its DNS and PostgreSQL; {why}")
        taken.append("lab")
    if stack.status(paths).ready:
        stack.down(paths, lambda _line: None)
        say(f"suite: a live devcloud (READY) was running: taken down; {why}")
        taken.append("cloud")
    return taken


def main() -> int:
    take_down_live_stacks(DevcloudPaths.from_env(), print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
