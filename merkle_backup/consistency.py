"""Defence in depth: an archive must say the same thing everywhere Velero's restore looks.

Restore filters namespaces on the directory name *and* again on ``metadata.namespace`` inside the
JSON, and reads either the classic copy of an item or one version directory. An archive whose
classic and ``-preferredversion`` copies differ, or whose JSON disagrees with its path, restores
differently depending on flags: ``seal`` refuses it unless forced, ``verify`` reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from merkle_backup.core.keys import SCOPE_CLUSTER, SCOPE_NAMESPACED, ResourceKey
from merkle_backup.velero import PREFERRED_SUFFIX


@dataclass(frozen=True)
class Inconsistency:
    path: str
    problem: str


def needs_manifest_check(key: ResourceKey) -> bool:
    """Preferred-version copies are checked through their classic twin (same bytes)."""
    return key.scope in (SCOPE_CLUSTER, SCOPE_NAMESPACED) and not key.version.endswith(
        PREFERRED_SUFFIX
    )


class _Metadata(msgspec.Struct):
    name: Any = None
    namespace: Any = None


class _Manifest(msgspec.Struct):
    metadata: _Metadata | None = None


# Decodes metadata.name and metadata.namespace only; every other member is checked for JSON
# syntax and skipped without building Python objects (6-10x faster than a full parse, which was
# most of the sealing time). Its rules, as Go's encoding/json where restore parses (pinned by
# tests/test_consistency.py against Go): member names compare after unescaping; a repeated
# member name counts its last value; trailing data, a BOM, NaN, control characters in strings
# are errors. It is stricter than Go (refuses, never passes) on unpaired surrogate escapes and
# nesting over ~1000 levels; it accepts invalid UTF-8 inside skipped strings, which Go accepts
# too, and numbers beyond float range, which Go refuses to restore at all.
_decode_manifest = msgspec.json.Decoder(_Manifest).decode
# The same decoder for the native engine (archive/_engine.c), which accepts an entry only when
# the result plainly agrees with its path and hands every other one to check_manifest.
decode_manifest = _decode_manifest


def check_manifest(key: ResourceKey, data: bytes) -> str | None:
    """Why the JSON disagrees with the path, or None when it agrees."""
    try:
        metadata = _decode_manifest(data).metadata
    except msgspec.ValidationError:  # valid JSON so far, but not an object, or metadata is not
        return "manifest is not a JSON object with metadata"
    except (msgspec.DecodeError, UnicodeDecodeError):  # the latter: invalid UTF-8 in name/namespace
        return "manifest is not valid JSON"
    except RecursionError:
        return "manifest nests too deeply to check"
    if metadata is None:
        return "manifest is not a JSON object with metadata"
    name = metadata.name
    if name != key.name:
        return f"metadata.name is {name!r}, the path says {key.name!r}"
    namespace = metadata.namespace or ""
    expected = key.namespace if key.scope == SCOPE_NAMESPACED else ""
    if namespace != expected:
        where = f"namespace {expected!r}" if expected else "a cluster-scoped resource"
        return f"metadata.namespace is {namespace!r}, the path says {where}"
    return None
