"""Differential: the verified scope of a selection (merkle_backup.selection, through the
verifier's leaf-table pass) against an independent model of what Velero's restore of that
selection reads (tests/velero_model.py), for many random selections over Go-written backups.

Sound: every file the model's restore reads is in the scope. Selective: a namespaced item of a
namespace the restore does not select is never in it (unless restore reads it whatever the
filter: a DataUpload).
"""

from __future__ import annotations

import io
import random
import shutil
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from merkle_backup.builder import seal_backup
from merkle_backup.errors import UsageError
from merkle_backup.selection import MUST_HAVE_RESOURCES, Scope, Selection
from merkle_backup.signing import load_private_key, load_public_key
from merkle_backup.storage.local import LocalBackup
from merkle_backup.trust import open_seal
from tests.conftest import FIXTURES, copy_backup
from tests.tools import make_restore_mix as gen
from tests.velero_model import Restore, namespace_filter, restore_reads

NAMESPACE_WORDS = ["prod-a", "prod-b", "prod-c", "dev", "dev-x", "staging", "velero", "kube-x"]
PATTERNS = ["*", "prod-*", "dev*", "?ev", "prod-[ab]", "prod-[!a]", "*-x", "st*g", "nomatch-*",
            "[a-z]*", "velero", "prod-a", "dev", "zz"]
RESOURCES = ["deployments.apps", "configmaps", "secrets", "persistentvolumeclaims", "pods",
             "persistentvolumes", "clusterroles.rbac.authorization.k8s.io", "namespaces",
             "datauploads.velero.io", "volumesnapshots.snapshot.storage.k8s.io", "deploy", "*"]


def random_restore(rnd: random.Random) -> Restore:
    includes = tuple(rnd.sample(PATTERNS, rnd.choice([0, 1, 1, 2, 3])))
    excludes = tuple(p for p in rnd.sample(PATTERNS, rnd.choice([0, 0, 1, 2])) if p != "*")
    inc_res = tuple(rnd.sample(RESOURCES, rnd.choice([0, 0, 1, 2, 3])))
    exc_res = tuple(r for r in rnd.sample(RESOURCES, rnd.choice([0, 0, 1])) if r != "*")
    return Restore(includes, excludes, inc_res, exc_res, rnd.choice([None, True, False]))


def random_items(rnd: random.Random) -> list:
    """A backup with workloads, bound and snapshotted claims, DataUploads and cluster items."""
    out = []

    def add(gr, ver, ns, o):
        out.append((gr, ver, ns, o["metadata"]["name"], o))

    namespaces = rnd.sample(NAMESPACE_WORDS, rnd.randint(2, 6))
    for ns in namespaces:
        if rnd.random() < 0.9:
            add("namespaces", "v1", None, gen.obj("v1", "Namespace", gen.meta(ns)))
    pvs = []
    for ns in namespaces:
        for i in range(rnd.randint(0, 3)):
            claim = f"data-{ns}-{i}"
            snap = rnd.random() < 0.5
            add("pods", "v1", ns, gen.obj("v1", "Pod", gen.meta(f"p{i}", ns), spec={
                "priorityClassName": rnd.choice(["high", "low", ""]),
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}))
            annotations = {"velero.io/volume-snapshot-name": f"snap-{claim}"} if snap else {}
            add("persistentvolumeclaims", "v1", ns, gen.obj("v1", "PersistentVolumeClaim", gen.meta(
                claim, ns, annotations=annotations), spec={"volumeName": f"pv-{claim}"},
                status={"phase": rnd.choice(["Bound", "Bound", "Pending"])}))
            pvs.append(f"pv-{claim}")
            if snap:
                add("volumesnapshots.snapshot.storage.k8s.io", "v1", ns, gen.obj(
                    "snapshot.storage.k8s.io/v1", "VolumeSnapshot", gen.meta(f"snap-{claim}", ns),
                    status={"boundVolumeSnapshotContentName": f"vsc-{claim}"}))
                secret_ns = rnd.choice(namespaces)
                add("volumesnapshotcontents.snapshot.storage.k8s.io", "v1", None, gen.obj(
                    "snapshot.storage.k8s.io/v1", "VolumeSnapshotContent", gen.meta(
                        f"vsc-{claim}", annotations={
                            "csi.storage.k8s.io/snapshotter-secret-name": "snapper",
                            "csi.storage.k8s.io/snapshotter-secret-namespace": secret_ns})))
            if rnd.random() < 0.5:
                add("datauploads.velero.io", "v2alpha1", "velero", gen.obj(
                    "velero.io/v2alpha1", "DataUpload", gen.meta(f"du-{claim}", "velero")))
        add("configmaps", "v1", ns, gen.obj("v1", "ConfigMap", gen.meta("cfg", ns)))
        add("secrets", "v1", ns, gen.obj("v1", "Secret", gen.meta("snapper", ns)))
        if rnd.random() < 0.5:
            add("deployments.apps", "v1", ns, gen.obj("apps/v1", "Deployment", gen.meta("app", ns)))
    for pv in pvs:
        if rnd.random() < 0.8:
            add("persistentvolumes", "v1", None, gen.obj("v1", "PersistentVolume", gen.meta(pv)))
    for pc in ("high", "low"):
        add("priorityclasses.scheduling.k8s.io", "v1", None,
            gen.obj("scheduling.k8s.io/v1", "PriorityClass", gen.meta(pc)))
    add("clusterroles.rbac.authorization.k8s.io", "v1", None,
        gen.obj("rbac.authorization.k8s.io/v1", "ClusterRole", gen.meta("viewer")))
    # Remove duplicates of one (gr, ns, name) that the random choices made.
    seen, unique = set(), []
    for item in out:
        if item[:4] not in seen:
            seen.add(item[:4])
            unique.append(item)
    return unique


def tar_entries(tarball: Path) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tarball.read_bytes()), mode="r:gz") as tf:
        return {m.name: tf.extractfile(m).read() for m in tf}  # type: ignore[union-attr]


def scope_paths(folder: Path, keypair, restore: Restore) -> set[str] | None:
    """The paths the verifier's scope covers, or None when the selection is a usage error."""
    try:
        selection = Selection(include_namespaces=restore.include_namespaces,
                              exclude_namespaces=restore.exclude_namespaces,
                              include_resources=restore.include_resources,
                              exclude_resources=restore.exclude_resources,
                              include_cluster_resources=restore.include_cluster_resources)
        source = LocalBackup(folder)
        with source.open_seal() as f:
            seal = open_seal(f, [load_public_key(keypair[1])], Scope(selection))
    except UsageError:
        return None
    return {seal.leaves.path(i) for i in range(len(seal.leaves)) if seal.in_scope[i]}


def check(folder: Path, keypair, rnd: random.Random, rounds: int) -> int:
    entries = tar_entries(folder / f"{folder.name}.tar.gz")
    item_namespaces = {p.split("/")[-2] for p in entries if "/namespaces/" in p
                       and not p.startswith("resources/namespaces/")}
    checked = 0
    for _ in range(rounds):
        restore = random_restore(rnd)
        covered = scope_paths(folder, keypair, restore)
        if covered is None:
            continue  # Velero refuses it too (checked by the CLI tests)
        checked += 1
        # The tarball is no leaf: its entries are (and every one is read to check it).
        reads = restore_reads(folder.name, entries, restore) - {f"{folder.name}.tar.gz"}
        missed = sorted(p for p in reads - covered
                        if p in entries or (folder / p).exists())
        assert not missed, (restore, missed)
        nf, _ = namespace_filter(item_namespaces, restore)
        for path in covered:
            parts = path.split("/")
            if path.startswith("resources/") and len(parts) >= 5 and parts[-3] == "namespaces" \
                    and parts[1] not in MUST_HAVE_RESOURCES:
                assert nf(parts[-2]), (restore, path)  # selective
    return checked


def test_scope_covers_what_velero_restores_from_restore_mix(tmp_path: Path, keypair) -> None:
    folder = copy_backup("restore-mix", tmp_path)
    seal_backup(LocalBackup(folder), load_private_key(keypair[0]),
                created_at=datetime.now(timezone.utc))
    assert check(folder, keypair, random.Random(20261201), 400) > 200


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed (CI installs golang-go)")
@pytest.mark.parametrize("seed", range(6))
def test_scope_covers_what_velero_restores_from_generated_backups(tmp_path: Path, keypair,
                                                                   seed: int) -> None:
    rnd = random.Random(seed)
    folder = tmp_path / "bucket" / "backups" / f"gen-{seed}"
    folder.mkdir(parents=True)
    gen.write_tarball(gen.build_velerogen(tmp_path), folder / f"gen-{seed}.tar.gz", random_items(rnd))
    backup_object = (FIXTURES / "restore-mix" / "velero-backup.json").read_text()
    (folder / "velero-backup.json").write_text(backup_object.replace("restore-mix", f"gen-{seed}"))
    seal_backup(LocalBackup(folder), load_private_key(keypair[0]),
                created_at=datetime.now(timezone.utc), force=True)
    assert check(folder, keypair, rnd, 150) > 60
