"""Library calls leave the interpreter's process-wide settings alone (docs/threat-model.md T34)
and seal --force with many findings writes a valid seal (T35).

tuning.bulk_pass (the garbage collector off, a short thread switch interval) is for the
command line's single-pass commands only: a library call made from a caller's threads (fleet's
pool, restore tooling) must find gc.isenabled() and sys.getswitchinterval() as it left them.
"""

from __future__ import annotations

import gc
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from merkle_backup.builder import seal_backup
from merkle_backup.proofs import prove
from merkle_backup.signing import load_private_key, load_public_key
from merkle_backup.storage.local import LocalBackup
from merkle_backup.verifier import verify_backup
from tests import tamper
from tests.attacks.helpers import run, tarball
from tests.conftest import copy_backup

CREATED = datetime(2026, 11, 28, 5, 0, tzinfo=timezone.utc)


def _calls(folder: Path, keypair: tuple[Path, Path]) -> None:
    private, public = load_private_key(keypair[0]), load_public_key(keypair[1])
    seal_backup(LocalBackup(folder), private, created_at=CREATED, replace=True)
    assert verify_backup(LocalBackup(folder), [public]).verified
    prove(LocalBackup(folder), namespaces=["payments-001"], trusted=[public])


def test_library_calls_leave_gc_and_switch_interval(tmp_path: Path, keypair) -> None:
    folder = copy_backup("demo-small", tmp_path)
    interval = sys.getswitchinterval()
    assert gc.isenabled()
    _calls(folder, keypair)
    assert gc.isenabled() and sys.getswitchinterval() == interval


def test_concurrent_library_calls_leave_gc_and_switch_interval(tmp_path: Path, keypair) -> None:
    """Four threads at once, and a watcher that samples the settings while they run."""
    folders = [copy_backup("demo-small", tmp_path / str(i)) for i in range(4)]
    interval = sys.getswitchinterval()
    seen: set[tuple[bool, float]] = set()
    stop = threading.Event()
    errors: list[BaseException] = []

    def watch() -> None:
        while not stop.is_set():
            seen.add((gc.isenabled(), sys.getswitchinterval()))
            stop.wait(0.001)

    def work(folder: Path) -> None:
        try:
            for _ in range(2):
                _calls(folder, keypair)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=work, args=(f,)) for f in folders]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    watcher.join()
    assert not errors, errors
    assert seen == {(True, interval)}
    assert gc.isenabled() and sys.getswitchinterval() == interval


def test_fleet_audit_leaves_them_too(tmp_path: Path, keypair) -> None:
    from merkle_backup.fleet import sweep as fleet
    from merkle_backup.storage.options import ConnectionOptions
    from merkle_backup.storage.resolve import open_location

    folder = copy_backup("demo-small", tmp_path)
    run("seal", folder, "--key", keypair[0])
    interval = sys.getswitchinterval()
    location = open_location(str(folder.parent.parent), ConnectionOptions())
    report = fleet.audit(location, [load_public_key(keypair[1])], jobs=2)
    assert report.verified
    assert gc.isenabled() and sys.getswitchinterval() == interval


# -- seal --force with many inconsistent entries -------------------------------------------------

def _more_entries(folder: Path, count: int) -> None:
    """Enough namespaced entries for ``count`` findings: copies of one Deployment under new
    names, each with the original's metadata (so each disagrees with its path)."""
    def change(entries):
        name, data = next((n, d) for n, d in entries if n.startswith("resources/deployments.apps/namespaces/")
                          and "-preferredversion" not in n)
        base = name[: -len(".json")]
        return entries + [(f"{base}-copy{i}.json", data) for i in range(count)]

    tamper.rewrite(tarball(folder), change)


@pytest.mark.parametrize("count", [9, 10, 11, 100])
def test_seal_force_with_many_inconsistent_entries(tmp_path: Path, keypair, count: int) -> None:
    """Was a crash at 10: the seal's head had been written over a placeholder whose count of
    findings ("0") was one digit shorter. The seal verifies, with one warning per finding."""
    folder = copy_backup("demo-small", tmp_path)
    _more_entries(folder, count)
    refused = run("seal", folder, "--key", keypair[0])
    assert refused.code == 3 and f"{count} inconsistent entries" in refused.err, refused.err
    outcome = run("seal", folder, "--key", keypair[0], "--force")
    assert outcome.code == 0, outcome.err
    assert outcome.err.count("warning: sealed despite:") == count
    checked = run("verify", folder, "--trust", keypair[1], "--json")
    assert checked.code == 0, checked.out
    report = checked.json()
    assert len(report["warnings"]) == count
    inspect = run("inspect", folder / "demo-small-merkle.seal", "--json").json()
    assert f"\ninconsistent {count}\n" in inspect["checkpoint"]
