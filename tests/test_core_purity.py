"""The pure modules (STYLE.md "Layers") import no I/O library, and the core nothing but itself.

The pure modules: ``core/`` (keys, leaves, table, tree, proofs, checkpoint), ``trust`` (the chain
of trust), ``selection`` (what a scope covers), ``velero`` (Velero's layout), ``consistency``,
``display`` and the archive reader's ``headers``. ``trust`` may use cryptography (through
signing.py, for Ed25519) and msgpack (through formats/seal.py): both decode bytes, neither does I/O.
Run in a fresh interpreter so that modules other tests imported do not hide an import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE_MODULES = ("merkle_backup.core.tree", "merkle_backup.core.keys", "merkle_backup.core.leaf",
                "merkle_backup.core.checkpoint", "merkle_backup.core.table",
                "merkle_backup.core.proofs")
PURE_MODULES = (*CORE_MODULES, "merkle_backup.trust", "merkle_backup.selection",
                "merkle_backup.velero", "merkle_backup.consistency", "merkle_backup.display")
FORBIDDEN = ("msgpack", "boto3", "botocore", "click", "cryptography", "socket", "urllib3")
# Modules that touch files, networks, processes or terminals: none of them in a pure module.
IO_MODULES = ("boto3", "botocore", "click", "socket", "urllib3", "subprocess", "shutil",
              "tempfile", "ssl", "http", "requests", "isal", "merkle_backup.storage",
              "merkle_backup.cli", "merkle_backup.fleet", "merkle_backup.builder",
              "merkle_backup.verifier", "merkle_backup.archive.reader",
              "merkle_backup.archive.inflate")


def imported_modules(modules: tuple[str, ...] = CORE_MODULES) -> list[str]:
    # Only what the import adds: the interpreter's start-up (site, .pth files) may import more.
    code = (f"import sys; before = set(sys.modules); import {', '.join(modules)}; "
            "print(sorted(set(sys.modules) - before))")
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
    """core depends only on the stdlib, blake3, merkle_backup.errors and merkle_backup.velero
    (Velero's layout facts, itself pure)."""
    ours = {m for m in imported_modules() if m.split(".")[0] == "merkle_backup"}
    allowed = {"merkle_backup", "merkle_backup.core", "merkle_backup.errors",
               "merkle_backup.velero", *CORE_MODULES}
    assert ours <= allowed, sorted(ours - allowed)


def test_pure_modules_import_no_io_library() -> None:
    modules = imported_modules(PURE_MODULES)
    assert set(PURE_MODULES) <= set(modules)
    offending = sorted(m for m in modules
                       if any(m == f or m.startswith(f + ".") for f in IO_MODULES))
    assert offending == []
