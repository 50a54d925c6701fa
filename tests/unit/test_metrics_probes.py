"""Site verdicts by quorum of the other sites' observations (pure), and the probe loop."""

from __future__ import annotations

from collections.abc import Sequence

from govcloud.services.probes import (
    ProbeLoop,
    ProbeResult,
    ProbeSnapshot,
    ProbeTarget,
    aggregate,
    probe_all,
    quorum,
)
from govcloud.services.exporter import view_of

SITES = (("gz-a", "gz"), ("gz-b", "gz"), ("st-a", "st"))


def snap(down_paths: set[tuple[str, str]], witness: bool = False) -> ProbeSnapshot:
    """Every ordered pair probed (and from the controller with ``witness``); ``down_paths`` failed."""
    sources = [s for s, _ in SITES] + (["controller"] if witness else [])
    results = tuple(ProbeResult(s, t, (s, t) not in down_paths, None if (s, t) in down_paths else 0.001, 1.0)
                    for s in sources for t, _ in SITES if s != t)
    return ProbeSnapshot(taken_at=1.0, regions=SITES, results=results)


def cut(site: str) -> set[tuple[str, str]]:
    """A datacentre outage as the lab makes it: nothing in or out, the controller included."""
    sources = [s for s, _ in SITES] + ["controller"]
    return {(s, t) for s in sources for t, _ in SITES if s != t and site in (s, t)}


def test_quorum_is_a_strict_majority() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4)] == [1, 2, 2, 3]


def test_all_up() -> None:
    h = aggregate(snap(set()))
    assert all(v.up for v in h.sites) and all(r.up for r in h.regions)
    assert h.site("gz-a") is not None and "reachable from all 2 observers" in h.site("gz-a").reason  # type: ignore[union-attr]


def test_site_loss_is_declared_by_both_other_sites() -> None:
    h = aggregate(snap(cut("gz-a")))
    a = h.site("gz-a")
    assert a is not None and a.up is False and a.unreachable_from == ("gz-b", "st-a")
    assert "2 of 2 observers cannot reach it" in a.reason
    assert h.site("gz-b").up and h.site("st-a").up  # type: ignore[union-attr]
    assert h.region("gz").up is True  # type: ignore[union-attr]


def test_partition_of_one_path_declares_nothing() -> None:
    h = aggregate(snap({("gz-a", "st-a"), ("st-a", "gz-a")}))
    assert all(v.up for v in h.sites)
    a = h.site("gz-a")
    assert a is not None and "a path, not the site" in a.reason and a.unreachable_from == ("st-a",)


def test_region_loss_needs_the_witness() -> None:
    """Without a witness the survivor cannot tell its own isolation from the others' loss: no verdict
    rather than a wrong one (st-a is not declared down by two observers that reach nobody)."""
    h = aggregate(snap(cut("gz-a") | cut("gz-b")))
    assert [v.up for v in h.sites] == [None, None, None]
    assert h.site("st-a").discounted == ("gz-a", "gz-b")  # type: ignore[union-attr]
    h = aggregate(snap(cut("gz-a") | cut("gz-b"), witness=True))
    assert h.site("gz-a").up is False and h.site("gz-b").up is False  # type: ignore[union-attr]
    assert h.site("st-a").up is True  # type: ignore[union-attr]
    assert h.region("gz").up is False and h.region("st").up is True  # type: ignore[union-attr]
    assert "every site (gz-a, gz-b) is down" in h.region("gz").reason  # type: ignore[union-attr]


def test_site_loss_and_partition_with_the_witness() -> None:
    h = aggregate(snap(cut("gz-a"), witness=True))
    assert [v.up for v in h.sites] == [False, True, True]
    assert "3 of 3 observers" in h.site("gz-a").reason  # type: ignore[union-attr]
    h = aggregate(snap({("gz-a", "st-a"), ("st-a", "gz-a")}, witness=True))
    assert all(v.up for v in h.sites)


def test_unobserved_site_has_no_verdict() -> None:
    s = ProbeSnapshot(taken_at=1.0, regions=(("gz-a", "gz"),), results=())
    h = aggregate(s)
    assert h.site("gz-a").up is None and h.region("gz").up is None  # type: ignore[union-attr]
    assert view_of(s) is not None and view_of(s).sites == (("gz-a", "gz", None),)  # type: ignore[union-attr]


class _Table:
    """A prober answering from a table: injects path failures the pure logic must judge (no I/O)."""

    def __init__(self, down: set[tuple[str, str]]) -> None:
        self.down = down

    def batch(self, source: str, targets: Sequence[ProbeTarget], timeout: float) -> list[ProbeResult]:
        out = []
        for target in targets:
            ok = (source, target.site) not in self.down
            out.append(ProbeResult(source, target.site, ok, 0.002 if ok else None, 5.0, "" if ok else "timeout"))
        return out


def test_probe_all_probes_every_ordered_pair_once() -> None:
    targets = [ProbeTarget(s, r, f"h-{s}", f"10.0.0.{i}") for i, (s, r) in enumerate(SITES)]
    snap_ = probe_all(_Table(cut("st-a")), targets, clock=lambda: 42.0)
    assert snap_.taken_at == 42.0 and len(snap_.results) == 6
    assert {(r.source, r.target) for r in snap_.results} == {(s, t) for s, _ in SITES for t, _ in SITES if s != t}
    assert aggregate(snap_).site("st-a").up is False  # type: ignore[union-attr]
    view = view_of(snap_)
    assert view is not None and ("st-a", "st", False) in view.sites and ("st", False) in view.regions


def test_probe_loop_keeps_the_last_snapshot_when_a_round_fails() -> None:
    calls = iter([snap(set()), RuntimeError("lab gone")])

    def round_() -> ProbeSnapshot:
        nxt = next(calls)
        if isinstance(nxt, Exception):
            raise nxt
        return nxt

    loop = ProbeLoop(round_, interval=0.1)
    first = loop.run_once()
    assert first is not None and loop.latest() is first
    assert loop.run_once() is None and loop.latest() is first and loop.failed_rounds == 1
