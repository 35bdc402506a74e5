"""Which per-entry engine reads tar entries: the native one (``_engine.c``) or the pure path.

The native engine is a fast path over the pure-Python reader, never a second set of rules: it
takes only entries the reader's own fast path would take without error, and hands every other
entry back to ``reader.py`` / ``headers.py``, which stay the reference (see ``_engine.c``).

``pip install .`` builds it where a C compiler and the Python headers exist; without it, or with
``MERKLE_BACKUP_PURE=1`` in the environment, the pure path runs. ``ENGINE`` says which one this
process runs ("native" or "pure"); tests switch paths by setting ``native`` to None.
"""

from __future__ import annotations

import os
from types import ModuleType

native: ModuleType | None = None
if os.environ.get("MERKLE_BACKUP_PURE", "") in ("", "0"):
    try:
        from merkle_backup.archive import _engine as native
    except ImportError:  # not built (no compiler, or MERKLE_BACKUP_NO_NATIVE at install time)
        native = None

ENGINE = "native" if native is not None else "pure"


def current() -> str:
    """The engine in use now: "native" or "pure"."""
    return "native" if native is not None else "pure"
