"""Which image each target boots, decided at preflight and kept in the journal for provisioning.

Why at preflight: a host's OS is its declared ``os`` or, when it declares none, what the legacy host's
``/etc/os-release`` says (read over SSH by the preflight, which connects anyway); the region's
``images`` map that OS to a Glance image (``govcloud.inventory.images``). A host with no image there
is a preflight problem naming the host and the topology line to add, an input problem (exit 2 when
the preflight finds no other kind). The choice is the fact
``target_images`` (server name -> image), so a resumed provisioning boots what the preflight checked.
``--image`` (``MigrateOptions.image``) overrides the mapping for every target.
"""

from __future__ import annotations

from collections.abc import Mapping

from govcloud.errors import Diagnostic
from govcloud.inventory.images import missing_images
from govcloud.model.services import OsSpec
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.work import Work

FACT = "target_images"
OS_FACT = "host_os"


def choose(ctx: RunContext, w: Work, facts: Mapping[str, OsSpec]) -> tuple[dict[str, str], list[Diagnostic]]:
    """(server name -> image, problems) for ``w``'s targets, from the override or the topology."""
    if ctx.options.image:
        return {s.name: ctx.options.image for s in w.specs}, []
    if ctx.topology is None:
        return {}, [Diagnostic(w.system.source, w.id, "no topology to choose the targets' images from",
                               "pass --image", cause="input")]
    problems: list[Diagnostic] = []
    for region in sorted({s.region for s in w.specs}):
        for m in missing_images([w.system], ctx.topology, region, facts):
            d = m.diagnostic
            problems.append(Diagnostic(d.location, w.id, d.message, d.hint, cause="input"))
    out: dict[str, str] = {}
    for spec in w.specs:
        host = w.host(spec.legacy_host)
        os = host.os or facts.get(host.name)
        image = ctx.topology.image_for(spec.region, os) if os is not None else None
        if image is not None:
            out[spec.name] = image
    return out, problems


def record(ctx: RunContext, w: Work, images: Mapping[str, str], facts: Mapping[str, OsSpec]) -> None:
    ctx.record(w.id, "preflight", FACT, dict(images))
    ctx.record(w.id, "preflight", OS_FACT, {h.name: str(h.os or facts[h.name]) for h in w.system.hosts
                                              if h.os is not None or h.name in facts})


def chosen(ctx: RunContext, w: Work) -> dict[str, str]:
    """The images the preflight chose (server name -> image); the override wins when given."""
    if ctx.options.image:
        return {s.name: ctx.options.image for s in w.specs}
    value = ctx.fact(w.id, FACT)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
