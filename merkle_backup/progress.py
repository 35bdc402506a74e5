"""The progress protocol of ``seal_backup``, ``verify_backup`` and the fleet runs (issue 15).

``progress`` is what it always was: a callable taking a count of bytes (or items) just done,
or None (the default: nothing reported, nothing changes). A callable may also have a
``phase(name, total)`` method: it is then told when each pass that takes time begins, and how
much that pass will count (``total``; None when it cannot be known in advance, as for sorting),
so that whoever shows it (cli/common.Progress, on a terminal only) can give each pass its own
honest bar. Library callers that pass a plain function see no difference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Progress = Callable[[int], None]


def phase(progress: Progress | None, name: str, total: int | None) -> None:
    """Tell ``progress`` (if it listens for phases) that pass ``name`` of ``total`` begins."""
    start = getattr(progress, "phase", None)
    if start is not None:
        start(name, total)


def listens(progress: Progress | None) -> bool:
    """Whether ``progress`` takes phases: only then is it told of the passes a plain callable
    was never told of (the seal's reading, a second pass over the tarball)."""
    return getattr(progress, "phase", None) is not None


def tarball_total(source: Any, progress: Progress | None) -> int | None:
    """The tarball's size, for a ``progress`` that listens for phases only (for S3 it may cost a
    HEAD, not otherwise needed); None when it cannot be had (the pass itself then reports why)."""
    from merkle_backup.errors import Error

    if not listens(progress):
        return None
    try:
        return int(source.tarball_size())
    except Error:
        return None
