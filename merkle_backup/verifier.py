"""Verify a backup against its seal: the whole archive, chosen namespaces, or single resources.

The chain of trust (docs/format.md §9), each step only after the one above it has passed:

1. The checkpoint's signature, by one of the keys the user trusts (never a key from the backup).
2. The checkpoint's text, and that it names this backup (name, UID).
3. The leaf table: its leaves hash to the signed root, its keys are strictly increasing and
   each record's key is the one its path implies.
4. The bucket objects in scope, each against its leaf.
5. The tarball: when the whole file hashes to the signed archive digest, every entry is proven
   at once (the sealer parsed exactly those bytes strictly). Otherwise entry by entry, through
   the same strict reader the sealer used.
"""

from __future__ import annotations

import hmac
import io
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, Protocol

import blake3

from merkle_backup.archive import ArchiveReader, Limits
from merkle_backup.builder import BackupSource
from merkle_backup.consistency import (
    Inconsistency,
    check_manifest,
    needs_manifest_check,
)
from merkle_backup.core import table, tree
from merkle_backup.core.checkpoint import UNKNOWN_UID, Checkpoint, CheckpointError, parse_checkpoint
from merkle_backup.core.keys import (
    SCOPE_BUCKET,
    PathError,
    key_for_bucket_object,
    key_for_tar_path,
)
from merkle_backup.core.leaf import content_digest
from merkle_backup.errors import (
    ArchiveError,
    CannotCheck,
    FormatError,
    LimitExceeded,
    NotAuthentic,
    NotGzip,
    SignatureError,
    UsageError,
)
from merkle_backup.formats.seal import SealHead, read_leaves, read_seal_head
from merkle_backup.selection import Matcher, Selection
from merkle_backup.signing import PublicKey
from merkle_backup.velero import BACKUP_OBJECT

# Problems a failure can name (docs/format.md §9.2).
MODIFIED = "modified"
MISSING = "missing"
UNEXPECTED = "unexpected"
DUPLICATE = "duplicate"
MALFORMED = "malformed"

_HASH_CHUNK = 4 * 2**20
MAX_LISTED_FAILURES = 1000


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


class _ScopeRule:
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

    def covers_key(self, sort_key: bytes, path: str) -> bool:
        """``covers`` from a sort key (NUL-joined components, with or without terminator)."""
        namespace, gr, kind, name = sort_key.decode("utf-8").split("\0", 4)[:4]
        return self.covers(namespace, gr, kind, name, path)


@dataclass(frozen=True)
class Failure:
    path: str
    problem: str
    detail: str = ""


@dataclass
class VerifyReport:
    backup: str
    uid: str
    root: bytes
    tree_size: int
    scope: str
    created: datetime | None = None
    key_id: str = ""  # the ID of the trusted key that verified the checkpoint
    selection: dict[str, Any] | None = None  # the restore selection checked, if any
    resources: list[str] = field(default_factory=list)  # single resources asked for
    namespaces: list[str] = field(default_factory=list)  # sealed namespaces the selection matched
    scope_remark: str = ""  # e.g. "matches no sealed namespace", shown on the verdict line
    checked: int = 0
    failures: list[Failure] = field(default_factory=list)
    out_of_scope_failures: int = 0
    # Failures past MAX_LISTED_FAILURES are counted, not kept: an attacker can make millions.
    unlisted_failures: int = 0
    notes: list[str] = field(default_factory=list)
    # Authentic, but restore would depend on its flags (sealed with --force): consistency.py
    warnings: list[Inconsistency] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.failures and not self.unlisted_failures

    def add_failure(self, failure: Failure) -> None:
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append(failure)
        else:
            self.unlisted_failures += 1

    def to_json(self) -> dict:
        return {
            "verified": self.verified,
            "backup": self.backup,
            "uid": self.uid,
            "root": self.root.hex(),
            "tree_size": self.tree_size,
            "scope": self.scope,
            "scope_detail": {
                "selection": self.selection,
                "resources": self.resources,
                "namespaces": self.namespaces,
                "leaves_in_scope": self.checked,
                "remark": self.scope_remark,
            },
            "created": self.created.strftime("%Y-%m-%dT%H:%M:%SZ") if self.created else None,
            "key_id": self.key_id,
            "checked": self.checked,
            "failures": [
                {"path": f.path, "problem": f.problem, "detail": f.detail} for f in self.failures
            ],
            "unlisted_failures": self.unlisted_failures,
            "out_of_scope_failures": self.out_of_scope_failures,
            "notes": self.notes,
            "warnings": [{"path": w.path, "problem": w.problem} for w in self.warnings],
        }


@dataclass(frozen=True)
class TrustedSeal:
    """A seal whose signature, checkpoint and leaf table have all been checked (steps 1-3).

    Each leaf is kept as its sortable leaf (core/table.py): for the paths Velero writes just the
    key and ``u64be(size) ‖ H(content)``, about 120 bytes, and in key order, so an archive
    entry's sortable leaf is found by bisection and compared whole. ``in_scope[i]`` says whether
    leaf ``i`` is covered by the scope; the rest is what the scope's notes and warnings need.
    """

    checkpoint: Checkpoint
    signer: PublicKey | None  # None: the signature was not checked (prove without --trust)
    items: list[bytes]
    in_scope: bytearray
    bucket: list[int]  # indices of bucket-object leaves
    namespaces: set[str]  # namespaces with leaves (only collected for a scope that is not whole)
    resources: set[str]  # scope.resources that have a leaf
    copies: list[Inconsistency]  # in-scope -preferredversion copies unlike their classic copy
    merkle: tree.MerkleTree | None  # every level, when asked for (to prove leaves)
    rule: _ScopeRule | None = None  # the scope as applied (None: not read for a scope)
    scope_notes: list[str] = field(default_factory=list)

    def record(self, index: int) -> bytes:
        return table.record_of(self.items[index])

    def path(self, index: int) -> str:
        return table.path_of(self.record(index))

    def find(self, key: bytes, path: str, item: bytes = b"") -> int | None:
        """The index of the leaf with sort key ``key`` (NUL-ended) and this path, or None.
        ``item``, the sortable leaf expected there, spares rebuilding the path when equal."""
        items = self.items
        i = bisect_left(items, key)
        if i < len(items) and (items[i] == item or (
                items[i].startswith(key) and self.path(i) == path)):
            return i
        return None

    def index_of(self, path: str) -> int | None:
        """The leaf of a tar path or bucket object name, or None."""
        for key_of in (key_for_tar_path, key_for_bucket_object):
            try:
                key = key_of(path)
            except PathError:
                continue
            return self.find(key.sort_bytes() + b"\0", path)
        return None


class Signed(Protocol):
    """A seal's or a proof file's signed part, not yet verified."""

    @property
    def checkpoint(self) -> bytes: ...
    @property
    def signature(self) -> bytes: ...


def check_signature(
    _unverified: Signed, trusted: Sequence[PublicKey]
) -> tuple[Checkpoint, PublicKey]:
    """Steps 1-2: the signature over the exact checkpoint bytes, by a key the user named."""
    if not trusted:
        raise CannotCheck("no trusted public key given")
    signer = None
    for key in trusted:
        try:
            key.verify(_unverified.signature, _unverified.checkpoint)
        except SignatureError:
            continue
        signer = key
        break
    if signer is None:
        names = ", ".join(k.source for k in trusted)
        raise SignatureError(f"the checkpoint is not signed by any trusted key ({names})")
    try:
        checkpoint = parse_checkpoint(_unverified.checkpoint)
    except CheckpointError as e:
        raise FormatError(f"signed checkpoint is malformed: {e}") from e
    if not hmac.compare_digest(checkpoint.key_id, signer.key_id):
        raise NotAuthentic("the checkpoint names another key than the one that signed it")
    return checkpoint, signer


def open_seal(
    seal: bytes | BinaryIO, trusted: Sequence[PublicKey], scope: Scope = Scope()
) -> TrustedSeal:
    """Steps 1-3: decode, check the signature, the checkpoint and the leaf table.

    ``seal`` is the seal's bytes or a seekable file at its start.
    """
    f = io.BytesIO(seal) if isinstance(seal, bytes) else seal
    _unverified = read_seal_head(f)
    checkpoint, signer = check_signature(_unverified, trusted)
    return read_leaf_table(f, _unverified, checkpoint, signer, scope)


def read_leaf_table(
    f: BinaryIO, head: SealHead, checkpoint: Checkpoint, signer: PublicKey | None,
    scope: Scope = Scope(), *, keep_tree: bool = False,
) -> TrustedSeal:
    """Step 3, once the checkpoint is known: the leaves hash to its root, each record's key is
    the one its path implies, and keys strictly increase. One streaming pass over the records
    as bytes (core/table.py), which also marks what the scope covers; with ``keep_tree`` the
    whole Merkle tree is kept (for proofs), else only the root is computed (O(log n) memory).
    """
    count = head.leaf_count
    if count != checkpoint.tree_size:
        raise NotAuthentic(
            f"seal holds {count} leaves, its checkpoint says {checkpoint.tree_size}"
        )
    leaves = read_leaves(f, head)
    items: list[bytes] = []
    append = items.append
    leaf_hash = blake3.blake3
    leaf_prefix = tree.LEAF_PREFIX
    hashes: list[bytes] = []
    root = tree.RootBuilder()
    add_leaf = hashes.append if keep_tree else root.add_unchecked
    whole = scope.whole
    rule = _ScopeRule(scope, checkpoint.backup)
    covers_key = rule.covers_key
    in_scope = bytearray(b"\x01") * count if whole else bytearray(count)
    bucket: list[int] = []
    namespaces: set[str] = set()
    resources: set[str] = set()
    copies: list[tuple[int, Inconsistency]] = []
    check_record = table.check_record
    previous = None
    out_of_order = None
    check_copy = table.CopyChecker().check
    invalid: ValueError | None = None
    try:
        for i, leaf in enumerate(leaves):
            add_leaf(leaf_hash(leaf_prefix + leaf).digest())
            sort_key, namespace, kind, path, item = check_record(leaf)
            append(item)
            # Keys strictly increase (§3.2): the NUL-joined components compare as the keys do.
            if previous is not None and not previous < sort_key and out_of_order is None:
                out_of_order = path
            previous = sort_key
            if kind == SCOPE_BUCKET:
                bucket.append(i)
            if scope.resources and path in scope.resources:
                resources.add(path)
            if not whole:
                namespaces.add(namespace)
                if covers_key(sort_key, path):
                    in_scope[i] = 1
            # -preferredversion copies unlike their classic copy (kept for the leaves in scope).
            problem = check_copy(sort_key, leaf[-table.TAIL:], leaf)
            if problem is not None:
                copies.append((i, Inconsistency(path, problem)))
    except FormatError:
        raise  # the file is not a seal (any more): nothing to hash
    except ValueError as e:
        invalid = e
        for leaf in leaves:  # the root first: a changed table is not authentic
            add_leaf(leaf_hash(leaf_prefix + leaf).digest())
    merkle = tree.MerkleTree(hashes) if keep_tree else None
    if not hmac.compare_digest(merkle.root if merkle else root.root(), checkpoint.root):
        raise NotAuthentic("the seal's leaf table does not hash to its signed root")
    if invalid is not None:
        raise FormatError(f"signed leaf table holds an invalid record: {invalid}") from invalid
    if out_of_order is not None:
        raise FormatError(f"signed leaf table is not in strict key order at {out_of_order}")
    if rule.matcher is not None and rule.matcher.finish():
        # What Velero decides from the whole backup widened the rule: decide again (it only adds).
        for i, item in enumerate(items):
            if not in_scope[i]:
                in_scope[i] = covers_key(item[:(item[-2] << 8) | item[-1]],
                                         table.path_of(table.record_of(item)))
    notes = rule.matcher.notes if rule.matcher is not None else []
    namespaces.discard("")
    in_scope_copies = [c for i, c in copies if in_scope[i]]
    return TrustedSeal(checkpoint, signer, items, in_scope, bucket, namespaces, resources,
                       in_scope_copies, merkle, rule, notes)


def check_identity(checkpoint: Checkpoint, source: BackupSource, expected_uid: str | None) -> None:
    """Step 2b: a validly signed seal of another backup is a failure.

    A backup folder or S3 prefix is named by its own name, exactly; only a bare tarball's file
    name is read by the `velero backup download` rule (``X-data.tar.gz`` may be backup ``X``).
    ``velero-backup.json`` is not parsed here: it is a sealed leaf, so its bytes, whatever
    they are, are compared with the sealed ones in step 4 (modified, missing or unexpected).
    """
    names = source.identity_names()
    if checkpoint.backup not in names:
        raise NotAuthentic(
            f"the seal is for backup {checkpoint.backup!r}, not {source.name!r}"
        )
    if expected_uid is not None and expected_uid != checkpoint.uid:
        shown = "unknown (sealed from a bare tarball)" if checkpoint.uid == UNKNOWN_UID else checkpoint.uid
        raise NotAuthentic(f"the seal is for backup uid {shown}, expected {expected_uid}")


class _Checker:
    """Steps 4-5: compares what is stored with the sealed leaves, collecting failures."""

    def __init__(self, seal: TrustedSeal, scope: Scope, report: VerifyReport) -> None:
        self.seal = seal
        self.scope = scope
        self.report = report
        self.backup = seal.checkpoint.backup
        self.in_scope = seal.in_scope
        assert seal.rule is not None
        self.rule = seal.rule
        self.unsealed_seen: set[str] = set()  # scope.resources found unsealed in the backup
        report.checked = sum(self.in_scope)

    def fail(self, in_scope: bool | int, path: str, problem: str, detail: str = "") -> None:
        if in_scope:
            self.report.add_failure(Failure(path, problem, detail))
        else:
            self.report.out_of_scope_failures += 1

    def compare(self, index: int, size: int, digest: bytes) -> None:
        tail = self.seal.items[index][-2 - table.TAIL:-2]  # u64be(size) ‖ H(content)
        if tail != size.to_bytes(8, "big") + digest:
            sealed_size = int.from_bytes(tail[:8], "big")
            self.fail(
                self.in_scope[index], self.seal.path(index), MODIFIED,
                f"{size} bytes, blake3 {digest.hex()[:16]}...; sealed {sealed_size} bytes, "
                f"blake3 {tail[8:].hex()[:16]}...",
            )

    def bucket_objects(self, source: BackupSource) -> None:
        sealed = {}
        for index in self.seal.bucket:
            path = self.seal.path(index)
            sealed[path] = index
            if not self.in_scope[index]:
                continue
            data = source.read_object(path)
            if data is None:
                self.fail(True, path, MISSING, "sealed bucket object is gone")
            else:
                self.compare(index, len(data), content_digest(data))
        for name in source.object_names():
            if name not in sealed:
                if name in self.scope.resources:
                    self.unsealed_seen.add(name)
                self.fail(self.rule.covers("", "", SCOPE_BUCKET, name, name), name,
                          UNEXPECTED, "bucket object was not sealed")

    def tarball(self, source: BackupSource, limits: Limits, progress: Callable[[int], None] | None) -> None:
        checkpoint = self.seal.checkpoint
        # Fast path: the very bytes the sealer parsed, so every tar leaf is proven.
        digest, size = _hash_file(source, progress)
        identical = size == checkpoint.archive_size and hmac.compare_digest(
            digest, checkpoint.archive_digest
        )
        if identical and not checkpoint.inconsistent:
            self.report.notes.append("tarball is byte-identical to the sealed one")
            return
        if identical:  # authentic, but sealed with --force: read it to name what is inconsistent
            self.report.notes.append(
                f"tarball is byte-identical to the sealed one, which was sealed with --force "
                f"despite {checkpoint.inconsistent} inconsistent entries; read entry by entry"
            )
        else:
            self.report.notes.append("tarball differs from the sealed file; checked entry by entry")
        items = self.seal.items
        count = len(items)
        seen = bytearray(count)
        for i in self.seal.bucket:
            seen[i] = 1
        stopped: ArchiveError | None = None
        try:
            with source.open_tarball() as stream:
                entry = self._entry
                hash_content = blake3.blake3
                leaf_and_key = table.tar_leaf_and_key
                find = self.seal.find
                previous, digest = b"", hash_content(b"").digest()
                for path, data, problem in ArchiveReader(stream, limits, None).tuples():
                    index = None
                    if problem is None:
                        if data != previous:  # a -preferredversion copy repeats the bytes before it
                            digest = hash_content(data).digest()
                            previous = data
                        try:
                            # The entry's sortable leaf, as the sealer built it: the sealed one
                            # with its key is found by bisection, and equal if the entry is.
                            item, key = leaf_and_key(path, len(data), digest)
                        except PathError:
                            item = b""
                        if item:
                            index = find(item[:(item[-2] << 8) | item[-1]], path, item)
                    if index is not None and not seen[index]:
                        # The hot path: a sealed entry seen for the first time.
                        seen[index] = 1
                        if items[index] != item:
                            self.compare(index, len(data), digest)
                        if self.in_scope[index]:
                            self._manifest(path, data, key)
                    else:
                        entry(path, data, problem, index, seen)
        except ArchiveError as e:
            # The bytes are not the sealed ones (the fast path above would have proven them),
            # or a limit stopped the reading: archive_verdict decides which (one place).
            self.report.add_failure(archive_verdict(e, self.seal, source, limits))
            stopped = e
        unseen = [i for i in range(count) if not seen[i]]
        if stopped is not None:
            if unseen:
                self.report.notes.append(
                    f"reading stopped there: {len(unseen)} sealed entries were not reached")
            return
        for index in unseen:
            self.fail(self.in_scope[index], self.seal.path(index), MISSING,
                      "sealed entry is not in the archive")
        if self.report.verified and not self.report.out_of_scope_failures:
            self.report.notes.append(
                "every entry matches its seal: the archive was only recompressed or reordered"
            )

    def _entry(self, path: str, data: bytes, problem: str | None, index: int | None,
               seen: bytearray) -> None:
        """Every case but the hot one: a malformed, unsealed or repeated entry."""
        if problem is not None:
            # Not attributable to a namespace, and restore may act on it: always a failure.
            self.report.add_failure(Failure(path, MALFORMED, problem))
            return
        if index is None:
            try:
                key = key_for_tar_path(path)
            except PathError as e:
                self.report.add_failure(Failure(path, MALFORMED, str(e)))
                return
            if path in self.scope.resources:
                self.unsealed_seen.add(path)
            self.fail(self.rule.covers(key.namespace, key.resource, key.scope, key.name, path),
                      path, UNEXPECTED, "entry was not sealed")
            return
        if seen[index]:
            self.fail(self.in_scope[index], path, DUPLICATE,
                      "path appears more than once (restore keeps the last)")
            return
        raise AssertionError("a first sighting of a sealed entry takes the hot path")

    def _manifest(self, path: str, data: bytes, key: table.Fields) -> None:
        """An in-scope manifest that disagrees with its path is a warning (consistency.py)."""
        if needs_manifest_check(key):  # type: ignore[arg-type]  # reads scope, version only
            problem = check_manifest(key, data)  # type: ignore[arg-type]
            if problem is not None:
                self.report.warnings.append(Inconsistency(path, problem))

    def unknown_resources(self) -> None:
        """A requested resource neither sealed nor in the backup is a usage error, as in prove."""
        unknown = sorted(self.scope.resources - self.seal.resources - self.unsealed_seen)
        if unknown:
            raise UsageError(
                f"{unknown[0]}: no such resource in the seal or the backup {self.backup}"
                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))


def archive_verdict(error: ArchiveError, seal: TrustedSeal, source: BackupSource,
                    limits: Limits) -> Failure:
    """What an archive that stopped the reader means, decided by evidence (the one place).

    Called only when the tarball is not byte-identical to the sealed one or must be read for
    warnings. Not a gzip stream, or breaking the reader's rules: the sealed file was gzip and
    followed them, so these bytes are not the sealed ones (modified / malformed, exit 1). A
    limit hit where the sealed backup itself is that large: could not check (CannotCheck, exit
    3: raise the limit); where the sealed backup is smaller, the limit is proof of a change.
    """
    tarball = f"{seal.checkpoint.backup}.tar.gz"
    if isinstance(error, NotGzip):
        return Failure(tarball, MODIFIED, f"not the sealed file: {error.reason}")
    if not isinstance(error, LimitExceeded):
        return Failure(error.path or source.describe(), MALFORMED, error.reason)
    sealed_too = _sealed_backup_hits(error, seal, limits)
    if sealed_too:
        raise CannotCheck(f"{error}; the sealed backup {sealed_too}, so it cannot be checked "
                          "within this limit: raise it")
    detail = f"{error.reason}; the sealed backup is within the limit"
    if error.limit in ("max_entry_size", "max_path_length") and error.path:
        sealed = seal.index_of(error.path) is not None
        return Failure(error.path, MODIFIED if sealed else UNEXPECTED, detail)
    return Failure(error.path or tarball, MALFORMED, detail)


def _sealed_backup_hits(error: LimitExceeded, seal: TrustedSeal, limits: Limits) -> str:
    """How the sealed backup itself breaks the limit ``error`` reports ("" if it does not)."""
    tar = [i for i in range(len(seal.items)) if not seal.items[i].startswith(b"\0\0bucket\0")]
    def size(i: int) -> int:
        return int.from_bytes(seal.items[i][-2 - table.TAIL:-2 - 32], "big")
    if error.limit == "max_entry_size":
        index = seal.index_of(error.path) if error.path else None
        if index is not None and size(index) > limits.max_entry_size:
            return f"holds {error.path} of {size(index)} bytes"
        big = max((size(i) for i in tar), default=0)
        return f"holds an entry of {big} bytes" if big > limits.max_entry_size else ""
    if error.limit == "max_entries":
        return f"holds {len(tar)} tar entries" if len(tar) > limits.max_entries else ""
    if error.limit == "max_total_size":
        total = sum(512 + size(i) + (-size(i) & 511) for i in tar)
        return f"holds {total} bytes of tar data" if total > limits.max_total_size else ""
    if error.limit == "max_path_length":
        longest = max((len(seal.path(i).encode()) for i in tar), default=0)
        return f"holds a path of {longest} bytes" if longest > limits.max_path_length else ""
    if error.limit == "max_pax_size":
        longest = max((len(seal.path(i).encode()) for i in tar), default=0)
        return f"holds a path of {longest} bytes" if longest + 64 > limits.max_pax_size else ""
    return "may"  # a limit this function does not know: never claim tampering on it


def verify_backup(
    source: BackupSource,
    trusted: Sequence[PublicKey],
    *,
    scope: Scope = Scope(),
    seal_bytes: bytes | None = None,
    expected_uid: str | None = None,
    limits: Limits = Limits(),
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    if seal_bytes is None:
        with source.open_seal() as f:
            seal = open_seal(f, trusted, scope)
    else:
        seal = open_seal(seal_bytes, trusted, scope)
    checkpoint = seal.checkpoint
    check_identity(checkpoint, source, expected_uid)
    assert seal.signer is not None and seal.rule is not None
    report = VerifyReport(
        backup=checkpoint.backup, uid=checkpoint.uid, root=checkpoint.root,
        tree_size=checkpoint.tree_size, scope=scope.describe(),
        created=checkpoint.created, key_id=seal.signer.key_id.hex(),
        selection=scope.selection.to_json() if scope.selection is not None else None,
        resources=sorted(scope.resources),
    )
    checker = _Checker(seal, scope, report)
    _note_scope(scope, seal, report)
    report.warnings.extend(seal.copies)
    checker.bucket_objects(source)
    checker.tarball(source, limits, progress)
    checker.unknown_resources()
    return report


def _note_scope(scope: Scope, seal: TrustedSeal, report: VerifyReport) -> None:
    """The scope as checked: which namespaces it matched, and what was not used to narrow."""
    report.notes.extend(seal.scope_notes)
    rule = seal.rule
    if rule is None or rule.matcher is None:
        return
    matched = sorted(n for n in seal.namespaces if rule.matcher.namespace_selected(n))
    report.namespaces = matched
    selection = rule.matcher.selection
    if rule.matcher.patterns_matched_nothing:
        report.scope_remark = "no pattern matches a sealed namespace: Velero restores all of them"
    elif rule.matcher.matches_no_namespace:
        report.scope_remark = "matches no sealed namespace"
    if selection.unused_fields:
        report.notes.append(
            "not used to narrow the check (a superset was verified): "
            + ", ".join(f"spec.{f}" for f in selection.unused_fields))


def _hash_file(source: BackupSource, progress: Callable[[int], None] | None) -> tuple[bytes, int]:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    size = 0
    with source.open_tarball() as stream:
        while chunk := stream.read(_HASH_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
    return hasher.digest(), size
