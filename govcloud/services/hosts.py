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
    hosts_file: Path | None = None  # hosts not in OpenStack (site infrastructure), see targets_from_file
    include_servers: bool = True
    control_path_dir: Path | None = None  # ssh ControlPath sockets (the lab closes those in <lab>/cp on down)


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


def targets_from_file(path: Path, inventory: Inventory) -> list[Target]:
    """Hosts outside OpenStack (site infrastructure: PostgreSQL, probes) from a YAML list.

    Each item: ``{name, address, site, role?, department?, system?, user?, port?, ssh_key?}``; the region is
    the site's. Raises InvalidInputError naming every bad item.
    """
    import yaml

    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"cannot read hosts file {path}: {exc}") from exc
    sites = {s.name: s.region for s in inventory.topology.sites}
    out: list[Target] = []
    errors: list[str] = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict) or not item.get("name") or not item.get("address") or item.get("site") not in sites:
            errors.append(f"{path}: item {i}: needs name, address and a site of the topology ({', '.join(sites)})")
            continue
        out.append(Target(name=str(item["name"]), address=str(item["address"]), region=sites[str(item["site"])],
                          site=str(item["site"]), department=str(item.get("department", "")), system=str(item.get("system", "")),
                          role=str(item.get("role", "infra")), user=str(item.get("user", "root")), port=int(item.get("port", 22)),
                          ssh_key=str(item.get("ssh_key", ""))))
    if errors or not isinstance(items, list):
        raise InvalidInputError("; ".join(errors) or f"{path}: expected a list of hosts")
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
    targets: list[Target] = []
    if options.include_servers:
        cloud = cloud or OpenStackCloud(inventory.topology, clouds_yaml=options.clouds_yaml)
        try:
            targets = targets_from_servers(cloud.servers(regions), inventory)
        finally:
            cloud.close()
    if options.hosts_file is not None:
        targets += targets_from_file(options.hosts_file, inventory)
    if not targets:
        raise InvalidInputError("no hosts to configure: no ACTIVE servers in govcloud's projects and no --hosts-file",
                                hint="provision the landing zones and boot servers first, or list site hosts in --hosts-file")
    run_id = f"hosts-{uuid.uuid4().hex[:12]}"
    spec = RunSpec(run_id=run_id, state_dir=state, project_dir=options.project_dir, playbook=options.playbook,
                   targets=tuple(targets), ssh_key=key, known_hosts=options.known_hosts,
                   baseline_root=options.baseline_root, limit=options.limit, forks=options.forks,
                   extravars=(("govcloud_precheck_controller_machine_id", controller_machine_id()),),
                   control_path_dir=options.control_path_dir)
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
