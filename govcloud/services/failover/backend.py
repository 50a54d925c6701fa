"""What the failover controller needs from the replicated service, and the core's view of the lab's sites."""

from __future__ import annotations

from typing import Any, Protocol

from govcloud.adapters.postgres import PgTarget
from govcloud.errors import RuntimeFailure
from govcloud.failover.model import Observation, ProbeSnapshot
from govcloud.failover.reconcile import MemberObservation
from govcloud.model import Region, RegionRole, Resources, Site, Topology
from govcloud.services import probes as P

SERVICE = "pg"


class FailoverFailed(RuntimeFailure):
    """A runbook step failed; the journal keeps the run, and ``execute`` resumes it from that step."""




class Backend(Protocol):
    """What the controller needs from the replicated service and its sites (the lab implements it)."""

    service: str
    home_primary: str

    def sites(self) -> dict[str, str]: ...  # site -> region
    def members(self) -> list[str]: ...  # sites that run a member
    def sync_partner(self, primary: str) -> str | None: ...
    def target(self, site: str) -> PgTarget: ...
    def site_of(self, address: str) -> str | None: ...  # the member at this address, if any
    def probe_round(self) -> P.ProbeSnapshot: ...
    def discover_primary(self) -> tuple[str, int] | None: ...  # (site, epoch) of the writable member
    def observe_members(self) -> list[MemberObservation]: ...  # roles and epoch markers, every cycle
    def fence(self, site: str, epoch: int, reason: str) -> str: ...
    def promote(self, site: str, epoch: int) -> str: ...
    def repoint(self, site: str, primary: str) -> str: ...
    def set_sync(self, primary: str, standby: str | None) -> None: ...
    def rejoin(self, site: str, primary: str) -> str: ...
    def stop(self, site: str) -> None: ...
    def checkpoint_lsn(self, site: str) -> str: ...
    def primaries(self) -> list[str]: ...  # running writable members (ground truth, via the console)
    def healthy(self) -> dict[str, Any]: ...


def lab_topology(regions: dict[str, str]) -> Topology:
    """The decision core's topology for the lab's sites (first region with a name starting gz is primary)."""
    cap = Resources(1, 1, 1)
    names = sorted(set(regions.values()))
    return Topology(
        name="lab",
        regions=tuple(Region(r, RegionRole.PRIMARY if r == "gz" else RegionRole.BACKUP, r, f"Region{r.upper()}",
                             tuple(s for s, rr in sorted(regions.items()) if rr == r)) for r in names),
        sites=tuple(Site(s, r, s, cap) for s, r in sorted(regions.items())),
        replication=())


def to_core_snapshot(snap: P.ProbeSnapshot, topology: Topology) -> ProbeSnapshot:
    """The probes' snapshot as the pure core's: one observation per probe, on the controller's clock."""
    obs = tuple(Observation(observer=r.source, target=r.target, ok=r.ok, at=r.at, latency_s=r.latency_seconds,
                            service=r.service) for r in snap.results)
    return ProbeSnapshot(at=max([snap.taken_at, *(o.at for o in obs)]), topology=topology, observations=obs)
