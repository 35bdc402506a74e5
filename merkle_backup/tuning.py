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
    """
    enabled = gc.isenabled()
    interval = sys.getswitchinterval()
    gc.disable()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if enabled:
            gc.enable()
