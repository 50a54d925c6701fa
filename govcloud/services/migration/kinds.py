"""Kinds of data a system holds, and the one shape every kind has for the steps that move data.

The sync, cutover and verify steps do not know how a kind moves; they call each kind the system
holds, in order:

- ``warm``: while the legacy app is live, bring the targets close to the source (outcome detail);
- ``before_stop``: set up what the final pass needs before the legacy app stops (so it is not part
  of the downtime); the block yields the final pass, run once the source is stopped: it makes the
  targets equal to the stopped source, or raises;
- ``check``: at verify, prove the targets still equal the source as it was at the stop.

Directories (``files``) are the only kind so far; a database kind is one new module implementing
:class:`DataKind`, added to :func:`kinds_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from govcloud.migrate.records import Target
from govcloud.services.migration.context import Outcome, RunContext
from govcloud.services.migration.work import Work

FinalPass = Callable[[], Outcome]


class DataKind(Protocol):
    name: str

    def warm(self, ctx: RunContext, w: Work, targets: Sequence[Target]) -> Outcome: ...

    def before_stop(self, ctx: RunContext, w: Work, targets: Sequence[Target]) -> AbstractContextManager[FinalPass]: ...

    def check(self, ctx: RunContext, w: Work, targets: Sequence[Target]) -> None: ...


def kinds_of(w: Work) -> tuple[DataKind, ...]:
    """The kinds of data ``w`` holds (every system has files: its app directory at least)."""
    from govcloud.services.migration.files import FILES

    return (FILES,)
