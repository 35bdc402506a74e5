"""The measured scenarios and baselines; each runs in a fresh interpreter (``bench.child``).

Each function takes the context of one generated backup (see ``bench.__main__``) and returns a
dict of facts to check and report (counts, sizes, whether it verified). Timing and peak memory
are taken around the call by ``bench.child``, after every import, so they exclude start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import blake3
from isal import isal_zlib

READ = 1 << 20
CREATED = datetime(2025, 11, 28, 12, 0, 0, tzinfo=timezone.utc)

# name -> one line saying what it measures
DESCRIPTIONS = {
    "decompress": "baseline 1: inflate the .tar.gz with isal (the library the reader uses), output discarded",
    "tarfile": "baseline 2: Python's tarfile (r:gz, zlib) loop, BLAKE3 of each member's bytes",
    "file_hash": "baseline 3: one BLAKE3 of the whole .tar.gz file (multi-threaded, as the verifier's fast path)",
    "seal": "merkle-backup seal: strict read, leaf per entry and bucket object, sort, root, sign, write",
    "seal_no_manifest_check": "seal with check_manifests=False (library option): the same minus parsing every classic manifest's JSON",
    "verify_unchanged": "verify the whole backup, archive byte-identical to the sealed one (whole-file fast path)",
    "verify_changed": "verify the whole backup, one byte of one entry flipped and re-gzipped (entry by entry)",
    "verify_namespace": "verify one namespace (the largest) of the changed archive",
    "verify_namespace_unchanged": "verify one namespace (the largest) of the unchanged archive (seal v2: leaf-section hash, scope decided run by run)",
    "prove_resource": "prove one resource: read the seal, check it, write an inclusion proof",
    "verify_proof_resource": "verify-proof of one resource (median of many calls in one process)",
    "prove_namespace": "prove the largest namespace: a range proof with all its records",
    "verify_proof_namespace": "verify-proof of that namespace proof (median of many calls in one process)",
    # Issue 14: whole process (the `merkle-backup` command spawned, start-up and imports
    # included), and the pure-Python path (MERKLE_BACKUP_PURE=1) beside the native engine.
    "seal_cli": "merkle-backup seal as a whole process (start-up, imports, key, seal)",
    "verify_unchanged_cli": "merkle-backup verify --json as a whole process, unchanged archive",
    "verify_changed_cli": "merkle-backup verify --json as a whole process, changed archive",
    "seal_pure": "seal (in-process) on the pure-Python path (MERKLE_BACKUP_PURE=1)",
    "verify_changed_pure": "verify changed (in-process) on the pure-Python path",
    "seal_cli_pure": "seal_cli on the pure-Python path (MERKLE_BACKUP_PURE=1)",
    "verify_changed_cli_pure": "verify_changed_cli on the pure-Python path",
}
# A scenario named X_pure runs X with MERKLE_BACKUP_PURE=1 (bench/run.py run_child).
PURE_SUFFIX = "_pure"


def _tarball(folder: str) -> Path:
    folder_path = Path(folder)
    return folder_path / f"{folder_path.name}.tar.gz"


def decompress(ctx: dict) -> dict:
    d = isal_zlib.decompressobj(wbits=31)
    total = 0
    with open(_tarball(ctx["unchanged"]), "rb") as f:
        while chunk := f.read(READ):
            total += len(d.decompress(chunk))
    total += len(d.flush())
    return {"tar_bytes": total}


def tarfile_loop(ctx: dict) -> dict:
    members = 0
    with tarfile.open(_tarball(ctx["unchanged"]), "r:gz") as tf:
        for member in tf:
            if member.isfile():
                f = tf.extractfile(member)
                assert f is not None
                blake3.blake3(f.read()).digest()
                members += 1
    return {"members": members}


def file_hash(ctx: dict) -> dict:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(_tarball(ctx["unchanged"]), "rb") as f:
        while chunk := f.read(4 * READ):
            hasher.update(chunk)
    return {"digest": hasher.hexdigest()[:16]}


def _source(ctx: dict, which: str) -> Any:
    from merkle_backup.storage.local import LocalBackup

    return LocalBackup(Path(ctx[which]), seal_path=Path(ctx["seal"]))


def _trusted(ctx: dict) -> list:
    from merkle_backup.signing import load_public_key

    return [load_public_key(Path(ctx["public_key"]))]


def seal(ctx: dict) -> dict:
    from merkle_backup.builder import seal_backup
    from merkle_backup.signing import load_private_key

    key = load_private_key(Path(ctx["private_key"]))
    result = seal_backup(_source(ctx, "unchanged"), key, created_at=CREATED, replace=True)
    return {"leaves": result.leaf_count, "entries": result.entries,
            "seal_bytes": result.seal_size}


def seal_no_manifest_check(ctx: dict) -> dict:
    from merkle_backup.builder import seal_backup
    from merkle_backup.signing import load_private_key
    from merkle_backup.storage.local import LocalBackup

    key = load_private_key(Path(ctx["private_key"]))
    source = LocalBackup(Path(ctx["unchanged"]), seal_path=Path(ctx["seal"] + ".nocheck"))
    result = seal_backup(source, key, created_at=CREATED, replace=True, check_manifests=False)
    return {"leaves": result.leaf_count, "seal_bytes": result.seal_size}


def _verify(ctx: dict, which: str, namespace: str | None) -> dict:
    from merkle_backup.selection import Scope
    from merkle_backup.verifier import verify_backup

    scope = Scope.namespace(namespace) if namespace else Scope()
    report = verify_backup(_source(ctx, which), _trusted(ctx), scope=scope)
    return {"verified": report.verified, "checked": report.checked,
            "failures": [(f.path, f.problem) for f in report.failures]}


def verify_unchanged(ctx: dict) -> dict:
    return _verify(ctx, "unchanged", None)


def verify_changed(ctx: dict) -> dict:
    return _verify(ctx, "changed", None)


def verify_namespace(ctx: dict) -> dict:
    return _verify(ctx, "changed", ctx["namespace"])


def verify_namespace_unchanged(ctx: dict) -> dict:
    return _verify(ctx, "unchanged", ctx["namespace"])


def _prove(ctx: dict, out: str, **what: Any) -> dict:
    from merkle_backup.formats.proof import encode_proof
    from merkle_backup.proofs import prove

    data = encode_proof(prove(_source(ctx, "unchanged"), trusted=_trusted(ctx), **what))
    Path(ctx[out]).write_bytes(data)
    return {"proof_bytes": len(data)}


def prove_resource(ctx: dict) -> dict:
    return _prove(ctx, "resource_proof", resources=[ctx["resource"]])


def prove_namespace(ctx: dict) -> dict:
    return _prove(ctx, "namespace_proof", namespaces=[ctx["namespace"]])


def _verify_proof(ctx: dict, which: str) -> dict:
    from merkle_backup.proofs import verify_proof

    data = Path(ctx[which]).read_bytes()
    trusted = _trusted(ctx)
    report = verify_proof(data, trusted)
    resources = len(report.resources) + sum(len(n.resources) for n in report.namespaces)
    times = []
    deadline = time.perf_counter() + 0.5
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 2000):
        start = time.perf_counter()
        verify_proof(data, trusted)
        times.append(time.perf_counter() - start)
    times.sort()
    per_call = times[len(times) // 2]
    return {"resources": resources, "calls": len(times), "per_call_ms": per_call * 1e3,
            "per_resource_ms": per_call * 1e3 / max(1, resources), "proof_bytes": len(data)}


def verify_proof_resource(ctx: dict) -> dict:
    return _verify_proof(ctx, "resource_proof")


def verify_proof_namespace(ctx: dict) -> dict:
    return _verify_proof(ctx, "namespace_proof")


def _command() -> list[str]:
    """The console script beside this interpreter (as a user runs it), else the same entry
    point through ``python -c``."""
    script = os.path.join(os.path.dirname(sys.executable), "merkle-backup")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "import sys; from merkle_backup._entry import main; "
            "sys.exit(main())"]


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_command(), *args], capture_output=True, text=True, check=False)


def seal_cli(ctx: dict) -> dict:
    done = _run_cli("seal", ctx["unchanged"], "--key", ctx["private_key"],
                    "--seal", ctx["seal"] + ".cli", "--replace")
    if done.returncode != 0:
        raise RuntimeError(f"seal exited {done.returncode}: {done.stderr[-2000:]}")
    return {"exit": done.returncode}


def _verify_cli(ctx: dict, which: str) -> dict:
    done = _run_cli("verify", ctx[which], "--trust", ctx["public_key"], "--seal", ctx["seal"],
                    "--json")
    report = json.loads(done.stdout)
    failures = [(f["path"], f["problem"]) for f in report.get("failures", [])]
    return {"exit": done.returncode, "verified": done.returncode == 0, "failures": failures}


def verify_unchanged_cli(ctx: dict) -> dict:
    return _verify_cli(ctx, "unchanged")


def verify_changed_cli(ctx: dict) -> dict:
    return _verify_cli(ctx, "changed")


SCENARIOS: dict[str, Callable[[dict], dict]] = {
    "decompress": decompress,
    "tarfile": tarfile_loop,
    "file_hash": file_hash,
    "seal": seal,
    "seal_no_manifest_check": seal_no_manifest_check,
    "verify_unchanged": verify_unchanged,
    "verify_changed": verify_changed,
    "verify_namespace": verify_namespace,
    "verify_namespace_unchanged": verify_namespace_unchanged,
    "prove_resource": prove_resource,
    "verify_proof_resource": verify_proof_resource,
    "prove_namespace": prove_namespace,
    "verify_proof_namespace": verify_proof_namespace,
    "seal_cli": seal_cli,
    "verify_unchanged_cli": verify_unchanged_cli,
    "verify_changed_cli": verify_changed_cli,
}

# Imports each scenario needs, done before the baseline memory is read.
PRELOAD = (
    "merkle_backup.builder", "merkle_backup.verifier", "merkle_backup.proofs",
    "merkle_backup.storage.local", "merkle_backup.signing", "merkle_backup.formats.proof",
)
