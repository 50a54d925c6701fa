"""The frozen ``ha.postgres`` of a checked topology (docs/ha.md), defaults filled in once, here."""

from __future__ import annotations

from typing import Any

from govcloud.inventory.yamlio import YamlDocument
from govcloud.model.ha import (
    DEFAULT_BASE_DIR,
    DEFAULT_PATRONI_VENV,
    DEFAULT_PG_PORT,
    Accelerator,
    DbHost,
    HaPostgres,
    PatroniSettings,
)


def build_ha_postgres(topology: YamlDocument) -> HaPostgres | None:
    """``ha.postgres`` as a model (None when the topology declares none); the document is schema-valid."""
    pg: dict[str, Any] | None = (topology.data.get("ha") or {}).get("postgres")
    if pg is None:
        return None
    hosts = tuple(DbHost(site, h["name"], h["address"], topology.locate(("ha", "postgres", "hosts", site, i)))
                  for site, listed in pg["hosts"].items() for i, h in enumerate(listed))
    p: dict[str, Any] = pg.get("patroni") or {}
    base = PatroniSettings()
    patroni = PatroniSettings(
        ttl_s=int(p.get("ttl_s", base.ttl_s)), loop_wait_s=int(p.get("loop_wait_s", base.loop_wait_s)),
        retry_timeout_s=int(p.get("retry_timeout_s", base.retry_timeout_s)),
        maximum_lag_on_failover=int(p.get("maximum_lag_on_failover", base.maximum_lag_on_failover)),
        wal_sender_timeout_s=int(p.get("wal_sender_timeout_s", base.wal_sender_timeout_s)),
        failsafe_mode=bool(p.get("failsafe_mode", base.failsafe_mode)))
    a: dict[str, Any] = pg.get("accelerator") or {}
    accel = Accelerator(enabled=bool(a.get("enabled", True)), confirm_s=float(a.get("confirm_s", Accelerator.confirm_s)))
    return HaPostgres(pg["name"], str(pg["version"]), pg["scope"], hosts, int(pg.get("port", DEFAULT_PG_PORT)),
                      str(pg.get("base_dir", DEFAULT_BASE_DIR)).rstrip("/"),
                      str(pg.get("patroni_venv", DEFAULT_PATRONI_VENV)).rstrip("/"),
                      patroni, accel, topology.locate(("ha", "postgres")))
