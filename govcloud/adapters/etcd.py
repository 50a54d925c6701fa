"""Patroni's etcd, read and written through etcd's own v3 JSON gateway (``/v3/kv/range``, ``/v3/kv/txn``).

Why the gateway and not ``etcdctl`` on a host or a gRPC client library: the controller reaches every
ring member's client URL, the gateway is part of etcd 3.4 itself, and the two calls the name's
watcher needs (a linearizable read, a transaction with compares) are one POST each. Reads are
linearizable (etcd's default): a member cut off in a minority refuses them, so a watcher never acts on
a leader key that a quorum no longer holds. Keys and values travel base64-encoded, revisions as
decimal strings (the gateway's JSON for int64).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from govcloud.errors import RuntimeFailure
from govcloud.failover.follow import LeaderKey, NameRecord

TIMEOUT_S = 0.5  # one request to one member: a member without quorum holds a read until this


class EtcdError(RuntimeFailure):
    """No member of the ring answered (or all refused: no quorum)."""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def leader_key(scope: str) -> str:
    return f"/service/{scope}/leader"


def record_key(scope: str) -> str:
    return f"/service/{scope}/govcloud-name"


class EtcdGateway:
    def __init__(self, client_urls: Sequence[str], timeout: float = TIMEOUT_S) -> None:
        self.client_urls = tuple(client_urls)
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._first = 0  # the member that answered last is asked first (a cut-off one costs a timeout once)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        errors = []
        n = len(self.client_urls)
        for i in range(n):
            index = (self._first + i) % n
            url = self.client_urls[index]
            req = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    doc: dict[str, Any] = json.loads(resp.read(1 << 20).decode())
                self._first = index
                return doc
            except urllib.error.HTTPError as exc:  # e.g. 503 from a member without quorum
                errors.append(f"{url}: HTTP {exc.code} {exc.read(300).decode('utf-8', 'replace').strip()}")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
        raise EtcdError(f"no etcd member answered {path}: " + "; ".join(errors),
                        hint="check the ring with `govcloud ha status`; a member without quorum refuses reads")

    def _get(self, key: str) -> dict[str, Any] | None:
        kvs = self._post("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        return kvs[0] if kvs else None

    def leader(self, scope: str) -> LeaderKey | None:
        kv = self._get(leader_key(scope))
        if kv is None:
            return None
        return LeaderKey(_unb64(kv.get("value", "")), int(kv.get("create_revision", 0)), int(kv.get("lease", 0)))

    def record(self, scope: str) -> NameRecord | None:
        kv = self._get(record_key(scope))
        if kv is None:
            return None
        doc = json.loads(_unb64(kv.get("value", "")))
        return NameRecord(int(doc["revision"]), doc.get("previous"), str(doc["address"]), bool(doc["done"]),
                          int(kv.get("mod_revision", 0)))

    def claim(self, scope: str, leader: LeaderKey, record: NameRecord) -> bool:
        """Write ``record`` (not done) only if the leader key is still that election's and the record
        still the one read (absent when ``record.mod_revision`` is 0): True when this call won."""
        rec = {"key": _b64(record_key(scope))}
        compare = [{"key": _b64(leader_key(scope)), "result": "EQUAL", "target": "CREATE",
                    "create_revision": str(leader.create_revision)},
                   {**rec, "result": "EQUAL", "target": "MOD", "mod_revision": str(record.mod_revision)}
                   if record.mod_revision else {**rec, "result": "EQUAL", "target": "VERSION", "version": "0"}]
        return self._txn(compare, scope, _encode(record))

    def finish(self, scope: str, record: NameRecord) -> bool:
        """Mark the claimed ``record`` done, only if the record is still exactly that claim."""
        compare = [{"key": _b64(record_key(scope)), "result": "EQUAL", "target": "VALUE",
                    "value": _b64(_encode(NameRecord(record.revision, record.previous, record.address, False)))}]
        return self._txn(compare, scope, _encode(NameRecord(record.revision, record.previous, record.address, True)))

    def _txn(self, compare: list[dict[str, str]], scope: str, value: str) -> bool:
        body = {"compare": compare,
                "success": [{"request_put": {"key": _b64(record_key(scope)), "value": _b64(value)}}], "failure": []}
        return bool(self._post("/v3/kv/txn", body).get("succeeded", False))


def _encode(record: NameRecord) -> str:
    """The record's stored form: fixed key order, so that a finish can compare it byte for byte."""
    return json.dumps({"revision": record.revision, "previous": record.previous, "address": record.address,
                       "done": record.done}, sort_keys=True)
