"""Ansible through ansible-runner: a pure builder of the exact ``ansible_runner.run`` kwargs, a thin executor.

The builder (kayobe's ``ansible.py`` style) returns data that unit tests assert on: the dynamic
inventory (groups per region, site, department, system, role), strict host-key SSH options, the
environment, and where artifacts go (the state dir, never the repository; ``suppress_env_files`` so
no environment or extravars land on disk). The executor reads results structurally from the runner's
stats and ``runner_on_failed`` / ``runner_on_unreachable`` events, never from stdout.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    """One host to configure, with where it sits in the topology."""

    name: str
    address: str
    region: str
    site: str = ""
    department: str = ""
    system: str = ""
    role: str = ""
    user: str = "root"
    port: int = 22
    ssh_key: str = ""  # overrides the run's key (infra hosts authorise the controller key, servers the ops key)
    vars: tuple[tuple[str, Any], ...] = ()  # extra host variables (e.g. a migration target's data paths)


@dataclass(frozen=True)
class RunSpec:
    """Everything one ansible-runner invocation needs; ``runner_kwargs`` turns it into kwargs."""

    run_id: str
    state_dir: Path
    project_dir: Path
    playbook: str
    targets: tuple[Target, ...]
    ssh_key: Path
    known_hosts: Path
    baseline_root: str = "/"
    limit: str = ""
    forks: int = 10
    extravars: tuple[tuple[str, Any], ...] = ()
    control_path_dir: Path | None = None
    ansible_bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)


def group_name(kind: str, value: str) -> str:
    """An Ansible-safe group name: ``site_gz_a``, ``dept_amr``."""
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', value)}"


def ssh_common_args(known_hosts: Path) -> str:
    """Strict host keys against the given known_hosts only (no global file, no agent keys)."""
    return " ".join([
        "-o StrictHostKeyChecking=yes",
        f"-o UserKnownHostsFile={shlex.quote(str(known_hosts))}",
        "-o GlobalKnownHostsFile=/dev/null",
        "-o IdentitiesOnly=yes",
        "-o BatchMode=yes",
    ])


def build_inventory(targets: Iterable[Target], *, ssh_key: Path, known_hosts: Path, baseline_root: str = "/") -> dict[str, Any]:
    """The dynamic inventory as ansible-runner takes it (a YAML-shaped dict).

    Groups: ``region_<r>``, ``site_<s>``, ``dept_<d>``, ``system_<id>``, ``role_<role>``. Each host gets
    the /etc/hosts peers of its department (``govcloud_hosts_entries``).
    """
    targets = sorted(targets, key=lambda t: t.name)
    peers: dict[str, list[dict[str, str]]] = {}
    for t in targets:
        peers.setdefault(t.department, []).append({"name": t.name, "address": t.address})
    hostvars: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[str]] = {}
    for t in targets:
        hostvars[t.name] = {
            "ansible_host": t.address,
            "ansible_port": t.port,
            "ansible_user": t.user,
            "govcloud_region": t.region,
            "govcloud_site": t.site,
            "govcloud_department": t.department,
            "govcloud_system": t.system,
            "govcloud_role": t.role,
            "govcloud_hosts_entries": peers.get(t.department, []),
        }
        if t.ssh_key:
            hostvars[t.name]["ansible_ssh_private_key_file"] = t.ssh_key
        hostvars[t.name].update(dict(t.vars))
        for kind, value in (("region", t.region), ("site", t.site), ("dept", t.department), ("system", t.system),
                            ("role", t.role)):
            if value:
                groups.setdefault(group_name(kind, value), []).append(t.name)
    children: dict[str, Any] = {g: {"hosts": {h: {} for h in sorted(hs)}} for g, hs in sorted(groups.items())}
    return {
        "all": {
            "hosts": hostvars,
            "vars": {
                "ansible_ssh_private_key_file": str(ssh_key),
                "ansible_ssh_common_args": ssh_common_args(known_hosts),
                "ansible_python_interpreter": "/usr/bin/python3",
                "govcloud_baseline_root": baseline_root,
            },
            "children": children,
        }
    }


def runner_kwargs(spec: RunSpec) -> dict[str, Any]:
    """The exact kwargs for ``ansible_runner.run`` (tested as data; the executor only passes them on)."""
    private = spec.state_dir / "ansible" / spec.run_id
    envvars = {
        "ANSIBLE_CONFIG": str(spec.project_dir / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(spec.project_dir / "roles"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(spec.control_path_dir or (spec.state_dir / "ansible" / "cp")),
        "ANSIBLE_LOCAL_TEMP": str(spec.state_dir / "ansible" / "tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        # ansible-runner runs ansible-playbook from PATH (its `binary` option would drop the playbook)
        "PATH": f"{spec.ansible_bin_dir}:/usr/local/bin:/usr/bin:/bin",
    }
    kwargs: dict[str, Any] = {
        "private_data_dir": str(private),
        "artifact_dir": str(spec.state_dir / "ansible" / "artifacts"),
        "ident": spec.run_id,
        "project_dir": str(spec.project_dir),
        "playbook": spec.playbook,
        "inventory": build_inventory(spec.targets, ssh_key=spec.ssh_key, known_hosts=spec.known_hosts,
                                     baseline_root=spec.baseline_root),
        "envvars": envvars,
        "extravars": dict(spec.extravars),
        "forks": spec.forks,
        "suppress_env_files": True,
        "quiet": True,
        "json_mode": False,
        "rotate_artifacts": 20,
        "timeout": 1800,
    }
    if spec.limit:
        kwargs["limit"] = spec.limit
    return kwargs


@dataclass(frozen=True)
class HostResult:
    name: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: bool = False
    failed_task: str = ""
    message: str = ""


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str  # ansible-runner's: successful | failed | timeout | canceled
    rc: int
    hosts: tuple[HostResult, ...]
    artifact_dir: str

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts)

    @property
    def failed_hosts(self) -> tuple[HostResult, ...]:
        return tuple(h for h in self.hosts if h.failed or h.unreachable)


def results_from(stats: Mapping[str, Mapping[str, int]] | None, events: Iterable[Mapping[str, Any]],
                 names: Iterable[str]) -> tuple[HostResult, ...]:
    """Per-host results from ``runner.stats`` and the failure events (pure, so it is tested as data)."""
    stats = stats or {}
    first_failure: dict[str, tuple[str, str]] = {}
    unreachable: dict[str, str] = {}
    for ev in events:
        kind = ev.get("event")
        data = ev.get("event_data") or {}
        host = str(data.get("host") or "")
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            res = data.get("res") or {}
            first_failure.setdefault(host, (str(data.get("task") or ""), str(res.get("msg") or res.get("stderr") or "")[:300]))
        elif kind == "runner_on_unreachable":
            res = data.get("res") or {}
            unreachable.setdefault(host, str(res.get("msg") or "")[:300])
    out = []
    for name in sorted(set(names)):
        task, msg = first_failure.get(name, ("", ""))
        out.append(HostResult(
            name,
            ok=int(stats.get("ok", {}).get(name, 0)),
            changed=int(stats.get("changed", {}).get(name, 0)),
            failed=int(stats.get("failures", {}).get(name, 0)),
            unreachable=name in unreachable or bool(stats.get("dark", {}).get(name, 0)),
            failed_task=task or ("(unreachable)" if name in unreachable else ""),
            message=msg or unreachable.get(name, ""),
        ))
    return tuple(out)


def run_playbook(kwargs: Mapping[str, Any]) -> RunResult:
    """Run ansible-runner with ``kwargs`` (from :func:`runner_kwargs`); results from stats and events."""
    import ansible_runner  # type: ignore[import-untyped]

    events: list[dict[str, Any]] = []

    def on_event(ev: dict[str, Any]) -> bool:
        if ev.get("event") in ("runner_on_failed", "runner_on_unreachable"):
            events.append(ev)
        return True  # keep the event in the artifacts too

    Path(kwargs["private_data_dir"]).mkdir(parents=True, exist_ok=True)
    control_dir = kwargs.get("envvars", {}).get("ANSIBLE_SSH_CONTROL_PATH_DIR")
    try:
        runner = ansible_runner.run(**kwargs, event_handler=on_event)
    finally:
        if control_dir:
            close_control_masters(Path(control_dir))
    scrub_command_artifact(Path(str(kwargs["artifact_dir"])) / str(kwargs["ident"]) / "command", set(kwargs.get("envvars", {})))
    stats = runner.stats or {}
    names = sorted({h for per in stats.values() if isinstance(per, dict) for h in per}
                   | {str((e.get("event_data") or {}).get("host")) for e in events})
    hosts = results_from(runner.stats, events, names)
    return RunResult(str(kwargs.get("ident", "")), str(runner.status), int(runner.rc or 0), hosts,
                     str(Path(str(kwargs.get("artifact_dir", ""))) / str(kwargs.get("ident", ""))))


def close_control_masters(control_dir: Path) -> int:
    """``ssh -O exit`` every ControlPersist master Ansible left in ``control_dir``.

    A run must not leave ssh processes behind: they would hold connections to hosts after
    govcloud returned (and keep a lab's guard route from being removed).
    """
    import subprocess

    closed = 0
    if not control_dir.is_dir():
        return closed
    for sock in control_dir.iterdir():
        if sock.is_socket():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "govcloud-host"],
                           capture_output=True, timeout=10, check=False)
            closed += 1
    return closed


def scrub_command_artifact(path: Path, keep: set[str]) -> None:
    """ansible-runner records the whole process environment in ``artifacts/<id>/command``; keep only the
    variables govcloud set, so an operator's exported OS_PASSWORD (or any other secret) never lands on disk."""
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    env = doc.get("env") or {}
    doc["env"] = {k: v for k, v in env.items() if k in keep}
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
