#!/usr/bin/env python3
"""Write tests/fixtures/bucket/backups/restore-mix: a Velero backup whose restores pull items in.

Several namespaces (prod-a, prod-b, dev, and velero holding DataUploads), a Pod whose claim is
bound to a PersistentVolume and snapshotted (PVC -> VolumeSnapshot -> VolumeSnapshotContent ->
snapshotter Secret in another namespace), PriorityClasses, RBAC objects whose names hold a
backslash, a tab and DEL (allowed by Kubernetes' path-segment rule), and every bucket object
Velero writes. Every item is written twice, classic and -preferredversion, as Velero >= 1.4 does.

The tarball is written by tests/tools/velerogen (Go archive/tar + compress/gzip, Velero's header
conventions). Run from the repository root:  python3 tests/tools/make_restore_mix.py [OUT]
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

NAME = "restore-mix"
UID = "7a1c2e9d-5b44-4c1e-9f0a-3d2b8c6e1f70"
HERE = Path(__file__).resolve().parent
CREATED = "2026-11-30T02:00:00Z"


def _digits(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def meta(name: str, namespace: str | None = None, **extra: object) -> dict:
    md: dict = {"name": name, "uid": f"00000000-0000-4000-8000-{_digits(name, namespace)}",
                "resourceVersion": "4242", "creationTimestamp": CREATED}
    if namespace is not None:
        md["namespace"] = namespace
    md.update(extra)
    return md


def obj(api: str, kind: str, md: dict, **fields: object) -> dict:
    return {"apiVersion": api, "kind": kind, "metadata": md, **fields}


def items() -> list[tuple[str, str, str | None, str, dict]]:
    """(group-resource, preferred version, namespace or None, name, object)."""
    out: list[tuple[str, str, str | None, str, dict]] = []

    def add(gr: str, ver: str, ns: str | None, o: dict) -> None:
        out.append((gr, ver, ns, o["metadata"]["name"], o))

    for ns in ("prod-a", "prod-b", "dev", "velero"):
        add("namespaces", "v1", None, obj("v1", "Namespace", meta(ns, labels={"team": ns.split("-")[0]}),
                                          spec={"finalizers": ["kubernetes"]}, status={"phase": "Active"}))
    # prod-a: a Deployment, its Pod with a claim that is bound and snapshotted.
    add("deployments.apps", "v1", "prod-a", obj("apps/v1", "Deployment", meta("web", "prod-a"), spec={
        "replicas": 1, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "containers": [{"name": "web", "image": "registry.example/web:1.4.2"}]}}}))
    add("pods", "v1", "prod-a", obj("v1", "Pod", meta("web-0", "prod-a"), spec={
        "priorityClassName": "high",
        "containers": [{"name": "web", "image": "registry.example/web:1.4.2"}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}]}))
    add("persistentvolumeclaims", "v1", "prod-a", obj("v1", "PersistentVolumeClaim", meta(
        "data-web-0", "prod-a", annotations={"velero.io/volume-snapshot-name": "snap-web-0"}),
        spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
              "volumeName": "pv-web-0"}, status={"phase": "Bound"}))
    add("volumesnapshots.snapshot.storage.k8s.io", "v1", "prod-a", obj(
        "snapshot.storage.k8s.io/v1", "VolumeSnapshot", meta("snap-web-0", "prod-a"),
        spec={"source": {"persistentVolumeClaimName": "data-web-0"}},
        status={"boundVolumeSnapshotContentName": "snapcontent-web-0", "readyToUse": True}))
    add("secrets", "v1", "prod-a", obj("v1", "Secret", meta("web-creds", "prod-a"),
                                       data={"password": "aHVudGVyMg=="}, type="Opaque"))
    add("configmaps", "v1", "prod-a", obj("v1", "ConfigMap", meta("web-config", "prod-a"),
                                          data={"LOG_LEVEL": "info"}))
    add("roles.rbac.authorization.k8s.io", "v1", "prod-a", obj(
        "rbac.authorization.k8s.io/v1", "Role", meta("team\\ops", "prod-a"),
        rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]))
    # prod-b: another workload with a bound claim.
    add("deployments.apps", "v1", "prod-b", obj("apps/v1", "Deployment", meta("api", "prod-b"), spec={
        "replicas": 2, "selector": {"matchLabels": {"app": "api"}},
        "template": {"metadata": {"labels": {"app": "api"}}, "spec": {
            "containers": [{"name": "api", "image": "registry.example/api:2.0.0"}]}}}))
    add("persistentvolumeclaims", "v1", "prod-b", obj("v1", "PersistentVolumeClaim", meta(
        "data-api-0", "prod-b"), spec={"volumeName": "pv-api-0"}, status={"phase": "Bound"}))
    add("rolebindings.rbac.authorization.k8s.io", "v1", "prod-b", obj(
        "rbac.authorization.k8s.io/v1", "RoleBinding", meta("api", "prod-b"),
        roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "api"},
        subjects=[{"kind": "ServiceAccount", "name": "api", "namespace": "prod-b"}]))
    # dev: nothing pulls it in.
    add("deployments.apps", "v1", "dev", obj("apps/v1", "Deployment", meta("toy", "dev"), spec={
        "replicas": 1, "selector": {"matchLabels": {"app": "toy"}},
        "template": {"metadata": {"labels": {"app": "toy"}}, "spec": {
            "containers": [{"name": "toy", "image": "registry.example/toy:0.1"}]}}}))
    add("configmaps", "v1", "dev", obj("v1", "ConfigMap", meta("toy", "dev"), data={"A": "1"}))
    add("secrets", "v1", "dev", obj("v1", "Secret", meta("snapshotter", "dev"),
                                    data={"key": "c2VjcmV0"}, type="Opaque"))
    # velero: the DataUploads a data-mover restore reads whatever the namespace filter.
    for ns, pvc in (("prod-a", "data-web-0"), ("prod-b", "data-api-0")):
        add("datauploads.velero.io", "v2alpha1", "velero", obj(
            "velero.io/v2alpha1", "DataUpload", meta(f"{NAME}-{pvc}", "velero",
                                                     labels={"velero.io/backup-name": NAME}),
            spec={"sourceNamespace": ns, "sourcePVC": pvc, "snapshotType": "CSI",
                  "backupStorageLocation": "default"},
            status={"phase": "Completed", "snapshotID": f"k0p1a{_digits(pvc)[:8]}",
                    "dataMoverResult": {"dataMover": "velero"}}))
    # Cluster-scoped items.
    for pv, claim, ns in (("pv-web-0", "data-web-0", "prod-a"), ("pv-api-0", "data-api-0", "prod-b")):
        add("persistentvolumes", "v1", None, obj("v1", "PersistentVolume", meta(pv), spec={
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "claimRef": {"kind": "PersistentVolumeClaim", "name": claim, "namespace": ns},
            "nfs": {"path": f"/exports/{pv}", "server": "nfs.internal.example"}},
            status={"phase": "Bound"}))
    add("volumesnapshotcontents.snapshot.storage.k8s.io", "v1", None, obj(
        "snapshot.storage.k8s.io/v1", "VolumeSnapshotContent", meta("snapcontent-web-0", annotations={
            "csi.storage.k8s.io/snapshotter-secret-name": "snapshotter",
            "csi.storage.k8s.io/snapshotter-secret-namespace": "dev"}),
        spec={"driver": "csi.example", "deletionPolicy": "Retain",
              "source": {"snapshotHandle": "snap-0001"},
              "volumeSnapshotRef": {"name": "snap-web-0", "namespace": "prod-a"}}))
    add("priorityclasses.scheduling.k8s.io", "v1", None, obj(
        "scheduling.k8s.io/v1", "PriorityClass", meta("high"), value=100000))
    add("storageclasses.storage.k8s.io", "v1", None, obj(
        "storage.k8s.io/v1", "StorageClass", meta("fast"), provisioner="csi.example"))
    add("clusterroles.rbac.authorization.k8s.io", "v1", None, obj(
        "rbac.authorization.k8s.io/v1", "ClusterRole", meta("viewer"),
        rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]))
    add("clusterroles.rbac.authorization.k8s.io", "v1", None, obj(
        "rbac.authorization.k8s.io/v1", "ClusterRole", meta("ops\\tab\there-del\x7f"),
        rules=[{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]))
    add("clusterrolebindings.rbac.authorization.k8s.io", "v1", None, obj(
        "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", meta("viewers"),
        roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "viewer"},
        subjects=[{"kind": "Group", "name": "viewers", "apiGroup": "rbac.authorization.k8s.io"}]))
    return out


def tar_lines(entries: list[tuple[str, str, str | None, str, dict]]) -> list[dict]:
    """velerogen's input for these items: metadata/version, then each item's classic and
    -preferredversion copies (Velero >= 1.4 writes both)."""
    lines = [{"path": "metadata/version", "raw_b64": "MS4xLjAK"}]  # "1.1.0\n"
    for gr, ver, ns, name, o in entries:
        where = f"namespaces/{ns}" if ns else "cluster"
        lines.append({"path": f"resources/{gr}/{where}/{name}.json", "obj": o})
        lines.append({"path": f"resources/{gr}/{ver}-preferredversion/{where}/{name}.json", "obj": o})
    return lines


def build_velerogen(tmp: Path) -> Path:
    binary = tmp / "velerogen"
    env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", CGO_ENABLED="0")
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=HERE / "velerogen", check=True, env=env)
    return binary


def write_tarball(velerogen: Path, out: Path, entries: list[tuple[str, str, str | None, str, dict]]) -> None:
    stdin = "".join(json.dumps(line) + "\n" for line in tar_lines(entries)).encode()
    subprocess.run([str(velerogen), "-o", str(out), "-mtime", "1764468000"], input=stdin,
                   check=True, capture_output=True)


def backup_object() -> dict:
    return {
        "kind": "Backup", "apiVersion": "velero.io/v1",
        "metadata": {"name": NAME, "namespace": "velero", "uid": UID, "resourceVersion": "99",
                     "creationTimestamp": CREATED,
                     "labels": {"velero.io/storage-location": "default"}},
        "spec": {"includedNamespaces": ["*"], "storageLocation": "default", "ttl": "720h0m0s",
                 "snapshotMoveData": True},
        "status": {"version": 1, "formatVersion": "1.1.0", "phase": "Completed",
                   "startTimestamp": CREATED, "completionTimestamp": "2026-11-30T02:03:00Z",
                   "expiration": "2026-12-30T02:00:00Z"},
    }


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else (
        HERE.parent / "fixtures" / "bucket" / "backups" / NAME)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_tarball(build_velerogen(Path(tmp)), out / f"{NAME}.tar.gz", items())
    (out / "velero-backup.json").write_text(json.dumps(backup_object(), indent=2) + "\n")

    def gz(suffix: str, value: object) -> None:
        data = (json.dumps(value, separators=(",", ":")) + "\n").encode()
        (out / f"{NAME}{suffix}").write_bytes(gzip.compress(data, mtime=0))

    gz("-volumesnapshots.json.gz", [])
    gz("-csi-volumesnapshots.json.gz", [{"metadata": {"name": "snap-web-0", "namespace": "prod-a"}}])
    gz("-volumeinfo.json.gz", [{"pvcName": "data-web-0", "pvcNamespace": "prod-a",
                                "pvName": "pv-web-0", "backupMethod": "CSISnapshot"}])
    gz("-podvolumebackups.json.gz", [])
    gz("-itemoperations.json.gz", [])
    gz("-resource-list.json.gz", {"v1/Pod": ["prod-a/web-0"]})
    (out / f"{NAME}-results.gz").write_bytes(gzip.compress(b'{"errors":{},"warnings":{}}\n', mtime=0))
    (out / f"{NAME}-logs.gz").write_bytes(gzip.compress(b"time=2026-11-30T02:00:00Z level=info\n", mtime=0))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
