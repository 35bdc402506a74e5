"""The core is pure (STYLE.md "Layers"): importing it pulls in no I/O or crypto library.

Run in a fresh interpreter so that modules other tests imported do not hide an import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE_MODULES = ("merkle_backup.core.tree", "merkle_backup.core.keys", "merkle_backup.core.leaf",
                "merkle_backup.core.checkpoint")
FORBIDDEN = ("msgpack", "boto3", "botocore", "click", "cryptography", "socket", "urllib3")


def imported_modules() -> list[str]:
    code = f"import {', '.join(CORE_MODULES)}; import sys; print(sorted(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            check=True)
    modules = ast.literal_eval(result.stdout.strip())
    assert isinstance(modules, list) and all(isinstance(m, str) for m in modules)
    return modules


def test_core_imports_no_io_library() -> None:
    modules = imported_modules()
    assert set(CORE_MODULES) <= set(modules)  # the probe really imported the core
    offending = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)
    assert offending == []


def test_core_imports_nothing_else_from_the_package() -> None:
    """core depends only on the stdlib, blake3 and merkle_backup.errors."""
    ours = {m for m in imported_modules() if m.split(".")[0] == "merkle_backup"}
    allowed = {"merkle_backup", "merkle_backup.core", "merkle_backup.errors", *CORE_MODULES}
    assert ours <= allowed, sorted(ours - allowed)
