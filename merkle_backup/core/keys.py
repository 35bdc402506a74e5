"""Resource keys: the canonical identity of every sealed object, and the order of the leaves.

docs/format.md §3. A key is five strings ``(namespace, resource, scope, name, version)``.
Keys are compared component by component, each as UTF-8 bytes; since no component may hold a
NUL byte, that is the same order as comparing ``sort_bytes(key)`` bytewise. The first component
is the namespace, so everything a restore of namespace N reads from the tarball (its namespaced
resources in every version directory, and its own Namespace object with its versioned copies)
forms one contiguous run of leaves. Entries that belong to no namespace have namespace "" and
sort first: bucket objects, then ``metadata/version``, then cluster-scoped resources.

The mapping from a path to its key is injective on every path it accepts, so two entries with
one key are two entries with one path: a duplicate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Scopes (docs/format.md §3.1).
SCOPE_BUCKET = "bucket"        # an object in the backup's folder, beside the tarball
SCOPE_METADATA = "metadata"    # metadata/version
SCOPE_CLUSTER = "cluster"      # resources/<gr>/[<ver>/]cluster/<name>.json
SCOPE_NAMESPACED = "namespaces"  # resources/<gr>/[<ver>/]namespaces/<ns>/<name>.json

NAMESPACES_RESOURCE = "namespaces"  # the group-resource of Namespace objects

# Path segments: the archive reader (docs/format.md §2) has already refused empty, "." and ".."
# segments and NUL, so any remaining segment is a name. We do not hold names to Kubernetes'
# syntax: Velero's restore reads whatever directory names it finds, Kubernetes allows RBAC names
# with a backslash, a tab or DEL (path.IsValidPathSegmentName refuses only "/", "%", "." and
# ".."), and the key only needs segments to be non-empty and free of "/" and NUL to be
# unambiguous.
_BAD_CHARS = re.compile(r"\x00")
# A bucket object name: the files Velero writes into backups/<name>/ (docs/format.md §3.2).
_BUCKET_OBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}\Z")


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    """The canonical key of a leaf. Field order is sort order."""

    namespace: str
    resource: str
    scope: str
    name: str
    version: str

    def components(self) -> tuple[str, str, str, str, str]:
        return (self.namespace, self.resource, self.scope, self.name, self.version)

    def sort_bytes(self) -> bytes:
        """Bytes whose bytewise order is the key order (components are NUL-free)."""
        return b"\x00".join(c.encode() for c in self.components())


class PathError(ValueError):
    """A tar path outside Velero's layout. Callers turn it into an ArchiveError."""


def key_for_tar_path(path: str) -> ResourceKey:
    """The key of a tar entry, or PathError when the path is not in Velero's layout (§3.1)."""
    if path == "metadata/version":
        return ResourceKey("", "", SCOPE_METADATA, "version", "")
    parts = path.split("/")
    if parts[0] != "resources" or len(parts) not in (4, 5, 6, 7):
        raise PathError("path is outside Velero's layout (metadata/version, resources/...)")
    if any(not part or part in (".", "..") or _BAD_CHARS.search(part) for part in parts):
        # The reader refuses these already (§2.6); a decoded leaf record is checked here too.
        raise PathError("path has an empty, '.' or '..' segment or a NUL byte")
    resource = parts[1]
    rest = parts[2:]
    version = ""
    # A version directory sits between the group-resource and the scope, unless the segment
    # is itself a scope: Velero's parser treats "cluster" and "namespaces" as scopes there.
    if rest[0] not in (SCOPE_CLUSTER, SCOPE_NAMESPACED):
        version = rest[0]
        rest = rest[1:]
    if rest[0] == SCOPE_CLUSTER and len(rest) == 2:
        name = _object_name(rest[1])
        if resource == NAMESPACES_RESOURCE:
            # The Namespace object belongs to its own namespace's range: a restore of
            # namespace N reads it to create N.
            return ResourceKey(name, resource, SCOPE_CLUSTER, name, version)
        return ResourceKey("", resource, SCOPE_CLUSTER, name, version)
    if rest[0] == SCOPE_NAMESPACED and len(rest) == 3:
        namespace = rest[1]
        return ResourceKey(namespace, resource, SCOPE_NAMESPACED, _object_name(rest[2]), version)
    raise PathError(
        "path is outside Velero's layout (resources/<gr>/[<ver>/]cluster|namespaces/...)"
    )


def key_for_bucket_object(filename: str) -> ResourceKey:
    """The key of an object in the backup's folder (velero-backup.json, a sidecar)."""
    if not _BUCKET_OBJECT.match(filename) or ".." in filename:
        raise PathError(f"{filename!r} is not a bucket object name")
    return ResourceKey("", "", SCOPE_BUCKET, filename, "")


def _object_name(segment: str) -> str:
    if not segment.endswith(".json") or len(segment) == len(".json"):
        raise PathError("a resource file must be <name>.json")
    return segment[: -len(".json")]
