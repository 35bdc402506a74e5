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
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Protocol, Sequence

import blake3

from merkle_backup.archive import ArchiveReader, Limits
from merkle_backup.builder import BackupSource, bulk_pass
from merkle_backup.consistency import (
    PREFERRED_SUFFIX,
    Inconsistency,
    check_manifest,
    needs_manifest_check,
)
from merkle_backup.core import table, tree
from merkle_backup.core.checkpoint import UNKNOWN_UID, Checkpoint, CheckpointError, parse_checkpoint
from merkle_backup.core.keys import (
    SCOPE_BUCKET,
    SCOPE_CLUSTER,
    SCOPE_NAMESPACED,
    PathError,
    ResourceKey,
    key_for_bucket_object,
    key_for_tar_path,
)
from merkle_backup.core.leaf import content_digest
from merkle_backup.errors import (
    ArchiveError,
    CannotCheck,
    FormatError,
    NotAuthentic,
    NotGzip,
    SignatureError,
)
from merkle_backup.formats.seal import SealHead, read_leaves, read_seal_head
from merkle_backup.signing import PublicKey
from merkle_backup.storage.files import NotRegularFile
from merkle_backup.storage.local import bare_tarball_name
from merkle_backup.velero import BACKUP_OBJECT, parse_backup_object

# Problems a failure can name (docs/format.md §9.2).
MODIFIED = "modified"
MISSING = "missing"
UNEXPECTED = "unexpected"
DUPLICATE = "duplicate"
MALFORMED = "malformed"

# Bucket objects a restore reads besides the tarball (../shared/VELERO.md §2-3).
_RESTORE_SIDECARS = (
    "-podvolumebackups.json.gz",
    "-volumesnapshots.json.gz",
    "-volumeinfo.json.gz",
    "-csi-volumesnapshots.json.gz",
    "-csi-volumesnapshotcontents.json.gz",
    "-csi-volumesnapshotclasses.json.gz",
)
_HASH_CHUNK = 4 * 2**20
MAX_LISTED_FAILURES = 1000
_PREFERRED = PREFERRED_SUFFIX.encode()  # a sort key (no terminator) ends with its version


@dataclass(frozen=True)
class Scope:
    """What a verification covers. Empty namespaces and resources: the whole backup."""

    namespaces: frozenset[str] = frozenset()
    include_cluster_resources: bool = False
    resources: frozenset[str] = frozenset()

    @property
    def whole(self) -> bool:
        return not self.namespaces and not self.resources and not self.include_cluster_resources

    def covers(self, key: ResourceKey, path: str, backup: str) -> bool:
        return self.covers_parts(key.namespace, key.scope, path, backup)

    def covers_parts(self, namespace: str, scope: str, path: str, backup: str) -> bool:
        """``covers`` from a key's namespace and scope (no ResourceKey needed)."""
        if self.whole:
            return True
        if path in self.resources and scope != SCOPE_BUCKET:
            return True
        if not self.namespaces and not self.include_cluster_resources:
            return False
        if scope == SCOPE_BUCKET:  # a namespace restore reads these objects too
            return path == BACKUP_OBJECT or any(path == backup + s for s in _RESTORE_SIDECARS)
        if namespace in self.namespaces:
            return True
        # is_cluster_scoped(key): a cluster-scoped resource other than a Namespace object
        return self.include_cluster_resources and scope == SCOPE_CLUSTER and namespace == ""

    def describe(self) -> str:
        if self.whole:
            return "whole backup"
        parts = [f"namespace {n}" for n in sorted(self.namespaces)]
        if self.include_cluster_resources:
            parts.append("cluster-scoped resources")
        parts += [f"resource {p}" for p in sorted(self.resources)]
        return ", ".join(parts)


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
    namespaces: set[str]  # namespaces with leaves (only collected for a namespace scope)
    resources: set[str]  # scope.resources that have a tar leaf
    copies: list[Inconsistency]  # in-scope -preferredversion copies unlike their classic copy
    merkle: tree.MerkleTree | None  # every level, when asked for (to prove leaves)

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
    backup = checkpoint.backup
    whole = scope.whole
    in_scope = bytearray(b"\x01") * count if whole else bytearray(count)
    bucket: list[int] = []
    namespaces: set[str] = set()
    resources: set[str] = set()
    copies: list[Inconsistency] = []
    check_record = table.check_record
    previous = None
    out_of_order = None
    twin_id = twin = None
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
            elif scope.resources and path in scope.resources:
                resources.add(path)
            if not whole:
                if scope.namespaces:
                    namespaces.add(namespace)
                if not scope.covers_parts(namespace, kind, path, backup):
                    continue
                in_scope[i] = 1
            # consistency.check_copies over the in-scope leaves, on sort keys.
            if kind == SCOPE_CLUSTER or kind == SCOPE_NAMESPACED:
                if sort_key.endswith(b"\0"):  # version "": a classic copy
                    twin_id, twin = sort_key, leaf
                elif sort_key.endswith(_PREFERRED):
                    if twin is None or sort_key[: sort_key.rindex(b"\0") + 1] != twin_id:
                        copies.append(Inconsistency(path, table.NO_CLASSIC_COPY))
                    elif twin[-table.TAIL:] != leaf[-table.TAIL:]:
                        copies.append(Inconsistency(
                            path, table.DIFFERS_FROM_CLASSIC.format(table.path_of(twin))))
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
    return TrustedSeal(checkpoint, signer, items, in_scope, bucket, namespaces, resources, copies,
                       merkle)


def check_identity(checkpoint: Checkpoint, source: BackupSource, expected_uid: str | None) -> None:
    """Step 2b: a validly signed seal of another backup is a failure."""
    names = {source.name, bare_tarball_name(source.name)}
    if checkpoint.backup not in names:
        raise NotAuthentic(
            f"the seal is for backup {checkpoint.backup!r}, not {source.name!r}"
        )
    try:
        data = source.read_object(BACKUP_OBJECT)
    except NotRegularFile:
        data = None  # not the sealed object: bucket_objects names it as modified
    if data is not None:
        info = parse_backup_object(data, source.describe())
        if info.uid != checkpoint.uid:
            raise NotAuthentic(
                f"the seal is for backup {checkpoint.backup} uid {checkpoint.uid}, "
                f"but {BACKUP_OBJECT} has uid {info.uid}"
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
            try:
                data = source.read_object(path)
            except NotRegularFile as e:  # a link, FIFO, device or folder in its place
                self.fail(True, path, MODIFIED, e.reason)
                continue
            if data is None:
                self.fail(True, path, MISSING, "sealed bucket object is gone")
            else:
                self.compare(index, len(data), content_digest(data))
        for name in source.object_names():
            if name not in sealed:
                kind = getattr(source, "non_regular", lambda _: None)(name)
                self.fail(self.scope.covers_parts("", SCOPE_BUCKET, name, self.backup), name,
                          UNEXPECTED, f"is {kind}, not a regular file; bucket object was not "
                          "sealed" if kind else "bucket object was not sealed")

    def tarball(self, source: BackupSource, limits: Limits, progress: Callable[[int], None] | None) -> None:
        checkpoint = self.seal.checkpoint
        # Fast path: the very bytes the sealer parsed, so every tar leaf is proven.
        try:
            digest, size = _hash_file(source, progress)
        except NotRegularFile as e:  # the sealed tarball's place holds a link, FIFO, device
            self.report.add_failure(Failure(e.path, MODIFIED, e.reason))
            return
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
        except NotGzip:
            raise  # nothing to compare at all: could not check (exit 3)
        except ArchiveError as e:
            self.report.add_failure(Failure(e.path or source.describe(), MALFORMED, e.reason))
        for index in range(count):
            if not seen[index]:
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
            self.fail(self.scope.covers(key, path, self.backup), path, UNEXPECTED,
                      "entry was not sealed")
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


@bulk_pass()
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
    report = VerifyReport(
        backup=checkpoint.backup, uid=checkpoint.uid, root=checkpoint.root,
        tree_size=checkpoint.tree_size, scope=scope.describe(),
    )
    checker = _Checker(seal, scope, report)
    _note_unknown_scope(scope, seal, report)
    report.warnings.extend(seal.copies)
    checker.bucket_objects(source)
    checker.tarball(source, limits, progress)
    return report


def _note_unknown_scope(scope: Scope, seal: TrustedSeal, report: VerifyReport) -> None:
    for namespace in sorted(scope.namespaces - seal.namespaces):
        report.notes.append(f"namespace {namespace} has no sealed entries: it was not backed up")
    for path in sorted(scope.resources - seal.resources):
        report.add_failure(Failure(path, MISSING, "no such resource in the seal"))


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

