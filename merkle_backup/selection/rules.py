"""A restore selection (``Selection``: the flags of ``velero restore create``), Velero's
validation of it, and the ``Matcher`` that decides, leaf by leaf, what a restore of it reads
(docs/format.md §9.2, with the Velero source lines). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from merkle_backup.core.keys import (
    NAMESPACES_RESOURCE,
    SCOPE_BUCKET,
    SCOPE_CLUSTER,
    SCOPE_METADATA,
    SCOPE_NAMESPACED,
)
from merkle_backup.errors import UsageError
from merkle_backup.selection.globs import check_brackets, compile_globs
from merkle_backup.velero import BACKUP_OBJECT, check_namespace_name

# Items Velero restores whatever the namespace filter (restore.go resourceMustHave): a DataUpload
# decides which snapshot a claim's data is restored from.
MUST_HAVE_RESOURCES = frozenset({"datauploads.velero.io"})

# Restore item actions (pkg/restore/actions/, CSI actions) return additional items; those marked
# must-include bypass the namespace filter, the resource filters and includeClusterResources=false.
# With includeClusterResources=false only must-include additional items are restored: the
# VolumeSnapshotContent of a claim's snapshot (csi/volumesnapshot_action.go:305). PersistentVolumes
# and PriorityClasses are added because an item that already carries the must-include annotation
# makes its own additional items must-include too (restore.go:1641-1660).
MUST_INCLUDE_CLUSTER_RESOURCES = frozenset({
    "volumesnapshotcontents.snapshot.storage.k8s.io",
    "persistentvolumes",
    "priorityclasses.scheduling.k8s.io",
})
# Namespaced kinds that built-in actions return as additional items of a restored item in the
# same namespace (a Pod's claims, a claim's VolumeSnapshot, a snapshot's Secrets): kept whatever
# the resource filters.
ADDITIONAL_NAMESPACED_RESOURCES = frozenset({
    "persistentvolumeclaims",
    "volumesnapshots.snapshot.storage.k8s.io",
    "secrets",
})

# Bucket objects a restore or the backup sync reads (restore_controller.go:597-628,
# backup_sync_controller.go:161, 227). The two older CSI sidecars are not read by today's restore;
# they are kept in scope for older Velero versions (verify more, never less).
RESTORE_SIDECARS = (
    "-podvolumebackups.json.gz",
    "-volumesnapshots.json.gz",
    "-volumeinfo.json.gz",
    "-csi-volumesnapshots.json.gz",
    "-csi-volumesnapshotcontents.json.gz",
    "-csi-volumesnapshotclasses.json.gz",
)

# Restore spec fields that narrow what a restore applies further than the selection, or change
# how it is applied; a verification never narrows by them (it verifies a superset) and says so.
NOT_NARROWING_FIELDS = (
    "labelSelector", "orLabelSelectors", "namespaceMapping", "resourceModifier", "resourcePolicy",
    "restorePVs", "preserveNodePorts", "existingResourcePolicy", "restoreStatus", "hooks",
)


def split_list(values: Iterable[str]) -> tuple[str, ...]:
    """Velero's list flags take comma-separated values and may be repeated."""
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in value.split(","))
    return tuple(out)


@dataclass(frozen=True)
class Selection:
    """A restore's selection, as `velero restore create` and the Restore spec give it.

    ``include_namespaces`` empty means every namespace (Velero's default ``*``);
    ``include_cluster_resources`` is Velero's three-state flag (None: unset).
    """

    include_namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    exact_namespaces: tuple[str, ...] = ()
    include_resources: tuple[str, ...] = ()
    exclude_resources: tuple[str, ...] = ()
    include_cluster_resources: bool | None = None
    # Restore fields that were given but not used to narrow (NOT_NARROWING_FIELDS).
    unused_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in self.exact_namespaces:
            check_namespace_name(name)
        for flag, values in (("--include-namespaces", self.include_namespaces),
                             ("--exclude-namespaces", self.exclude_namespaces)):
            if any(v == "" for v in values):
                raise UsageError(f"{flag}: an empty name selects nothing (an unset variable?); "
                                 "give a name or a pattern such as '*'")
        check_velero_rules(self)
        compile_globs(self.include_namespaces, "--include-namespaces")
        compile_globs(self.exclude_namespaces, "--exclude-namespaces")
        for flag, values in (("--include-resources", self.include_resources),
                             ("--exclude-resources", self.exclude_resources)):
            if any(v == "" for v in values):
                raise UsageError(f"{flag}: an empty name selects nothing; give a resource "
                                 "such as deployments.apps, or '*'")

    def to_json(self) -> dict[str, Any]:
        return {
            "include_namespaces": list(self.include_namespaces + self.exact_namespaces) or ["*"],
            "exclude_namespaces": list(self.exclude_namespaces),
            "include_resources": list(self.include_resources) or ["*"],
            "exclude_resources": list(self.exclude_resources),
            "include_cluster_resources": self.include_cluster_resources,
            "unused_fields": list(self.unused_fields),
        }

    def describe(self) -> str:
        parts = []
        if self.exact_namespaces:
            parts.append("namespace " + ", ".join(self.exact_namespaces))
        if self.include_namespaces:
            parts.append("include-namespaces " + ",".join(self.include_namespaces))
        if self.exclude_namespaces:
            parts.append("exclude-namespaces " + ",".join(self.exclude_namespaces))
        if self.include_resources:
            parts.append("include-resources " + ",".join(self.include_resources))
        if self.exclude_resources:
            parts.append("exclude-resources " + ",".join(self.exclude_resources))
        if self.include_cluster_resources is not None:
            parts.append(f"include-cluster-resources={str(self.include_cluster_resources).lower()}")
        return "restore of " + ("; ".join(parts) if parts else "everything")


_WILDCARD = "*?["  # a pattern with one of these is expanded (wildcard.ShouldExpandWildcards)
_UNSUPPORTED = "|()!{},"  # refused by wildcard.validateWildcardPattern once expansion runs


def check_velero_rules(selection: Selection) -> None:
    """Refuse what Velero refuses (UsageError): ValidateIncludesExcludes at restore
    (restore_controller.go:333-336, includes_excludes.go:581-606) and the pattern checks of
    wildcard expansion (pkg/util/wildcard/expand.go:55-114), which a restore with such patterns
    fails on: it restores nothing, so there is nothing to verify."""
    includes = list(selection.include_namespaces) + list(selection.exact_namespaces)
    excludes = list(selection.exclude_namespaces)
    if len(includes) > 1 and "*" in includes:
        raise UsageError("--include-namespaces: '*' must stand alone (Velero refuses "
                         "'*' beside other namespaces)")
    if "*" in excludes:
        raise UsageError("--exclude-namespaces: Velero refuses '*' in excludes")
    both = sorted(set(includes) & set(excludes))
    if both:
        raise UsageError(f"namespace {both[0]!r} is both included and excluded (Velero refuses it)")
    if _expands(selection):
        for pattern in includes + excludes:
            bad = sorted(set(pattern) & set(_UNSUPPORTED))
            if bad or "**" in pattern:
                what = f"{''.join(bad)!r}" if bad else "'**'"
                raise UsageError(f"namespace pattern {pattern!r}: Velero refuses {what} in a "
                                 "pattern (wildcard expansion supports * ? and [...])")
            check_brackets(pattern)
    res_includes = list(selection.include_resources)
    if len(res_includes) > 1 and "*" in res_includes:
        raise UsageError("--include-resources: '*' must stand alone (Velero refuses it beside "
                         "other resources)")
    if "*" in selection.exclude_resources:
        raise UsageError("--exclude-resources: Velero refuses '*' in excludes")


def _expands(selection: Selection) -> bool:
    """Whether Velero expands the namespace patterns against the backup (expand.go:11-44)."""
    includes = list(selection.include_namespaces) + list(selection.exact_namespaces)
    if not includes or "*" in includes:
        return False
    return any(c in p for p in includes + list(selection.exclude_namespaces) for c in _WILDCARD)


class Matcher:
    """A Selection applied leaf by leaf, as Velero's restore applies it (docs/format.md §9.2).

    Some of Velero's choices depend on the whole backup: namespace patterns are expanded against
    the namespaces that hold items (and, when none matches, a restore takes every namespace),
    and resource names are resolved by the cluster. Leaves are decided in one pass with what is
    known so far, over-approximating; ``finish`` then says whether the pass must be redone with
    a wider rule (``widen``), which only ever adds leaves.
    """

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        s = selection
        self._includes = compile_globs(s.include_namespaces, "--include-namespaces")
        self._excludes = compile_globs(s.exclude_namespaces, "--exclude-namespaces")
        self._exact = frozenset(s.exact_namespaces)
        self._expands = _expands(s)
        # IncludeEverything (includes_excludes.go:261-263): no excludes, includes empty or "*".
        self.all_namespaces = (
            not s.exclude_namespaces and not s.exact_namespaces
            and (not s.include_namespaces or "*" in s.include_namespaces)
        )
        self._every_namespace = not (s.exact_namespaces or s.include_namespaces) or \
            "*" in s.include_namespaces
        tokens = s.include_resources
        self._all_resources = not tokens or "*" in tokens
        self._include_tokens = tuple(dict.fromkeys(tokens))
        self._exclude_tokens = frozenset(s.exclude_resources)
        self.item_namespaces: set[str] = set()  # namespaces holding namespaced items (BNS)
        self.must_have_namespaces: set[str] = set()
        self._namespace_objects: dict[str, bool] = {}  # decided so far
        self._seen: set[str] = set()
        self._namespace_cache: dict[str, bool] = {}
        self._resource_cache: dict[str, bool] = {}
        self.notes: list[str] = []
        self.patterns_matched_nothing = False

    # --- namespaces -----------------------------------------------------------------------------

    def namespace_selected(self, namespace: str) -> bool:
        """IncludesExcludes.ShouldInclude (includes_excludes.go:238-245): an exclude wins; no
        include, or "*", means all. A pattern is matched directly, which selects a superset of
        its expansion against the backup (restore.go:2885-2916)."""
        hit = self._namespace_cache.get(namespace)
        if hit is None:
            if any(g.match(namespace) for g in self._excludes):
                hit = False
            elif self._every_namespace:
                hit = True
            else:
                hit = namespace in self._exact or any(g.match(namespace) for g in self._includes)
            self._namespace_cache[namespace] = hit
        return hit

    def _includes_match_nothing(self) -> bool:
        """Velero's expansion bug (restore.go:2885-2916, includes_excludes.go:244): when every
        include is a pattern and none matches a namespace holding items, the expanded include
        list is empty, which means every namespace."""
        if not self._expands or self._exact:
            return False
        if any(not any(c in g.pattern for c in _WILDCARD) for g in self._includes):
            return False  # a literal passes through expansion: the list is not empty
        return not any(g.match(ns) for g in self._includes for ns in self.item_namespaces)

    # --- resources ------------------------------------------------------------------------------

    def resource_selected(self, gr: str) -> bool:
        """Whether the resource filters can select ``gr``. Velero resolves each name through the
        cluster's API discovery (includes_excludes.go:268-287): only a name that is exactly a
        group-resource of the backup (``resource.group``, or a core resource) is taken as that
        one; any other include may name anything, and any other exclude narrows nothing."""
        hit = self._resource_cache.get(gr)
        if hit is None:
            self._seen.add(gr)
            if gr in self._exclude_tokens:
                hit = False
            else:
                hit = self._all_resources or gr in self._include_tokens
            self._resource_cache[gr] = hit
        return hit

    # --- leaves ---------------------------------------------------------------------------------

    def covers(self, namespace: str, gr: str, scope: str, name: str, backup: str) -> bool:
        """Whether a restore of the selection can read the leaf with this key (§9.2)."""
        if scope == SCOPE_BUCKET:
            return name == BACKUP_OBJECT or any(name == backup + s for s in RESTORE_SIDECARS)
        if scope == SCOPE_METADATA:
            return True
        icr = self.selection.include_cluster_resources
        if scope == SCOPE_CLUSTER and gr == NAMESPACES_RESOURCE:
            # A Namespace object (restore.go:998-1057, 1451-1479): read for every namespace a
            # restored item lives in, and for every namespace with includeClusterResources=true
            # or when every namespace is selected.
            hit = (icr is True or (icr is None and self.all_namespaces)
                   or self.namespace_selected(name) or name in self.must_have_namespaces)
            self._namespace_objects.setdefault(name, hit)
            return hit
        if scope == SCOPE_CLUSTER:
            self.resource_selected(gr)  # notes the group-resource as seen
            if icr is False:
                # Only must-include additional items pass (restore.go:1424, 1443-1448).
                return gr in MUST_INCLUDE_CLUSTER_RESOURCES
            # Unset: additional items of any cluster-scoped kind (PVs, PriorityClasses, what
            # plugins return) pass; true: every one. Resource filters are not used to narrow.
            return True
        if scope == SCOPE_NAMESPACED:
            self.item_namespaces.add(namespace)
            selected = self.resource_selected(gr)
            if gr in MUST_HAVE_RESOURCES:  # whatever the filters (restore.go:88-90, 2599, 2614)
                self.must_have_namespaces.add(namespace)
                return True
            if not self.namespace_selected(namespace):
                return False
            return selected or gr in ADDITIONAL_NAMESPACED_RESOURCES
        return True  # an unknown kind of leaf: verify it

    def finish(self) -> bool:
        """After every leaf was seen: whether the leaves must be decided again with ``widen``
        applied (it has been, when this returns True). Sets ``notes``."""
        redo = False
        unresolved = [t for t in self._include_tokens if t != "*" and t not in self._seen]
        if unresolved and not self._all_resources:
            self.notes.append(
                f"include-resources {', '.join(map(repr, unresolved))}: not exactly a "
                "group-resource of this backup (the cluster resolves short names and kinds; "
                "write resource.group, e.g. deployments.apps): every resource is verified")
            self._all_resources = True
            redo = True
        for token in sorted(self._exclude_tokens - self._seen):
            self.notes.append(
                f"exclude-resources {token!r} is not exactly a group-resource of this backup "
                "(write resource.group, e.g. deployments.apps): not used to narrow")
        if self._includes_match_nothing():
            self.notes.append(
                "no include-namespaces pattern matches a namespace of this backup: Velero then "
                "restores every namespace (restore.go wildcard expansion), so every namespace "
                "is verified")
            self._every_namespace = True
            # IncludeEverything after expansion: the expanded excludes are empty too when every
            # exclude is a pattern that matches no namespace holding items.
            self.all_namespaces = not any(
                not any(c in g.pattern for c in _WILDCARD)
                or any(g.match(ns) for ns in self.item_namespaces) for g in self._excludes)
            self.patterns_matched_nothing = True
            redo = True
        late = [n for n, hit in self._namespace_objects.items()
                if not hit and n in self.must_have_namespaces]
        if late:
            redo = True
        if redo:
            self._namespace_cache.clear()
            self._resource_cache.clear()
        return redo

    @property
    def matches_no_namespace(self) -> bool:
        return not self._every_namespace and not any(
            self.namespace_selected(n) for n in self.item_namespaces)
