"""`govcloud ha`: the highly available PostgreSQL on Patroni and etcd (docs/ha.md).

``ha plan`` shows what the topology's ``ha.postgres`` makes (clusters, etcd rings, what the estate's
shape gives up) without touching anything; ``ha deploy`` prints that plan, then puts it on the
database hosts; ``ha status`` shows every member, ring member and site's answer for the name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode, InvalidInputError

if TYPE_CHECKING:
    from govcloud.failover.ha_status import ClusterView
    from govcloud.failover.shape import HaShape


_DNS_KEY = click.option("--dns-key", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_DNS_KEY",
                        default=None, help="TSIG key file for the zone's servers, 0600 [env GOVCLOUD_DNS_KEY; "
                                           "default <state dir>/dns/tsig.key].")
_KNOWN_HOSTS = click.option("--known-hosts", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_KNOWN_HOSTS",
                            required=True, help="known_hosts holding the database hosts' keys (strict checking) "
                                                "[env GOVCLOUD_KNOWN_HOSTS].")
_SSH_KEY = click.option("--ssh-key", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_SSH_KEY",
                        default=None, help="SSH key the database hosts authorise [env GOVCLOUD_SSH_KEY; default: the "
                                           "operator key].")


@click.group("ha")
def ha() -> None:
    """Highly available PostgreSQL: Patroni clusters and etcd rings from the topology's ha.postgres."""


@ha.command("plan")
@pass_app
def plan_cmd(app: AppContext) -> int:
    """The clusters, members and etcd rings the topology's ha.postgres makes, and what its shape gives up."""
    from govcloud.failover.shape import plan_shape
    from govcloud.inventory import load_inventory

    topology = load_inventory(app.root).topology
    ha_pg = topology.ha_postgres
    if ha_pg is None:
        raise InvalidInputError(f"{topology.source.file} declares no highly available PostgreSQL",
                                hint="add ha: {postgres: {name: pg, version: \"15\", scope: ..., hosts: {<site>: "
                                     "[{name: ..., address: ...}]}}} (docs/ha.md)")
    shape = plan_shape(topology, ha_pg)
    return _print_plan(app, shape)


def _print_plan(app: AppContext, shape: HaShape) -> int:
    if app.json:
        app.emit_json({
            "service": shape.service,
            "clusters": [{"scope": c.scope, "region": c.region, "role": c.role.value, "synchronous": c.synchronous,
                          "follows": c.follows,
                          "members": [{"name": h.name, "site": h.site, "address": h.address} for h in c.members],
                          "etcd": [{"name": m.name, "site": m.site, "client_url": m.client_url,
                                    "peer_url": m.peer_url} for m in c.etcd]} for c in shape.clusters],
            "degradations": [{"what": d.what, "consequence": d.consequence} for d in shape.degradations],
        })
        return ExitCode.OK
    app.echo(f"service {shape.service} follows the leader of {shape.primary.scope}")
    for c in shape.clusters:
        mode = "synchronous" if c.synchronous else ("standby of " + (c.follows or "?") if c.follows else "asynchronous")
        app.echo(f"cluster {c.scope} ({c.role.value}, region {c.region}, {mode})")
        for h in c.members:
            app.echo(f"  member {h.name:<20} {h.site:<8} {h.address}")
        for m in c.etcd:
            app.echo(f"  etcd   {m.name:<20} {m.site:<8} {m.client_url}")
    for d in shape.degradations:
        app.echo(f"gives up: {d}")
    if not shape.degradations:
        app.echo("gives up nothing: every site's loss keeps a quorum and a member to fail over to")
    return ExitCode.OK


@ha.command("deploy")
@_KNOWN_HOSTS
@_SSH_KEY
@_DNS_KEY
@click.option("--forks", type=click.IntRange(min=1, max=100), default=10, show_default=True,
              help="Database hosts Ansible configures at once.")
@pass_app
def deploy_cmd(app: AppContext, known_hosts: Path, ssh_key: Path | None, dns_key: Path | None, forks: int) -> int:
    """Deploy etcd and Patroni (PostgreSQL) onto the topology's database hosts, and publish the service name
    on the leader. Prints the plan first; a rerun changes nothing that is already right."""
    from govcloud.failover.shape import plan_shape
    from govcloud.inventory import load_inventory
    from govcloud.services.ha import HaDeployOptions, deploy, ha_of

    inventory = load_inventory(app.root)
    shape = plan_shape(inventory.topology, ha_of(inventory))
    if not app.json:
        _print_plan(app, shape)
    report = deploy(app.root, HaDeployOptions(known_hosts=known_hosts, ssh_key=ssh_key, dns_key=dns_key, forks=forks),
                    say=(lambda _m: None) if app.json else app.echo)
    if app.json:
        app.emit_json({"service": report.service, "leader": report.leader, "name_switched": report.name_switched,
                       "runs": [{"run_id": r.run_id, "changed": r.changed} for r in report.runs],
                       "clusters": [_cluster_json(c) for c in report.clusters]})
    else:
        app.echo(f"deployed: {report.service} -> {report.leader}")
    return ExitCode.OK


def _cluster_json(c: ClusterView) -> dict[str, Any]:
    return {"scope": c.scope, "asked": c.asked, "error": c.error,
            "members": [{"name": m.name, "role": m.role, "state": m.state, "host": m.host, "timeline": m.timeline,
                         "lag_bytes": m.lag_bytes} for m in c.members]}


@ha.command("status")
@_DNS_KEY
@pass_app
def status_cmd(app: AppContext, dns_key: Path | None) -> int:
    """Members, roles, timeline, lag and sync state of each cluster; each etcd member's health; what the
    service name resolves to in each site. Exit 1 when a cluster has no leader or a ring member is down."""
    from govcloud.services.ha import observe

    shape, view = observe(app.root, dns_key=dns_key)
    healthy = all(c.leader is not None for c in view.clusters) and all(e.healthy for e in view.etcd)
    if app.json:
        app.emit_json({"service": shape.service, "healthy": healthy,
                       "clusters": [_cluster_json(c) for c in view.clusters],
                       "etcd": [{"scope": e.scope, "member": e.member, "site": e.site, "healthy": e.healthy,
                                 "error": e.error} for e in view.etcd],
                       "names": [{"site": n.site, "addresses": list(n.addresses), "error": n.error}
                                 for n in view.names]})
        return ExitCode.OK if healthy else ExitCode.FAILURE
    for c in view.clusters:
        app.echo(f"cluster {c.scope}" + (f": {c.error}" if c.error else f" (asked {c.asked})"))
        for m in c.members:
            lag = "" if m.lag_bytes is None else f" lag {m.lag_bytes} B"
            app.echo(f"  {m.name:<20} {m.role:<15} {m.state:<10} {m.host:<15} tl {m.timeline}{lag}")
    for e in view.etcd:
        app.echo(f"etcd {e.scope:<12} {e.member:<20} {e.site:<8} " + ("healthy" if e.healthy else f"DOWN: {e.error}"))
    for n in view.names:
        app.echo(f"name {shape.service} in {n.site}: " + (", ".join(n.addresses) or f"no answer {n.error}".strip()))
    return ExitCode.OK if healthy else ExitCode.FAILURE


@ha.command("switchover")
@click.option("--to", "candidate", default=None, metavar="MEMBER",
              help="The member to hand the leadership to [default: the synchronous standby].")
@click.option("--yes", is_flag=True, help="Do not ask (writes pause for a few seconds while the leader changes).")
@_DNS_KEY
@pass_app
def switchover_cmd(app: AppContext, candidate: str | None, yes: bool, dns_key: Path | None) -> int:
    """Planned switchover of the primary cluster (Patroni's, zero loss in synchronous mode); the service name
    is moved to the new leader before the command returns. Exit 4 when not confirmed."""
    import sys

    from govcloud.errors import RefusedError
    from govcloud.services.ha_ops import switchover

    if not yes and (not sys.stdin.isatty()
                    or not click.confirm("Switch the primary cluster's leadership over? Writes pause meanwhile.",
                                         default=False)):
        raise RefusedError("switchover not confirmed", hint="pass --yes to skip the question")
    report = switchover(app.root, candidate, dns_key=dns_key)
    if app.json:
        app.emit_json({"scope": report.scope, "old_leader": report.old_leader, "new_leader": report.new_leader,
                       "address": report.address, "seconds": round(report.seconds, 3), "patroni": report.patroni})
    else:
        app.echo(f"{report.scope}: {report.old_leader} -> {report.new_leader}; the name answers {report.address} "
                 f"everywhere after {report.seconds:.1f} s ({report.patroni})")
    return ExitCode.OK


@ha.command("watch")
@click.option("--interval", type=click.FloatRange(min=0.05, max=10), default=0.1, show_default=True,
              help="Seconds between two looks at the leader key.")
@_DNS_KEY
@pass_app
def watch_cmd(app: AppContext, interval: float, dns_key: Path | None) -> int:
    """Keep the service name on the primary cluster's leader (a small watcher of Patroni's leader key in
    etcd; run one or more, e.g. one per site: they agree through etcd). Stops on SIGTERM or Ctrl-C."""
    import signal
    import threading

    from govcloud.services.ha_names import Look
    from govcloud.services.ha_ops import watch

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _s, _f: stop.set())

    def report(look: Look) -> None:
        what = "switched" if look.switched else ("claimed by another watcher" if look.lost_claim else "error")
        app.echo(f"{what}: {look.error or look.decision.why}", err=bool(look.error))

    watch(app.root, stop, dns_key=dns_key, interval=interval, on_look=report)
    return ExitCode.OK


@ha.command("drill")
@click.option("--scenario", required=True, metavar="SCENARIO",
              help="site-loss:<site> | partition:<site>/<site> (region-loss:<region> comes with ha promote).")
@_KNOWN_HOSTS
@_SSH_KEY
@click.option("--yes", is_flag=True, help="Do not ask (the drill cuts database hosts off each other for real).")
@_DNS_KEY
@pass_app
def drill_cmd(app: AppContext, scenario: str, known_hosts: Path, ssh_key: Path | None, yes: bool,
              dns_key: Path | None) -> int:
    """Break the database hosts' network on purpose (blackhole routes over SSH), keep a writer committing
    through the service name, let Patroni act, undo, and report RTO, acknowledged commits lost, and the
    most members that accepted writes at once. Exit 1 when an expectation failed; 4 when not confirmed."""
    import sys

    from govcloud.errors import RefusedError
    from govcloud.services.ha_drill import HaDrillOptions, parse_scenario, run_drill

    parsed = parse_scenario(app.root, scenario)  # exit 2 before anything is touched
    if not yes and (not sys.stdin.isatty()
                    or not click.confirm(f"Run the drill {parsed.text}? It cuts database hosts off for real.",
                                         default=False)):
        raise RefusedError(f"drill {parsed.text} not confirmed", hint="pass --yes to skip the question")
    report = run_drill(app.root, parsed.text, HaDrillOptions(known_hosts=known_hosts, ssh_key=ssh_key, dns_key=dns_key))
    met = report.max_writable <= 1 and not report.lost and (not report.leader_lost or report.rto_s is not None) \
        and (report.leader_lost or report.new_leader == report.old_leader)
    if app.json:
        from dataclasses import asdict

        app.emit_json({**asdict(report), "met": met})
    else:
        rto = f"RTO {report.rto_s:.2f} s" if report.rto_s is not None else "no failover"
        app.echo(f"{report.scenario}: {report.old_leader} -> {report.new_leader}; {rto}; {report.acked} commits "
                 f"acknowledged, {len(report.lost)} lost; longest pause {report.longest_pause_s:.2f} s; at most "
                 f"{report.max_writable} writable member(s); after: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(report.rejoined.items())))
        app.echo(f"report: {report.report_path}")
    return ExitCode.OK if met else ExitCode.FAILURE
