"""An independent model of the files a Velero restore reads, for the differential test.

Written from Velero's restore code (velero-io/velero d2241adb; the citations are in
docs/format.md §9.2), step by step as the restore runs, not from merkle_backup/selection/,
which it is compared against: that module decides leaf by leaf and over-approximates; this one
walks the restore and returns exactly what it would read, with the built-in restore item actions
and a cluster that resolves a resource name only when it is exactly a group-resource.

Patterns use only `*`, `?` and `[...]`, where gobwas/glob (no separators) and
fnmatch.fnmatchcase agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase

MUST_HAVE = {"datauploads.velero.io"}  # restore.go:88-90
NON_RESTORABLE = {  # restore_controller.go:69-96, appended to every restore's excludes
    "nodes", "events", "events.events.k8s.io", "backups.velero.io", "restores.velero.io",
    "resticrepositories.velero.io", "csinodes.storage.k8s.io", "volumeattachments.storage.k8s.io",
    "backuprepositories.velero.io",
}
READ_SIDECARS = ("-volumesnapshots.json.gz", "-csi-volumesnapshots.json.gz", "-volumeinfo.json.gz",
                 "-podvolumebackups.json.gz")


@dataclass(frozen=True)
class Restore:
    include_namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    include_resources: tuple[str, ...] = ()
    exclude_resources: tuple[str, ...] = ()
    include_cluster_resources: bool | None = None


def _wild(p: str) -> bool:
    return any(c in p for c in "*?[")


def namespace_filter(item_namespaces: set[str], r: Restore):
    """(NF, IncludeEverything) after wildcard expansion against the namespaces holding items
    (restore.go:2883-2916, expand.go): a pattern becomes the namespaces it matches."""
    ni, ne = list(r.include_namespaces), list(r.exclude_namespaces)
    if ni and "*" not in ni and any(_wild(p) for p in ni + ne):
        def expand(patterns: list[str]) -> list[str]:
            out = [p for p in patterns if not _wild(p)]
            out += sorted(ns for ns in item_namespaces if any(
                fnmatchcase(ns, p) for p in patterns if _wild(p)))
            return out
        ni, ne = expand(ni), expand(ne)

    def nf(ns: str) -> bool:  # IncludesExcludes.ShouldInclude
        if any(fnmatchcase(ns, p) for p in ne):
            return False
        return not ni or "*" in ni or any(fnmatchcase(ns, p) for p in ni)

    return nf, not ne and (not ni or ni == ["*"])


def restore_reads(backup: str, entries: dict[str, bytes], r: Restore) -> set[str]:
    """Tar paths and bucket object names the restore of ``r`` reads (EnableAPIGroupVersions
    on: every version copy of a selected item may be the one read)."""
    classic: dict[tuple[str, str, str], str] = {}  # (gr, ns, name) -> path
    versions: dict[tuple[str, str, str], list[str]] = {}
    for path in entries:
        parts = path.split("/")
        if parts[0] != "resources":
            continue
        gr, rest = parts[1], parts[2:]
        version = None
        if rest[0] not in ("cluster", "namespaces"):
            version, rest = rest[0], rest[1:]
        ns, name = ("", rest[1]) if rest[0] == "cluster" else (rest[1], rest[2])
        key = (gr, ns, name.removesuffix(".json"))
        if version is None:
            classic[key] = path
        else:
            versions.setdefault(key, []).append(path)

    nf, every = namespace_filter({ns for (_, ns, _) in classic if ns}, r)

    def rf(gr: str) -> bool:  # resource filter, the cluster resolving exact names only
        if gr in set(r.exclude_resources) | NON_RESTORABLE:
            return False
        return not r.include_resources or "*" in r.include_resources or gr in r.include_resources

    reads = {f"{backup}.tar.gz", "velero-backup.json"} | {backup + s for s in READ_SIDECARS}
    restored: set[tuple[str, str, str]] = set()

    def namespace_object(ns: str) -> None:
        path = classic.get(("namespaces", "", ns))
        if path:
            reads.add(path)

    def obj_of(key: tuple[str, str, str]) -> dict:
        return json.loads(entries[classic[key]])

    def restore_item(key: tuple[str, str, str], must_include: bool, main_loop: bool) -> None:
        gr, ns, _ = key
        if key in restored:
            return
        if not must_include and gr not in MUST_HAVE:
            if not rf(gr):
                return
            if ns and not nf(ns):
                return
            if not ns and r.include_cluster_resources is False:
                return
        restored.add(key)
        reads.add(classic[key])
        if main_loop:
            reads.update(versions.get(key, []))
        if ns:
            namespace_object(ns)
        obj = obj_of(key)
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        additional: list[tuple[tuple[str, str, str], bool]] = []
        if gr == "pods":  # add_pvc_from_pod_action.go, pod_action.go
            for volume in spec.get("volumes", []):
                claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                if claim:
                    additional.append((("persistentvolumeclaims", ns, claim), False))
            if spec.get("priorityClassName"):
                additional.append((("priorityclasses.scheduling.k8s.io", "", spec["priorityClassName"]), False))
        if gr == "persistentvolumeclaims":
            if status.get("phase") == "Bound" and spec.get("volumeName"):  # pvc_action.go
                additional.append((("persistentvolumes", "", spec["volumeName"]), False))
            snap = annotations.get("velero.io/volume-snapshot-name")
            if snap:  # csi/pvc_action.go:165-187, must-include
                additional.append((("volumesnapshots.snapshot.storage.k8s.io", ns, snap), True))
        if gr == "volumesnapshots.snapshot.storage.k8s.io" and status.get("boundVolumeSnapshotContentName"):
            additional.append((("volumesnapshotcontents.snapshot.storage.k8s.io", "",
                                status["boundVolumeSnapshotContentName"]), True))
        if gr == "volumesnapshotcontents.snapshot.storage.k8s.io":
            secret = annotations.get("csi.storage.k8s.io/snapshotter-secret-name")
            secret_ns = annotations.get("csi.storage.k8s.io/snapshotter-secret-namespace")
            if secret and secret_ns:
                additional.append((("secrets", secret_ns, secret), False))
        # An additional item is must-include when the action marked it (restore.go:1641-1660);
        # that is decided anew from each item's own annotations, not inherited.
        for item, must in additional:
            if item in classic:
                restore_item(item, must, main_loop=False)

    for key in sorted(classic):
        gr, ns, name = key
        if ns:
            if gr not in MUST_HAVE and (not nf(ns) or not rf(gr)):
                continue
        else:
            icr = r.include_cluster_resources
            if icr is False or (icr is None and not every) or not rf(gr):
                continue
            if gr == "namespaces":
                reads.add(classic[key])
                reads.update(versions.get(key, []))
                continue
        restore_item(key, must_include=False, main_loop=True)
    return reads
