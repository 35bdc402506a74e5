"""What is drawn on a terminal while a command runs (stderr, only when it is a terminal): a bar
for each pass a seal, verify or prove announces, and audit's and seal-all's running count."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from merkle_backup.display import shown

if TYPE_CHECKING:
    pass


class Progress:
    """Progress on stderr, only when stderr is a terminal (nothing otherwise, not even a
    question to the storage): a bar for each pass the library announces (merkle_backup/
    progress.py: ``phase(name, total)``), labelled with the command and the pass; a pass of no
    known length shows its name, then how long it took."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.on = sys.stderr.isatty()
        self.bar: Any = None
        self.waiting: tuple[str, float] | None = None  # a pass of unknown length: (name, start)

    def __enter__(self) -> Progress | None:
        return self if self.on else None

    def __call__(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done)

    def phase(self, name: str, total: int | None) -> None:
        self._close(finished=True)
        if total:
            self.bar = click.progressbar(length=total, label=f"{self.label}: {name}",
                                         file=sys.stderr, show_eta=True)
            self.bar.__enter__()
        else:
            sys.stderr.write(f"{self.label}: {name} ...")
            sys.stderr.flush()
            self.waiting = (name, time.monotonic())

    def _close(self, *, finished: bool) -> None:
        if self.bar is not None:
            if finished and self.bar.pos < self.bar.length:
                # The pass is over; its total was an upper bound (the seal's table is read
                # from its first leaf on, past a head of a few hundred bytes).
                self.bar.update(self.bar.length - self.bar.pos)
            self.bar.__exit__(None, None, None)
            self.bar = None
        if self.waiting is not None:
            sys.stderr.write(f" {time.monotonic() - self.waiting[1]:.1f} s\n")
            sys.stderr.flush()
            self.waiting = None

    def __exit__(self, kind: object, *exc: object) -> None:
        self._close(finished=kind is None)


class RowCount:
    """audit and seal-all on a terminal: one stderr line, redrawn as each backup is done, with
    the count done of all, the running count by status, and the backup just done."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.on = sys.stderr.isatty()
        self.counts: dict[str, int] = {}
        self.width = 0

    def __enter__(self) -> RowCount | None:
        return self if self.on else None

    def __call__(self, row: Any, done: int, total: int) -> None:
        self.counts[row.status] = self.counts.get(row.status, 0) + 1
        so_far = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items()))
        line = f"{self.label}: {done}/{total} backups ({so_far}); last: {shown(row.name)[:40]}"
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()
        self.width = len(line)

    def __exit__(self, *exc: object) -> None:
        if self.width:
            sys.stderr.write("\n")
            sys.stderr.flush()
