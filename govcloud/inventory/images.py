"""Which Glance image each target boots: the region's ``images`` entry for its host's OS, never a default.

Why not a validate error: regions are chosen when a plan is made, so whether an image is missing is
known only for a planned system; preflight asks ``missing_images`` for each region a wave uses and
refuses the system, naming the host and the topology line to add (docs/inventory.md, "Target images").
Pure: the OS comes from the inventory, or from the legacy host's facts that the caller gathered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from govcloud.errors import Diagnostic
from govcloud.model import System, Topology, image_for
from govcloud.model.services import OsImage, OsSpec

__all__ = ["MissingImage", "image_for", "missing_images"]


@dataclass(frozen=True)
class MissingImage:
    """A host whose target cannot boot in the region: its OS is unknown, or the region maps no image for it."""

    system: str
    host: str
    os: OsSpec | None
    diagnostic: Diagnostic


def missing_images(systems: Iterable[System], topology: Topology, region: str,
                   facts: Mapping[str, OsSpec] | None = None) -> tuple[MissingImage, ...]:
    """Every host of ``systems`` with no image in ``region``, in system then host order.

    A host's declared ``os`` wins; ``facts`` (host name -> OS read from the legacy host) fill in the
    others. Raises KeyError when ``region`` is not in the topology.
    """
    where = topology.region(region)
    out = []
    for system in systems:
        for host in system.hosts:
            os = host.os or (facts or {}).get(host.name)
            if os is None:
                diag = Diagnostic(host.source, "", f"host {host.name} of system {system.id} declares no os and its "
                                  "facts give none: no image can be chosen for its target",
                                  'add os: {family: debian, version: "12"} (its real OS) to the host; '
                                  "govcloud has no default image")
            elif where.image_for(os) is None:
                declared = host.os is not None
                message = (f"host {host.name} of system {system.id} runs {os}"
                           f"{'' if declared else ' (from its facts)'}, for which region {region} has no image")
                diag = Diagnostic(os.source if declared else host.source, os.path if declared else "", message,
                                  _add_image_hint(where.images, region, os, str(where.source)))
            else:
                continue
            out.append(MissingImage(system.id, host.name, os, diag))
    return tuple(out)


def _add_image_hint(images: tuple[OsImage, ...], region: str, os: OsSpec, at: str) -> str:
    """The topology line to add, in the shape the region's ``images`` already has."""
    entry = f'"{os.version}": <Glance image name>'
    if any(i.family == os.family for i in images):
        return f"add {entry} under images.{os.family} of region {region} ({at})"
    if images:
        return f"add {os.family}: {{{entry}}} under images of region {region} ({at})"
    return f"add images: {{{os.family}: {{{entry}}}}} to region {region} ({at})"
