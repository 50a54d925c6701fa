"""The migration engine: a wave's systems through preflight, provisioning, warm sync, cutover, verify.

One module per step (``preflight``, ``targets``, ``sync``, ``cutover``, ``verify``, ``rollback``,
``finish``), each a function of a :class:`~govcloud.services.migration.context.RunContext` that holds
the journal, the ports to the outside world (``govcloud.adapters.ports``) and the options; the
``driver`` runs them from the journal's state; ``kinds`` / ``files`` are how data moves (``datakind``
is the shape of a kind); ``app`` wires the real adapters in. docs/architecture/migration-engine.md is the map.

Every step writes its intent to the journal before its side effect and its outcome after it, so a
process killed anywhere resumes correctly. Fault injection: ``GOVCLOUD_FAULT_KILL_AT=<point>[@<system>]``
(``govcloud.migrate.steps.CRASH_POINTS``).
"""

from govcloud.services.migration.app import (
    cutover_one,
    decommission,
    dry_run,
    open_run,
    rollback_one,
    run,
)
from govcloud.services.migration.commands import status_rows, system_log
from govcloud.services.migration.options import (
    MigrateOptions,
    NullReporter,
    Reporter,
    RunSummary,
    SystemResult,
    options_of_last_run,
    resume_options,
    system_options,
)

__all__ = ["MigrateOptions", "NullReporter", "Reporter", "RunSummary", "SystemResult", "cutover_one", "decommission",
           "dry_run", "open_run", "options_of_last_run", "resume_options", "rollback_one", "run", "status_rows",
           "system_log", "system_options"]
