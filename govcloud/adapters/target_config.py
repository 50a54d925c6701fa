"""Configuring migration targets with Ansible (the engine's ``ConfigurePort``): one ansible-runner run
of ``migrate-target.yml`` for every target of a wave, results read structurally per host."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from govcloud.adapters.ansible import RunSpec, Target, run_playbook, runner_kwargs
from govcloud.adapters.ports import TargetHost

PLAYBOOK = "migrate-target.yml"
MAX_FORKS = 25


@dataclass(frozen=True)
class AnsibleTargetConfig:
    """Where the playbooks and run artifacts live, and how to reach the targets (strict host keys)."""

    project_dir: Path
    state_dir: Path
    ssh_key: Path
    known_hosts: Path
    control_path_dir: Path | None = None

    def spec(self, targets: Sequence[TargetHost]) -> RunSpec:
        """The exact run (pure: tested as data)."""
        hosts = tuple(Target(name=t.name, address=t.address, region=t.region, site=t.site, department=t.department,
                             system=t.system, role="migrate",
                             vars=(("migrate_target_data", list(t.data)), ("migrate_target_system", t.system),
                                   ("migrate_target_packages", list(t.packages)),
                                   ("migrate_target_units", list(t.units)),
                                   ("migrate_target_role", t.ansible_role)))
                      for t in targets)
        return RunSpec(run_id=f"migrate-{uuid.uuid4().hex[:12]}", state_dir=self.state_dir,
                       project_dir=self.project_dir, playbook=PLAYBOOK, targets=hosts, ssh_key=self.ssh_key,
                       known_hosts=self.known_hosts, forks=max(10, min(MAX_FORKS, len(hosts))),
                       control_path_dir=self.control_path_dir)

    def has_role(self, name: str) -> bool:
        """Roles are looked up in the project's ``roles/`` (``playbooks/roles``), as the playbook does."""
        return bool(name) and "/" not in name and (self.project_dir / "roles" / name / "tasks").is_dir()

    def configure(self, targets: Sequence[TargetHost]) -> dict[str, str]:
        if not targets:
            return {}
        result = run_playbook(runner_kwargs(self.spec(targets)))
        failed = {h.name: f"Ansible run {result.run_id}: {h.name}: {h.failed_task}: {h.message}"
                  for h in result.failed_hosts}
        if result.status != "successful":
            seen = {h.name for h in result.hosts}
            for t in targets:
                if t.name not in seen:
                    failed.setdefault(t.name, f"Ansible run {result.run_id} ({result.status}) has no result for {t.name}")
        return failed
