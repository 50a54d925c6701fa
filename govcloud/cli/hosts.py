"""`govcloud hosts configure`: the host baseline (playbooks/) on the department servers via ansible-runner."""

from __future__ import annotations

from pathlib import Path

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode


@click.group()
def hosts() -> None:
    """Department servers: configure their baseline."""


@hosts.command("configure")
@click.option("--limit", default="", metavar="PATTERN",
              help="Ansible host pattern: a host, or a group such as region_gz, site_gz_a, dept_amr, system_amr_djzc, role_db.")
@click.option("--known-hosts", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_KNOWN_HOSTS", required=True,
              help="known_hosts holding the servers' host keys (strict checking) [env GOVCLOUD_KNOWN_HOSTS].")
@click.option("--ssh-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Private key (default: the operator key govcloud put into the department keypairs).")
@click.option("--baseline-root", default="/", show_default=True, envvar="GOVCLOUD_BASELINE_ROOT",
              help="Write the baseline under this directory (the lab's hosts share /etc with the machine: use /srv/govcloud-root).")
@click.option("--region", "regions", multiple=True, type=click.Choice(["gz", "st"]), help="Only servers of this region.")
@click.option("--clouds-yaml", type=click.Path(dir_okay=False, path_type=Path), envvar="OS_CLIENT_CONFIG_FILE",
              help="clouds.yaml [env OS_CLIENT_CONFIG_FILE].")
@click.option("--hosts-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML list of hosts outside OpenStack (site infrastructure): name, address, site, role, ssh_key.")
@click.option("--no-servers", is_flag=True, help="Only the --hosts-file hosts, not the OpenStack servers.")
@click.option("--control-path-dir", type=click.Path(file_okay=False, path_type=Path), envvar="GOVCLOUD_SSH_CONTROL_PATH_DIR",
              default=None, help="Directory for ssh ControlPath sockets (default: the state dir) [env GOVCLOUD_SSH_CONTROL_PATH_DIR].")
@click.option("--forks", type=click.IntRange(min=1, max=100), default=10, show_default=True)
@pass_app
def configure_cmd(app: AppContext, limit: str, known_hosts: Path, ssh_key: Path | None, baseline_root: str,
                  regions: tuple[str, ...], clouds_yaml: Path | None, hosts_file: Path | None, no_servers: bool,
                  control_path_dir: Path | None, forks: int) -> int:
    """Run the baseline; a failing host is reported with its failed task while the others complete."""
    from govcloud.services.hosts import HostsOptions, configure, raise_for_failures

    result = configure(app.root, HostsOptions(known_hosts=known_hosts, ssh_key=ssh_key, limit=limit, baseline_root=baseline_root,
                                              regions=regions, clouds_yaml=clouds_yaml, forks=forks,
                                              hosts_file=hosts_file, include_servers=not no_servers,
                                              control_path_dir=control_path_dir))
    if app.json:
        app.emit_json({"run_id": result.run_id, "status": result.status, "changed": result.changed,
                       "artifacts": result.artifact_dir,
                       "hosts": [h.__dict__ for h in result.hosts]})
    else:
        from rich.table import Table

        table = Table(title=f"hosts configure {result.run_id}: {result.status}, changed={result.changed}")
        for col in ("host", "ok", "changed", "failed", "failed task"):
            table.add_column(col)
        for h in result.hosts:
            table.add_row(h.name, str(h.ok), str(h.changed), "unreachable" if h.unreachable else str(h.failed),
                          f"{h.failed_task}: {h.message}" if h.failed_task else "")
        app.console().print(table)
    raise_for_failures(result)
    return ExitCode.OK
