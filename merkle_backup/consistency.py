"""Defence in depth: an archive must say the same thing everywhere Velero's restore looks.

Restore filters namespaces on the directory name *and* again on ``metadata.namespace`` inside the
JSON, and reads either the classic copy of an item or one version directory. An archive whose
classic and ``-preferredversion`` copies differ, or whose JSON disagrees with its path, restores
differently depending on flags: ``seal`` refuses it unless forced, ``verify`` reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import orjson

from merkle_backup.core.keys import SCOPE_CLUSTER, SCOPE_NAMESPACED, ResourceKey
from merkle_backup.core.leaf import LeafRecord

PREFERRED_SUFFIX = "-preferredversion"


@dataclass(frozen=True)
class Inconsistency:
    path: str
    problem: str


def needs_manifest_check(key: ResourceKey) -> bool:
    """Preferred-version copies are checked through their classic twin (same bytes)."""
    return key.scope in (SCOPE_CLUSTER, SCOPE_NAMESPACED) and not key.version.endswith(PREFERRED_SUFFIX)


def check_manifest(key: ResourceKey, data: bytes) -> str | None:
    """Why the JSON disagrees with the path, or None when it agrees."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "manifest is not valid JSON"
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(metadata, dict):
        return "manifest is not a JSON object with metadata"
    name = metadata.get("name")
    if name != key.name:
        return f"metadata.name is {name!r}, the path says {key.name!r}"
    namespace = metadata.get("namespace") or ""
    expected = key.namespace if key.scope == SCOPE_NAMESPACED else ""
    if namespace != expected:
        where = f"namespace {expected!r}" if expected else "a cluster-scoped resource"
        return f"metadata.namespace is {namespace!r}, the path says {where}"
    return None


def check_copies(records: Iterable[LeafRecord]) -> list[Inconsistency]:
    """Every -preferredversion copy must be byte-identical to its classic copy.

    ``records`` are in key order (docs/format.md §3.2), where an item's classic copy (version
    "") comes right before its versioned copies, so one pass with one remembered record does.
    """
    found: list[Inconsistency] = []
    twin: LeafRecord | None = None
    for record in records:
        key = record.key
        if key.scope not in (SCOPE_CLUSTER, SCOPE_NAMESPACED):
            continue
        if key.version == "":
            twin = record
            continue
        if not key.version.endswith(PREFERRED_SUFFIX):
            continue
        t = twin.key if twin is not None else None
        if t is None or (t.namespace, t.resource, t.scope, t.name) != (
            key.namespace, key.resource, key.scope, key.name
        ):
            found.append(Inconsistency(record.path, "preferred-version copy has no classic copy"))
        elif (twin.size, twin.digest) != (record.size, record.digest):
            found.append(Inconsistency(record.path, f"differs from its classic copy {twin.path}"))
    return found
