"""Splitting a file list across parallel rsync streams, balanced by size (pure, issue 13).

Why: one rsync stream of a large tree is bound by one process's checksum and copy loop; N streams of
about equal bytes finish together. Largest first onto the least loaded stream (the LPT rule) is
within 4/3 of the best split and needs no search; the order inside a stream stays the tree's order,
so each stream's ``--files-from`` list reads like a directory walk.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stream:
    paths: tuple[str, ...]
    bytes: int


def split_by_size(files: Sequence[tuple[str, int]], streams: int) -> list[Stream]:
    """``files`` as (relative path, size): at most ``streams`` non-empty streams of balanced bytes."""
    if streams < 1:
        raise ValueError("at least one stream")
    n = min(streams, len(files)) or 1
    order = {path: i for i, (path, _) in enumerate(files)}
    heap = [(0, k) for k in range(n)]
    chosen: list[list[str]] = [[] for _ in range(n)]
    loads = [0] * n
    for path, size in sorted(files, key=lambda f: (-f[1], order[f[0]])):
        load, k = heapq.heappop(heap)
        chosen[k].append(path)
        loads[k] = load + size
        heapq.heappush(heap, (loads[k], k))
    return [Stream(tuple(sorted(paths, key=order.__getitem__)), loads[k]) for k, paths in enumerate(chosen) if paths]
