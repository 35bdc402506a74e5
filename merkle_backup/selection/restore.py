"""A Velero Restore manifest (``kubectl get restore -o yaml``, or the file about to be applied):
parsed (JSON or YAML) and turned into the Selection it restores."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from merkle_backup.errors import UsageError
from merkle_backup.selection.rules import NOT_NARROWING_FIELDS, Selection


def selection_from_restore(obj: Any, backup: str, source: str) -> Selection:
    """The Selection of a Restore manifest (kubectl get restore -o yaml, or the file to apply)."""
    if isinstance(obj, Mapping) and obj.get("kind") == "List":
        items = obj.get("items")
        if not isinstance(items, list) or len(items) != 1:
            raise UsageError(f"{source}: a List of {len(items) if isinstance(items, list) else 0}"
                             " objects; give exactly one Restore")
        obj = items[0]
    if not isinstance(obj, Mapping) or obj.get("kind") != "Restore" or not str(
            obj.get("apiVersion", "")).startswith("velero.io/"):
        raise UsageError(
            f"{source}: not a Velero Restore object (kind: Restore, apiVersion: velero.io/v1)"
        )
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise UsageError(f"{source}: the Restore has no spec")
    named = spec.get("backupName")
    if named and spec.get("scheduleName"):
        raise UsageError(f"{source}: the Restore names both a backup and a schedule, which Velero "
                         "refuses (restore_controller.go backupXorScheduleProvided)")
    if not named:
        schedule = spec.get("scheduleName")
        if schedule:
            raise UsageError(f"{source}: the Restore names schedule {schedule!r}, not a backup; "
                             "Velero restores its latest backup: verify that backup by name")
        raise UsageError(f"{source}: the Restore has no spec.backupName")
    if named != backup:
        raise UsageError(f"{source}: the Restore is of backup {named!r}, not {backup!r}")

    def strings(key: str) -> tuple[str, ...]:
        value = spec.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{source}: spec.{key} is not a list of strings")
        return tuple(value)

    icr = spec.get("includeClusterResources")
    if icr is not None and not isinstance(icr, bool):
        raise UsageError(f"{source}: spec.includeClusterResources is not true, false or null")
    unused = tuple(f for f in NOT_NARROWING_FIELDS if spec.get(f) not in (None, [], {}, ""))
    return Selection(
        include_namespaces=strings("includedNamespaces"),
        exclude_namespaces=strings("excludedNamespaces"),
        include_resources=strings("includedResources"),
        exclude_resources=strings("excludedResources"),
        include_cluster_resources=icr,
        unused_fields=unused,
    )


def parse_restore_manifest(data: bytes, source: str) -> Any:
    """A Restore manifest's object: JSON, or YAML (one document)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{source}: not UTF-8 text") from e
    stripped = text.lstrip()
    if stripped.startswith("{"):
        from merkle_backup.formats.strict import loads_json

        try:
            return loads_json(text)
        except ValueError as e:
            raise UsageError(f"{source}: not valid JSON ({e})") from e
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        _check_yaml_depth(yaml.parse(text, Loader=loader), source)
        documents = [d for d in yaml.load_all(text, Loader=loader) if d is not None]
    except yaml.YAMLError as e:
        raise UsageError(f"{source}: not valid YAML or JSON ({str(e).splitlines()[0]})") from e
    if len(documents) != 1:
        raise UsageError(f"{source}: {len(documents)} YAML documents; give exactly one Restore")
    if _depth(documents[0]) > MAX_DEPTH:  # as JSON's (formats.strict): no deeper manifest
        raise UsageError(f"{source}: nested more than {MAX_DEPTH} levels deep")
    return documents[0]


MAX_DEPTH = 64


def _check_yaml_depth(events: Iterable[Any], source: str) -> None:
    """Refuse YAML nested deeper than MAX_DEPTH from its event stream, before anything composes
    it: PyYAML's composer and constructor recurse once per level, and over libyaml a document of
    10^5 nested brackets overflowed the C stack (a segmentation fault, not an exception). The
    event parsers (libyaml's and PyYAML's) keep their state on a heap stack."""
    import yaml

    depth = 0
    for event in events:
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise UsageError(f"{source}: nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _depth(obj: Any) -> int:
    """How deeply lists and maps nest in ``obj`` (iterative: YAML aliases may share nodes, so
    each node is visited once)."""
    deepest, seen = 0, set()
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (dict, list)) or id(node) in seen:
            continue
        seen.add(id(node))
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict)
                                                     else node))
    return deepest
