"""Interpreter tuning for one bulk pass, for the command line's single-pass commands only."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SWITCH_INTERVAL = 0.0001


@contextmanager
def bulk_pass() -> Iterator[None]:
    """Run one seal, verification or proof with the interpreter tuned for a bulk pass; both
    settings are process-wide and restored afterwards, so only a program that does nothing
    else meanwhile may use it: the command line's ``seal``, ``verify`` and ``prove``
    (cli._single_pass). Library calls never do (a caller's threads, such as fleet's pool, would
    see the collector off and the interval changed under them, and restore them out of order).

    * The cyclic garbage collector is paused. Sealing and verifying hold containers of a
      million leaves while they allocate millions of short-lived objects; every full collection
      traverses those containers, and the allocations trigger collections in proportion: a
      hidden quadratic step (10^6 items took 17x the time of 10^5). Nothing in these passes
      makes a reference cycle; reference counting frees all of it.
    * The thread switch interval is shortened. The archive is inflated on a second thread that
      releases the GIL in isal and must take it back after every piece; while this thread runs
      Python, it waits up to one switch interval each time (measured: 0.9 s of 2.4 s).
    * glibc's allocator keeps freed memory for reuse (``_keep_freed_pieces``; not restored:
      the command ends with its pass).
    """
    enabled = gc.isenabled()
    interval = sys.getswitchinterval()
    _keep_freed_pieces()
    gc.disable()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if enabled:
            gc.enable()


# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _keep_freed_pieces() -> None:
    """On glibc: allocations under 32 MiB come from the heap, and up to 256 MiB of freed heap is
    kept rather than returned to the kernel. The inflater hands out a new 4 MiB piece about
    every millisecond (isal returns a new bytes object per call); by default glibc's dynamic
    threshold keeps only 8 MiB free, so most pieces were fresh pages the kernel zeroed on
    first touch: 0.17-0.25 s of system time in a 0.8 GB seal, 0.11-0.13 s with this (issue 23,
    docs/benchmarks.md). The peak is unchanged (freed pieces are reused, not added). Elsewhere
    (musl, macOS, no ctypes) nothing is changed."""
    import os

    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError, ImportError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)
