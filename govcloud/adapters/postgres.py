"""PostgreSQL over the network with psycopg 3: the replication monitor, write checks, and the drill's writer.

Connections are short and bounded: a plain TCP connect with a sub-second timeout goes first (libpq's
own ``connect_timeout`` cannot go below 2 s), then libpq with TCP keepalives and ``tcp_user_timeout``
so a connection into a cut datacentre fails within seconds instead of hanging. Passwords are passed
as connection parameters and never logged (``safe_dsn`` is what messages show).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from govcloud.errors import RuntimeFailure

log = logging.getLogger(__name__)

DRILL_TABLE = "govcloud_drill_writes"
META_TABLE = "govcloud_meta"


class PostgresError(RuntimeFailure):
    """A PostgreSQL member could not be reached or a statement failed; names the member, never the password."""


@dataclass(frozen=True)
class PgTarget:
    """Where to reach one member, and as whom (``password`` is never rendered)."""

    host: str
    port: int
    user: str
    dbname: str
    password: str = field(default="", repr=False)

    def safe_dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


def tcp_open(host: str, port: int, timeout: float) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextmanager
def connect(target: PgTarget, *, precheck_s: float = 0.5, autocommit: bool = True) -> Iterator[Any]:
    """A psycopg connection to ``target`` (PostgresError when it cannot be reached or refuses)."""
    import psycopg

    if not tcp_open(target.host, target.port, precheck_s):
        raise PostgresError(f"{target.safe_dsn()}: no TCP connection within {precheck_s:g} s",
                            hint="is the member running and its site reachable? `govcloud failover status`")
    try:
        conn = psycopg.connect(host=target.host, port=target.port, user=target.user, dbname=target.dbname,
                               password=target.password, connect_timeout=2, autocommit=autocommit,
                               keepalives=1, keepalives_idle=1, keepalives_interval=1, keepalives_count=2,
                               tcp_user_timeout=2000, application_name="govcloud")
    except psycopg.Error as exc:
        raise PostgresError(f"{target.safe_dsn()}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",
                            hint="check the member's log under its host's /srv/pg") from exc
    try:
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class ReplicationRow:
    """One standby as its primary sees it (``pg_stat_replication``)."""

    name: str  # application_name
    state: str
    sync_state: str
    lag_bytes: int | None
    lag_seconds: float | None


@dataclass(frozen=True)
class MemberState:
    """What one member says about itself and (when primary) its standbys."""

    in_recovery: bool
    lsn: str
    replication: tuple[ReplicationRow, ...] = ()


def member_state(target: PgTarget) -> MemberState:
    """Role, WAL position and (on a primary) the replication rows, in one short connection."""
    import psycopg

    with connect(target) as c:
        try:
            row = c.execute("SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
                            "THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text").fetchone()
            rec, lsn = row if row is not None else (True, "")
            rows: tuple[ReplicationRow, ...] = ()
            if not rec:
                rows = tuple(ReplicationRow(str(n), str(s), str(ss), None if b is None else int(b),
                                            None if t is None else float(t))
                             for n, s, ss, b, t in c.execute(
                                 "SELECT application_name, state, sync_state, "
                                 "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, "
                                 "extract(epoch FROM replay_lag)::float8 FROM pg_stat_replication "
                                 "ORDER BY application_name").fetchall())
        except psycopg.Error as exc:
            raise PostgresError(f"{target.safe_dsn()}: {exc}") from exc
    return MemberState(bool(rec), str(lsn), rows)


def write_check(target: PgTarget, key: str, value: str) -> float:
    """A real write through ``target`` read back in the same session; returns the seconds it took."""
    import psycopg

    t0 = time.monotonic()
    with connect(target) as c:
        try:
            c.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (k text PRIMARY KEY, v text NOT NULL, "
                      "at timestamptz NOT NULL DEFAULT clock_timestamp())")
            c.execute(f"INSERT INTO {META_TABLE} (k, v) VALUES (%s, %s) ON CONFLICT (k) DO UPDATE "
                      "SET v = excluded.v, at = clock_timestamp()", (key, value))
            got = c.execute(f"SELECT v FROM {META_TABLE} WHERE k = %s", (key,)).fetchone()
        except psycopg.Error as exc:
            raise PostgresError(f"{target.safe_dsn()}: write check failed: {exc}",
                                hint="is it still in recovery, or read-only?") from exc
    if got is None or got[0] != value:
        raise PostgresError(f"{target.safe_dsn()}: wrote {key}={value!r} but read back {got!r}")
    return time.monotonic() - t0


@dataclass
class Ack:
    id: int
    at: float  # unix time the commit was acknowledged
    site: str


class Writer:
    """Keeps committing numbered rows through the service endpoint; records every acknowledged commit.

    ``endpoint()`` is asked before every (re)connect, so the writer follows the service's name. A commit
    counts only once ``execute`` returned (autocommit): that is what a client was told.
    """

    def __init__(self, run: str, endpoint: Callable[[], tuple[PgTarget, str] | None], *,
                 interval_s: float = 0.02) -> None:
        self.run = run
        self.endpoint = endpoint
        self.interval_s = interval_s
        self.acks: list[Ack] = []
        self.errors: list[tuple[float, str]] = []
        self._next = 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def prepare(self, target: PgTarget) -> None:
        with connect(target) as c:
            c.execute(f"CREATE TABLE IF NOT EXISTS {DRILL_TABLE} (run text NOT NULL, id bigint NOT NULL, "
                      "site text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (run, id))")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="govcloud-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def acked(self) -> list[Ack]:
        with self._lock:
            return list(self.acks)

    def first_ack_after(self, t: float, site: str | None = None) -> Ack | None:
        return next((a for a in self.acked() if a.at >= t and (site is None or a.site == site)), None)

    def _loop(self) -> None:
        import psycopg

        while not self._stop.is_set():
            ep = self.endpoint()
            if ep is None:
                self._stop.wait(0.1)
                continue
            target, site = ep
            try:
                with connect(target, precheck_s=0.3) as c:
                    while not self._stop.is_set():
                        cur = self.endpoint()
                        if cur is None or cur[0].host != target.host:
                            break  # the endpoint moved: follow it
                        n = self._next
                        c.execute(f"INSERT INTO {DRILL_TABLE} (run, id, site) VALUES (%s, %s, %s)", (self.run, n, site))
                        with self._lock:
                            self.acks.append(Ack(n, time.time(), site))
                        self._next += 1
                        self._stop.wait(self.interval_s)
            except (PostgresError, psycopg.Error) as exc:
                self._next += 1  # an unacknowledged id may or may not have committed: never reuse it
                self.errors.append((time.time(), f"{site}: {str(exc).strip()[:160]}"))
                self._stop.wait(0.05)


def present_ids(target: PgTarget, run: str) -> set[int]:
    """The drill rows of ``run`` that ``target`` has (to count acknowledged commits lost)."""
    import psycopg

    with connect(target) as c:
        try:
            return {int(r[0]) for r in c.execute(f"SELECT id FROM {DRILL_TABLE} WHERE run = %s", (run,)).fetchall()}
        except psycopg.Error as exc:
            raise PostgresError(f"{target.safe_dsn()}: cannot read the drill's rows: {exc}") from exc


def targets_from(conninfo: Mapping[str, Any]) -> PgTarget:
    return PgTarget(host=str(conninfo["host"]), port=int(conninfo["port"]), user=str(conninfo["user"]),
                    dbname=str(conninfo["dbname"]), password=str(conninfo.get("password", "")))
