"""T13 of docs/threat-model.md: the objects beside the tarball in the bucket folder:
velero-backup.json (synced into a new cluster as the Backup object) and the sidecars a restore
reads (volume snapshots, pod volume backups)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.attacks.helpers import NS_A, expect_not_authentic


def test_t13_velero_backup_json_edited(sealed: Path, keypair) -> None:
    """T13: velero-backup.json with its included namespaces and TTL changed (name and uid
    kept, so the identity check passes): the object's leaf catches it."""
    path = sealed / "velero-backup.json"
    doc = json.loads(path.read_text())
    doc["spec"]["includedNamespaces"] = ["payments-001"]
    doc["spec"]["ttl"] = "87600h0m0s"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    report = expect_not_authentic(sealed, keypair[1], ("velero-backup.json", "modified"))
    assert len(report["failures"]) == 1
    # A namespace verify before a selective restore covers it too (restore reads it).
    expect_not_authentic(sealed, keypair[1], ("velero-backup.json", "modified"),
                         extra=("--namespace", NS_A))


@pytest.mark.parametrize("change", ["deleted", "edited", "added"])
def test_t13_sidecar_deleted_edited_or_added(sealed: Path, keypair, change: str) -> None:
    """T13: the volume-snapshot sidecar deleted; the pod-volume-backup sidecar replaced by a
    forged list; a CSI sidecar Velero's restore reads added though it was never there."""
    if change == "deleted":
        name, problem = "demo-small-volumesnapshots.json.gz", "missing"
        (sealed / name).unlink()
    elif change == "edited":
        name, problem = "demo-small-podvolumebackups.json.gz", "modified"
        forged = [{"metadata": {"name": "pvb-1", "namespace": "velero"},
                   "spec": {"snapshotID": "attacker-snapshot", "volume": "data"}}]
        (sealed / name).write_bytes(gzip.compress(json.dumps(forged).encode() + b"\n"))
    else:
        name, problem = "demo-small-csi-volumesnapshots.json.gz", "unexpected"
        (sealed / name).write_bytes(gzip.compress(b"[]\n"))
    report = expect_not_authentic(sealed, keypair[1], (name, problem))
    assert [(f["path"], f["problem"]) for f in report["failures"]] == [(name, problem)]
    expect_not_authentic(sealed, keypair[1], (name, problem), extra=("--namespace", NS_A))
