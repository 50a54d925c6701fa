"""Issue 13's pure parts: replication positions, the data comparison after cutover, balanced streams."""

from __future__ import annotations

import pytest

from govcloud.migrate.dataverify import TableDigest, compare_tables, missing_commits
from govcloud.migrate.replication import (
    PositionError,
    lag_bytes,
    mariadb_caught_up,
    parse_gtid,
    parse_lsn,
    pg_caught_up,
    rollback_check,
)
from govcloud.migrate.streams import split_by_size


def test_lsns_compare_as_64_bit_numbers() -> None:
    assert parse_lsn("0/16B3748") == 0x16B3748
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")  # not a string comparison
    assert pg_caught_up("16/B374D848", "16/B374D848") and not pg_caught_up("16/B374D848", "16/B374D847")
    assert lag_bytes("1/10", "1/0") == 16 and lag_bytes("1/0", "1/10") == 0
    with pytest.raises(PositionError, match="not a PostgreSQL WAL location"):
        parse_lsn("16B374D848")


def test_gtids_compare_per_domain() -> None:
    assert parse_gtid("0-1-1042,1-2-7") == {0: 1042, 1: 7}
    assert mariadb_caught_up("0-1-1042", "0-2-1042")  # the server id does not order transactions
    assert not mariadb_caught_up("0-1-1042,1-2-7", "0-1-1042")  # domain 1 not replayed yet
    assert mariadb_caught_up("0-1-5", "0-1-9,3-1-1")
    assert mariadb_caught_up("", "0-1-9")
    with pytest.raises(PositionError, match="not a MariaDB GTID"):
        parse_gtid("0-1")


def test_rollback_refuses_to_drop_writes_the_target_accepted() -> None:
    assert rollback_check(0, False).allowed
    refused = rollback_check(3, False)
    assert not refused.allowed and "accepted 3 write(s) after cutover" in refused.reason
    assert rollback_check(3, True).allowed


def test_tables_compare_by_rows_and_checksum_and_the_ledger_by_id() -> None:
    source = {"orders": TableDigest(10, "a"), "people": TableDigest(5, "b"), "gone": TableDigest(1, "c")}
    same = compare_tables("shop", source, dict(source))
    assert same.ok and same.summary() == "3 table(s), 16 row(s) equal"
    target = {"orders": TableDigest(9, "a"), "people": TableDigest(5, "x"), "extra": TableDigest(0, "d")}
    verdict = compare_tables("shop", source, target)
    assert not verdict.ok
    assert verdict.problems == ("shop.extra: on the target only", "shop.gone: missing on the target",
                                "shop.orders: 10 row(s) on the source, 9 on the target",
                                "shop.people: same row count (5), different content")
    assert missing_commits([1, 2, 3, 3, 5], [1, 3, 4]) == [2, 5]


def test_streams_are_balanced_by_size_and_keep_the_tree_order() -> None:
    files = [(f"d/{i:03d}", size) for i, size in enumerate([100, 1, 1, 50, 50, 1, 98, 2])]
    streams = split_by_size(files, 3)
    assert sorted(p for s in streams for p in s.paths) == sorted(p for p, _ in files)  # each file exactly once
    assert sorted(s.bytes for s in streams) == [101, 101, 101]
    for s in streams:
        assert list(s.paths) == sorted(s.paths)  # the tree's order inside a stream
    assert [s.paths for s in split_by_size(files[:2], 8)] == [("d/000",), ("d/001",)]  # no empty streams
    assert split_by_size([], 4) == []
    with pytest.raises(ValueError):
        split_by_size(files, 0)
