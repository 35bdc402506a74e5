"""What a verification covers (``Scope``) and its rule over one backup's leaves
(``ScopeRule``). Pure."""

from __future__ import annotations

from dataclasses import dataclass

from merkle_backup.core.keys import SCOPE_BUCKET
from merkle_backup.selection.rules import Matcher, Selection
from merkle_backup.velero import BACKUP_OBJECT


@dataclass(frozen=True)
class Scope:
    """What a verification covers (docs/format.md §9.2): the whole backup (no selection and no
    resources), what a Velero restore of ``selection`` can read, and/or single ``resources``
    (tar paths or bucket object names). ``velero-backup.json`` is in every scope: it is the
    backup's identity."""

    selection: Selection | None = None
    resources: frozenset[str] = frozenset()

    @classmethod
    def namespace(cls, *names: str) -> Scope:
        """What a restore of these namespaces (exact names) reads."""
        return cls(Selection(exact_namespaces=names))

    @property
    def whole(self) -> bool:
        return self.selection is None and not self.resources

    def describe(self) -> str:
        if self.whole:
            return "whole backup"
        parts = [self.selection.describe()] if self.selection is not None else []
        parts += [f"resource {p}" for p in sorted(self.resources)]
        return ", ".join(parts)


class ScopeRule:
    """A Scope applied to one backup's leaves (a Matcher holds what it has seen)."""

    def __init__(self, scope: Scope, backup: str) -> None:
        self.scope = scope
        self.backup = backup
        self.matcher = Matcher(scope.selection) if scope.selection is not None else None

    def covers(self, namespace: str, gr: str, kind: str, name: str, path: str) -> bool:
        if self.scope.whole or path in self.scope.resources:
            return True
        if kind == SCOPE_BUCKET and name == BACKUP_OBJECT:
            return True
        return self.matcher is not None and self.matcher.covers(
            namespace, gr, kind, name, self.backup)

    def covers_group(self, namespace: str, gr: str, kind: str, name: str) -> bool:
        """``covers`` for a leaf whose path is not one of the scope's single resources: what
        every leaf of a run sharing (namespace, gr, kind) gets, but for bucket objects, which
        differ by name (``name`` is the run's first one; only Namespace objects read it, and
        their runs share it)."""
        if self.scope.whole:
            return True
        if kind == SCOPE_BUCKET and name == BACKUP_OBJECT:
            return True
        return self.matcher is not None and self.matcher.covers(
            namespace, gr, kind, name, self.backup)

    def covers_key(self, sort_key: bytes, path: str) -> bool:
        """``covers`` from a sort key (NUL-joined components, with or without terminator)."""
        namespace, gr, kind, name = sort_key.decode("utf-8").split("\0", 4)[:4]
        return self.covers(namespace, gr, kind, name, path)

    def finish(self) -> bool:
        """After every leaf was seen: whether to decide the leaves again (Matcher.finish)."""
        return self.matcher is not None and self.matcher.finish()

    @property
    def notes(self) -> list[str]:
        return self.matcher.notes if self.matcher is not None else []
