"""`hosts configure`: the host baseline on the department servers, through ansible-runner.

Targets come from the real servers in OpenStack (govcloud's managed projects, both regions) placed in
the topology: region from the cloud, site from the availability zone, department from the project,
system and role from the inventory host of the same name (or the server's ``govcloud:system`` /
``govcloud:role`` metadata). Run state goes under the state dir; the repository stays clean.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from govcloud.adapters.ansible import RunResult, RunSpec, Target, run_playbook, runner_kwargs
from govcloud.adapters.openstack import OpenStackCloud
from govcloud.errors import AnsibleError, InvalidInputError
from govcloud.inventory import load_inventory
from govcloud.model import Inventory
from govcloud.services.provision import ops_key, state_dir

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


@dataclass(frozen=True)
class HostsOptions:
    known_hosts: Path
    ssh_key: Path | None = None  # default: the operator key in the state dir
    limit: str = ""
    baseline_root: str = "/"
    regions: tuple[str, ...] = ()
    clouds_yaml: Path | None = None
    forks: int = 10
    playbook: str = "baseline.yml"
    project_dir: Path = PLAYBOOKS
    extra_targets: tuple[Target, ...] = ()  # hosts not in OpenStack (tests, infra hosts)


def targets_from_servers(servers: list[dict[str, object]], inventory: Inventory) -> list[Target]:
    """Place each server in the topology (pure)."""
    by_az = {s.availability_zone: s.name for s in inventory.topology.sites}
    hosts = {h.name: (sysm.id, h.role) for sysm in inventory.systems for h in sysm.hosts}
    out = []
    for s in servers:
        name = str(s["name"])
        meta = s.get("metadata") or {}
        assert isinstance(meta, dict)
        system, role = hosts.get(name, (str(meta.get("govcloud:system", "")), str(meta.get("govcloud:role", ""))))
        if not s.get("address"):
            continue
        out.append(Target(name=name, address=str(s["address"]), region=str(s["region"]),
                          site=by_az.get(str(s.get("availability_zone", "")), ""), department=str(s.get("department", "")),
                          system=system, role=role))
    return out


def controller_machine_id() -> str:
    try:
        return Path("/etc/machine-id").read_text().strip()
    except OSError:
        return ""


def configure(root: Path, options: HostsOptions, *, cloud: OpenStackCloud | None = None) -> RunResult:
    """Run the baseline on every target (or ``options.limit``); per-host results, failures included."""
    inventory = load_inventory(root)
    if not options.known_hosts.is_file():
        raise InvalidInputError(f"known_hosts file {options.known_hosts} not found",
                                hint="pass --known-hosts with the hosts' keys (the lab writes <lab>/known_hosts)")
    state = state_dir()
    key = options.ssh_key or ops_key(state)[0]
    regions = options.regions or tuple(r.name for r in inventory.topology.regions)
    cloud = cloud or OpenStackCloud(inventory.topology, clouds_yaml=options.clouds_yaml)
    try:
        targets = targets_from_servers(cloud.servers(regions), inventory)
    finally:
        cloud.close()
    targets += list(options.extra_targets)
    if not targets:
        raise InvalidInputError("no hosts to configure: no ACTIVE servers in govcloud's projects",
                                hint="provision the landing zones and boot servers first")
    run_id = f"hosts-{uuid.uuid4().hex[:12]}"
    spec = RunSpec(run_id=run_id, state_dir=state, project_dir=options.project_dir, playbook=options.playbook,
                   targets=tuple(targets), ssh_key=key, known_hosts=options.known_hosts,
                   baseline_root=options.baseline_root, limit=options.limit, forks=options.forks,
                   extravars=(("govcloud_precheck_controller_machine_id", controller_machine_id()),))
    return run_playbook(runner_kwargs(spec))


def raise_for_failures(result: RunResult) -> None:
    """AnsibleError naming every failed host and its failed task (the others completed)."""
    run_id = result.run_id
    if result.failed_hosts:
        raise AnsibleError(
            f"run {run_id}: {len(result.failed_hosts)} host(s) failed: " + "; ".join(
                f"{h.name}: {h.failed_task}: {h.message}" for h in result.failed_hosts),
            hint=f"fix the host(s) and run again (the other hosts completed); events in {result.artifact_dir}",
            run_id=run_id, failed=tuple(h.name for h in result.failed_hosts))
