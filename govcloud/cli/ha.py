"""`govcloud ha`: the highly available PostgreSQL on Patroni and etcd (docs/ha.md).

``ha plan`` shows what the topology's ``ha.postgres`` makes (clusters, etcd rings, what the estate's
shape gives up) without touching anything; deploying it and operating it follow (issue 31).
"""

from __future__ import annotations

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode, InvalidInputError


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
