"""What a Velero restore of a selection reads: the scope a verification must cover.

\b
    globs.py    Velero's namespace glob language (gobwas/glob)
    rules.py    Selection (the restore flags), Velero's validation, the Matcher of leaves
    scope.py    Scope (what one verification covers) and ScopeRule (over one backup)
    restore.py  a Restore manifest -> its Selection

Pure: no I/O. docs/format.md §9.2 is the normative text, with the Velero source lines each rule
comes from. The rule of thumb everywhere: where Velero's choice depends on the cluster (API
discovery, installed plugins, what an item's manifest points to), this module **over-approximates**
the set of files a restore can read. An include pattern or resource we cannot resolve exactly
selects more; an exclude we cannot resolve exactly excludes nothing.
"""

from merkle_backup.selection.globs import Glob
from merkle_backup.selection.restore import parse_restore_manifest, selection_from_restore
from merkle_backup.selection.rules import (
    ADDITIONAL_NAMESPACED_RESOURCES,
    MUST_HAVE_RESOURCES,
    MUST_INCLUDE_CLUSTER_RESOURCES,
    NOT_NARROWING_FIELDS,
    RESTORE_SIDECARS,
    Matcher,
    Selection,
    check_velero_rules,
    split_list,
)
from merkle_backup.selection.scope import Scope, ScopeRule

__all__ = [
    "ADDITIONAL_NAMESPACED_RESOURCES",
    "MUST_HAVE_RESOURCES",
    "MUST_INCLUDE_CLUSTER_RESOURCES",
    "NOT_NARROWING_FIELDS",
    "RESTORE_SIDECARS",
    "Glob",
    "Matcher",
    "Scope",
    "ScopeRule",
    "Selection",
    "check_velero_rules",
    "parse_restore_manifest",
    "selection_from_restore",
    "split_list",
]
