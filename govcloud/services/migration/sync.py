"""Step ``warm_sync``: while the legacy app is live, each kind of data brings the targets close to the
source, so the cutover only moves what changed since.

Journal: the intent names the per-migration keys it may authorise (a resume after a crash revokes
them); facts per kind (files: the sync decision, bytes, manifests); outcome ``synced``.
"""

from __future__ import annotations

from govcloud.migrate.records import transfer_keys_for
from govcloud.migrate.state import Action
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.kinds import kinds_of
from govcloud.services.migration.work import Work


def run(ctx: RunContext, w: Work) -> None:
    targets = ctx.targets(w)
    keys = [k.to_fact() for k in transfer_keys_for(targets)]
    with ctx.step(w, Action.WARM_SYNC, {"transfer_keys": keys}) as out:
        for kind in kinds_of(w):
            out.update(kind.warm(ctx, w, targets))
