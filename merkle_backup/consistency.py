"""Defence in depth: an archive must say the same thing everywhere Velero's restore looks.

Restore filters namespaces on the directory name *and* again on ``metadata.namespace`` inside the
JSON, and reads either the classic copy of an item or one version directory. An archive whose
classic and ``-preferredversion`` copies differ, or whose JSON disagrees with its path, restores
differently depending on flags: ``seal`` refuses it unless forced, ``verify`` reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def manifest_decoder() -> Callable[[Any], Any]:
    """The decoder of ``check_manifest`` (``_manifest.decode_manifest``: metadata.name and
    metadata.namespace, every other member syntax-checked and skipped), imported on first use.
    The native engine (archive/_engine.c) runs the same one, accepts an entry only when the
    result plainly agrees with its path, and hands every other one to check_manifest."""
    from merkle_backup import _manifest

    return _manifest.decode_manifest


def check_manifest(key: ResourceKey, data: bytes) -> str | None:
    """Why the JSON disagrees with the path, or None when it agrees."""
    from merkle_backup import _manifest

    try:
        metadata = _manifest.decode_manifest(data).metadata
    except _manifest.ValidationError:  # valid JSON so far, but not an object, or metadata is not
        return "manifest is not a JSON object with metadata"
    except (_manifest.DecodeError, UnicodeDecodeError):  # the latter: invalid UTF-8 in name/ns
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
