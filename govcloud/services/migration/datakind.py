"""The one shape every kind of data has for the steps that move data.

The sync, cutover and verify steps do not know how a kind moves; they call each kind the system
holds, in order:

- ``warm``: while the legacy app is live, bring the targets close to the source (outcome detail);
- ``before_stop``: set up what the final pass needs before the legacy app stops (so it is not part
  of the downtime); the block yields the final pass, run once the source is stopped: it makes the
  targets equal to the stopped source, or raises;
- ``check``: at verify, prove the targets equalled the source as it was at the stop (the final pass's
  proof, taken before the targets' applications started and began writing).

The shape lives apart from the list of kinds (``kinds``) so that a kind's module imports only the
shape and the list imports the kinds: neither imports the other back.
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
