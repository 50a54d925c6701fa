"""The typed records of the facts passed between migration steps keep the journal's JSON shape, so
journals written before the records existed resume unchanged."""

from __future__ import annotations

import json

from govcloud.migrate.records import SyncedManifests, TargetStarts


def test_synced_manifests_write_and_read_the_two_facts_journals_always_held() -> None:
    written = SyncedManifests(source="a" * 64, target="differs:" + "b" * 64).to_facts()
    assert written == {"source_manifest": "a" * 64, "target_manifest": "differs:" + "b" * 64}
    stored = {k: json.loads(json.dumps(v)) for k, v in written.items()}  # through the journal's JSON
    assert SyncedManifests.from_facts(stored.get) == SyncedManifests("a" * 64, "differs:" + "b" * 64)


def test_synced_manifests_of_a_system_never_synced_are_empty() -> None:
    nothing: dict[str, object] = {}
    assert SyncedManifests.from_facts(nothing.get) == SyncedManifests("", "")


def test_target_starts_keep_the_target_start_fact_shape() -> None:
    old = json.loads('{"tmig-db-01-gz-a": 0, "tmig-db-01-st-a": 3}')  # as a cutover recorded it before
    starts = TargetStarts.from_fact(old)
    assert starts.to_fact() == old and TargetStarts.KEY == "target_start"
    assert starts.exit_status("tmig-db-01-st-a") == 3 and starts.exit_status("unknown") == 0
    assert TargetStarts.from_fact(None) == TargetStarts() and TargetStarts.from_fact([1]).to_fact() == {}
