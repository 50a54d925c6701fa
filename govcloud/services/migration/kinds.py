"""The kinds of data a system holds, in the order the data steps call them.

Each kind implements :class:`~govcloud.services.migration.datakind.DataKind` (``warm``,
``before_stop`` yielding the final pass, ``check``). Directories (``files``) are the only kind so far;
a database kind is one new module implementing that shape, added to :func:`kinds_of`.
"""

from __future__ import annotations

from govcloud.services.migration.datakind import DataKind
from govcloud.services.migration.files import FILES
from govcloud.services.migration.work import Work


def kinds_of(w: Work) -> tuple[DataKind, ...]:
    """The kinds of data ``w`` holds (every system has files: its app directory at least)."""
    return (FILES,)
