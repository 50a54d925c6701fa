"""Composition: the real ports wired into a run's context, and the entry points the CLI calls.

This is the only module of the engine that names concrete adapters (OpenStack, SSH hosts, HTTP
health, the DNS name service, Ansible, fault injection); everything else is written against the ports.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from govcloud.adapters.faults import kill_at
from govcloud.adapters.health import HttpHealth
from govcloud.adapters.hosts import SSHHosts, public_key_line
from govcloud.adapters.journal import Journal, journal_path
from govcloud.adapters.ports import CloudPort, EndpointPort
from govcloud.adapters.target_config import AnsibleTargetConfig
from govcloud.errors import InvalidInputError, RefusedError
from govcloud.inventory import load_inventory
from govcloud.migrate.services import (
    Control,
    control_command,
    directories,
    service_order,
)
from govcloud.migrate.state import State
from govcloud.model import Host, Inventory
from govcloud.services.migration import driver
from govcloud.services.migration import rollback as rollback_step
from govcloud.services.migration.context import Keys, Ports, RunContext
from govcloud.services.migration.options import MigrateOptions, Reporter, RunSummary
from govcloud.services.migration.planguard import stale_record, vet_plan
from govcloud.services.migration.work import load_plan_file, wave_of, wave_work


def real_ports(root: Path, options: MigrateOptions, inventory: Inventory, target_key: Path | None) -> Ports:
    from govcloud.services.hosts import PLAYBOOKS
    from govcloud.services.provision import state_dir

    def open_cloud() -> CloudPort:
        from govcloud.adapters.openstack import OpenStackCloud

        return OpenStackCloud(inventory.topology, clouds_yaml=options.clouds_yaml)

    configure = AnsibleTargetConfig(project_dir=PLAYBOOKS, state_dir=state_dir(), ssh_key=target_key or Path(),
                                    known_hosts=options.known_hosts, control_path_dir=options.control_path_dir)
    from govcloud.services.names_app import DryRunNames, name_service

    endpoints: EndpointPort = (DryRunNames(inventory) if options.dry_run
                               else name_service(inventory, key_file=options.dns_key))
    return Ports(hosts=SSHHosts(), health=HttpHealth(), endpoints=endpoints,
                 configure=configure, open_cloud=open_cloud, fault=kill_at)


def open_run(root: Path, options: MigrateOptions, reporter: Reporter | None = None, *,
             inventory: Inventory | None = None, ports: Ports | None = None) -> RunContext:
    """The context of one run: plan, wave and work validated first (nothing is opened before)."""
    inventory = inventory or load_inventory(root)
    plan = load_plan_file(options.plan_file)
    wave = wave_of(plan, options.wave)
    work = wave_work(inventory, plan, wave, options.systems)
    legacy_key = target_key = None
    if not options.dry_run:
        from govcloud.services.provision import ops_key

        ops = ops_key()[0]
        legacy_key, target_key = options.ssh_key or ops, options.target_key or ops
    keys = Keys(legacy=legacy_key, target=target_key, target_public=public_key_line(target_key))
    ctx = RunContext(plan, wave, work, options, ports or real_ports(root, options, inventory, target_key), keys,
                     journal_path(root, options.journal), reporter, topology=inventory.topology)
    _journal_name_switches(ctx)
    return ctx


def _journal_name_switches(ctx: RunContext) -> None:
    """Every name switch (which servers took it, how long until all answered) becomes a journal fact:
    the exporter's ``govcloud_dns_*`` metrics are read from these."""
    from govcloud.services.names import NameService, SwitchReport

    names = ctx.ports.endpoints
    if not isinstance(names, NameService):
        return
    systems = {w.id for w in ctx.work}

    def record(report: SwitchReport) -> None:
        system = report.name.split(".", 1)[0]
        if system in systems:
            ctx.record(system, "dns", "switch", report.as_dict())

    names.on_switch = record


def run(root: Path, options: MigrateOptions, reporter: Reporter | None = None) -> RunSummary:
    """`migrate run` / `migrate resume`: the plan checked first (``planguard``), then the wave."""
    inventory = load_inventory(root)
    check = vet_plan(root, options, inventory)
    ctx = open_run(root, options, reporter, inventory=inventory)
    if options.dry_run:
        ctx.close()
        summary = driver.dry_run(ctx)
    else:
        ctx.stale_plan = stale_record(options, check)
        summary = driver.execute(ctx)
    summary.plan_warnings = check.warnings
    return summary


def dry_run(root: Path, options: MigrateOptions) -> RunSummary:
    """Each system's step plan, after the same plan check a run makes (nothing opened or written)."""
    inventory = load_inventory(root)
    check = vet_plan(root, options, inventory)
    ctx = open_run(root, options, inventory=inventory)
    try:
        summary = driver.dry_run(ctx)
    finally:
        ctx.close()
    summary.plan_warnings = check.warnings
    return summary


def cutover_one(root: Path, options: MigrateOptions, reporter: Reporter | None = None) -> RunSummary:
    """`migrate cutover SYSTEM`: a system waiting at `synced` (manual cutover) goes through cutover,
    verify and finish."""
    ctx = open_run(root, options, reporter)
    (w,) = ctx.work
    with Journal(ctx.journal_file) as j:
        st = j.status(ctx.plan.name, w.id)
    if st.state != State.SYNCED:
        ctx.close()
        raise InvalidInputError(f"{w.id} is {st.state.value}; `migrate cutover` needs a system at synced",
                                hint="run the wave with --manual-cutover first, or see `govcloud migrate status`")
    return driver.execute(ctx)


def rollback_one(root: Path, options: MigrateOptions, reporter: Reporter | None = None) -> RunSummary:
    """`migrate rollback SYSTEM`: legacy service back, endpoint back, target kept."""
    ctx = open_run(root, options, reporter)
    (w,) = ctx.work
    j = ctx.journal
    st = j.status(ctx.plan.name, w.id)
    if st.state not in (State.CUTOVER, State.VERIFIED, State.FAILED):
        ctx.close()
        raise InvalidInputError(f"{w.id} is {st.state.value}: only a system at cutover, verified or failed can be "
                                "rolled back", hint="a done system is decommissioned or migrated back by a new plan")
    started = time.monotonic()
    ctx.run_id = j.start_run(ctx.plan.name, ctx.wave.number, "rollback", options=options.as_record())
    summary = RunSummary(ctx.run_id, ctx.plan.name, ctx.wave.number)
    status = "failed"
    try:
        with j.wave_lock(ctx.plan.name, ctx.wave.number, ctx.run_id):
            rollback_step.run(ctx, w, reason="operator asked (govcloud migrate rollback)")
            status = "done"
    finally:
        summary.results = [driver.result(ctx, w.id)]
        j.finish_run(ctx.run_id, status)
        summary.seconds = time.monotonic() - started
        ctx.close()
    return summary


def decommission(root: Path, options: MigrateOptions) -> list[str]:
    """Remove the legacy copy of a done system: its services stopped (again), its data paths and
    service directories deleted, on every legacy host."""
    ctx = open_run(root, options)
    (w,) = ctx.work
    j = ctx.journal
    try:
        st = j.status(ctx.plan.name, w.id)
        if st.state != State.DONE:
            raise RefusedError(f"{w.id} is {st.state.value}: only a done system is decommissioned",
                               hint="finish its migration first (`govcloud migrate status`)")
        removed = []
        for h in w.system.hosts:
            paths = [*h.data, *directories(h)]
            ctx.ports.hosts.remove_paths(ctx.legacy_ep(w.system, h.name), paths, stop=stop_line(h))
            removed += [f"{h.name}:{p}" for p in paths]
        j.record_fact("decommission", ctx.plan.name, w.id, "decommission", "decommissioned_at",
                      datetime.now(UTC).isoformat())
        j.audit("migrate.decommission", w.id, "ok", {"removed": removed})
        return removed
    finally:
        ctx.close()


def stop_line(host: Host) -> str:
    """One shell line stopping every service of ``host`` in stop order ("" when it declares none)."""
    cmds = [c.command for s in service_order(host, Control.STOP) if (c := control_command(s, Control.STOP))]
    return "{ " + "; ".join(cmds) + "; }" if cmds else ""
