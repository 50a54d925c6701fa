"""The service map: compare-and-swap switching, atomic file, history, clear errors."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from govcloud.adapters.servicemap import HISTORY_KEPT, ServiceMap, default_path
from govcloud.errors import ServiceMapError


def test_switch_creates_then_moves_with_history(tmp_path: Path) -> None:
    sm = ServiceMap(default_path(tmp_path))
    assert sm.lookup("zsj-idaas") is None
    a = sm.switch("zsj-idaas", address="10.240.16.15", port=8080, site="legacy", expect="", reason="inventory")
    assert (a.version, a.url) == (1, "http://10.240.16.15:8080")
    b = sm.switch("zsj-idaas", address="10.244.0.7", port=8080, site="gz-a", expect="10.240.16.15", reason="cutover")
    assert b.version == 2 and b.site == "gz-a"
    assert [h["address"] for h in b.history] == ["10.240.16.15"]
    assert sm.lookup("zsj-idaas") == b
    assert (default_path(tmp_path).stat().st_mode & 0o777) == 0o644
    assert (default_path(tmp_path).parent.stat().st_mode & 0o777) == 0o700


def test_switch_to_current_target_is_a_no_op(tmp_path: Path) -> None:
    sm = ServiceMap(tmp_path / "m.json")
    sm.switch("s", address="10.0.0.1", port=80)
    again = sm.switch("s", address="10.0.0.1", port=80, expect="10.9.9.9")  # a rerun after a crash
    assert again.version == 1


def test_lost_race_changes_nothing(tmp_path: Path) -> None:
    sm = ServiceMap(tmp_path / "m.json")
    sm.switch("s", address="10.0.0.1", port=80)
    before = (tmp_path / "m.json").read_bytes()
    with pytest.raises(ServiceMapError, match=r"points at 10\.0\.0\.1 .* not 10\.0\.0\.2 as expected"):
        sm.switch("s", address="10.0.0.3", port=80, expect="10.0.0.2")
    assert (tmp_path / "m.json").read_bytes() == before


def test_history_is_bounded(tmp_path: Path) -> None:
    sm = ServiceMap(tmp_path / "m.json")
    for i in range(HISTORY_KEPT + 5):
        e = sm.switch("s", address=f"10.0.0.{i}", port=80)
    assert len(e.history) == HISTORY_KEPT


def test_corrupt_file_is_named(tmp_path: Path) -> None:
    p = tmp_path / "m.json"
    p.write_text("{not json")
    with pytest.raises(ServiceMapError, match="m.json: not valid JSON"):
        ServiceMap(p).all()
    p.write_text(json.dumps({"version": 99, "services": {}}))
    with pytest.raises(ServiceMapError, match="not a govcloud service map"):
        ServiceMap(p).lookup("s")


def _contender(path: str, addr: str, q: "multiprocessing.Queue[str]") -> None:
    try:
        ServiceMap(Path(path)).switch("db", address=addr, port=5432, expect="10.0.0.1")
        q.put(f"won {addr}")
    except ServiceMapError:
        q.put(f"lost {addr}")


def test_two_processes_racing_cannot_both_win(tmp_path: Path) -> None:
    """Two promoters that both saw 10.0.0.1: exactly one switch happens (real processes, real flock)."""
    p = tmp_path / "m.json"
    ServiceMap(p).switch("db", address="10.0.0.1", port=5432)
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(str(p), f"10.0.1.{i}", q)) for i in range(4)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(30)
    results = sorted(q.get(timeout=5) for _ in procs)
    assert sum(r.startswith("won") for r in results) == 1, results
    assert ServiceMap(p).lookup("db").version == 2  # type: ignore[union-attr]
