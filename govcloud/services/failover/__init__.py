"""The failover controller of the shared PostgreSQL: the decision loop, its actions, and failback.

- ``backend``: what the controller needs from the replicated service (``Backend``, a Protocol);
- ``controller``: probes -> snapshot -> reconciled journal -> decision, published for the exporter;
- ``executor``: a failover decision carried out as its runbook, journaled step by step;
- ``failback``: members rejoin, and the primary switches back home without loss.

The journal is ``govcloud.adapters.failover_journal``; the drill is ``services.failover_drill``.
"""

from govcloud.adapters.failover_journal import (
    ClusterRow,
    FailoverJournal,
    Journal,
    RunRow,
    publish_atomic,
)
from govcloud.services.failover.backend import (
    SERVICE,
    Backend,
    FailoverFailed,
    lab_topology,
    to_core_snapshot,
)
from govcloud.services.failover.controller import (
    EXPORTED_DECISION,
    Controller,
    decision_dict,
    observe,
    reconcile_journal,
    status_payload,
)
from govcloud.services.failover.executor import Executor, RunResult
from govcloud.services.failover.failback import FailbackResult, failback

__all__ = [
    "EXPORTED_DECISION", "SERVICE", "Backend", "ClusterRow", "Controller", "Executor", "FailbackResult",
    "FailoverFailed", "FailoverJournal", "Journal", "RunResult", "RunRow", "decision_dict", "failback",
    "lab_topology", "observe", "publish_atomic", "reconcile_journal", "status_payload", "to_core_snapshot",
]
