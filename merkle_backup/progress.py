"""The progress protocol of ``seal_backup``, ``verify_backup`` and the fleet runs (issue 15).

``progress`` is what it always was: a callable taking a count of bytes (or items) just done,
or None (the default: nothing reported, nothing changes). A callable may also have a
``phase(name, total)`` method: it is then told when each pass that takes time begins, and how
much that pass will count (``total``; None when it cannot be known in advance, as for sorting),
so that whoever shows it (cli/common.Progress, on a terminal only) can give each pass its own
honest bar. Library callers that pass a plain function see no difference.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, BinaryIO, cast

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


def file_size(f: BinaryIO) -> int | None:
    """The size of an open regular file, or None."""
    try:
        return os.fstat(f.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        return None


def counting(f: BinaryIO, progress: Progress | None) -> BinaryIO:
    """``f``, its reads reported to ``progress`` if it listens for phases; else ``f`` itself."""
    if progress is None or not listens(progress):
        return f
    return cast(BinaryIO, Counting(f, progress))


class Counting:
    """A binary file whose reads are reported to ``progress`` (seek, tell and the rest are the
    file's own): for a pass that a library reads through, such as the seal's."""

    def __init__(self, f: BinaryIO, progress: Progress) -> None:
        self._f = f
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if data:
            self._progress(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._progress(n)
        return int(n or 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)
