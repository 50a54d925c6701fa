"""Small parts of the reconcile watcher (devcloud.lab.reconcile) that need neither the lab nor a cloud:
what of a listed server matters, poll and retry delays, quiet failure logs, Nova's changes-since.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

Signature = tuple[str, str, str, str, str, str]


def server_signature(s: Any) -> Signature:
    """What of a listed server can change its host: status, name, AZ, keypair, addresses."""
    return (
        str(s.id), str(s.name or ""), str(s.status or ""), str(s.availability_zone or ""), str(s.key_name or ""),
        json.dumps(s.addresses or {}, sort_keys=True, default=str),
    )


def backoff_delay(interval: float, failures: int, cap: float) -> float:
    """Poll period after ``failures`` consecutive failed steps: interval, then doubling up to ``cap``."""
    if failures <= 0:
        return interval
    return min(cap, max(interval, interval * float(2 ** min(failures, 16))))


class QuietLog:
    """Log a failure when it starts or changes, then once per ``every`` seconds while it lasts."""

    def __init__(self, logger: logging.Logger, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.every, self.clock = logger, every, clock
        self.last: dict[str, tuple[str, float, int]] = {}  # topic -> (message, last logged at, repeats)

    def failed(self, topic: str, message: str) -> bool:
        """Record a failure; True when it was logged."""
        now = self.clock()
        prev = self.last.get(topic)
        if prev is None or prev[0] != message:
            self.log.warning("%s: %s", topic, message)
            self.last[topic] = (message, now, 0)
            return True
        msg, at, n = prev
        if now - at >= self.every:
            self.log.warning("%s: still failing (%d times since the last report): %s", topic, n + 1, msg)
            self.last[topic] = (msg, now, 0)
            return True
        self.last[topic] = (msg, at, n + 1)
        return False

    def ok(self, topic: str) -> None:
        if self.last.pop(topic, None) is not None:
            self.log.info("%s: recovered", topic)


GONE = ("DELETED", "SOFT_DELETED")  # what a changes-since list shows for deleted servers


def retry_delay(attempts: int, cap: float = 30.0) -> float:
    """When to look up an incomplete server again: 1, 2, 4 ... seconds, at most ``cap``."""
    return min(cap, float(2 ** min(attempts, 16)))


def changes_since(wall: float, overlap: float = 5.0) -> str:
    """Nova's ``changes-since`` value for a list that started at ``wall`` (overlap: clock steps, commit lag)."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(wall - overlap, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot(s: Any) -> Any:
    """The attributes resolve_server reads, kept apart from the SDK resource."""
    from types import SimpleNamespace

    return SimpleNamespace(id=s.id, name=s.name, status=s.status, availability_zone=s.availability_zone,
                           key_name=s.key_name, user_id=getattr(s, "user_id", None), addresses=s.addresses)
