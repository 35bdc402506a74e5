"""Verify a backup against its seal: the whole archive, what a restore reads, or single resources.

The workflow around the chain of trust (trust.py, steps 1-5), each step only after the one above:

6. The seal names this backup (``check_identity``): its folder's or prefix's own name, and the
   UID the user gives.
7. The bucket objects in scope, each against its leaf (``velero-backup.json`` always).
8. The tarball: when the whole file hashes to the signed archive digest, every entry is proven
   at once (the sealer parsed exactly those bytes strictly). Otherwise entry by entry, through
   the same strict reader the sealer used; a stopped read is judged by ``archive_verdict``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import blake3

from merkle_backup.archive import ArchiveReader, Limits, engine
from merkle_backup.archive.reader import SealSink
from merkle_backup.consistency import (
    Inconsistency,
    check_manifest,
    manifest_decoder,
    needs_manifest_check,
)
from merkle_backup.core import table
from merkle_backup.core.checkpoint import UNKNOWN_UID, Checkpoint
from merkle_backup.core.keys import SCOPE_BUCKET, PathError, key_for_tar_path
from merkle_backup.core.leaf import content_digest
from merkle_backup.errors import (
    ArchiveError,
    CannotCheck,
    LimitExceeded,
    NotAuthentic,
    NotGzip,
    UsageError,
)
from merkle_backup.progress import listens, phase, tarball_total
from merkle_backup.selection import Scope
from merkle_backup.signing import PublicKey
from merkle_backup.storage.files import NotRegularFile
from merkle_backup.storage.source import BackupSource
from merkle_backup.trust import TrustedSeal, open_signed, open_table

# Problems a failure can name (docs/format.md §9.2).
MODIFIED = "modified"
MISSING = "missing"
UNEXPECTED = "unexpected"
DUPLICATE = "duplicate"
MALFORMED = "malformed"

TABLE_PROVEN = "leaf table is byte-identical to the sealed one (leaves-blake3): no record read"
_HASH_CHUNK = 4 * 2**20
MAX_LISTED_FAILURES = 1000


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

    def to_json(self) -> dict[str, Any]:
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
        shown = (
            "unknown (sealed from a bare tarball)"
            if checkpoint.uid == UNKNOWN_UID
            else checkpoint.uid
        )
        raise NotAuthentic(f"the seal is for backup uid {shown}, expected {expected_uid}")


class _Checker:
    """Steps 4-5: compares what is stored with the sealed leaves, collecting failures."""

    def __init__(self, seal: TrustedSeal, scope: Scope, report: VerifyReport) -> None:
        self.seal = seal
        self.scope = scope
        self.report = report
        self.backup = seal.checkpoint.backup
        self.leaves = seal.leaves
        self.in_scope = seal.in_scope
        self.rule = seal.rule
        self.unsealed_seen: set[str] = set()  # scope.resources found unsealed in the backup
        report.checked = sum(self.in_scope)

    def fail(self, in_scope: bool | int, path: str, problem: str, detail: str = "") -> None:
        if in_scope:
            self.report.add_failure(Failure(path, problem, detail))
        else:
            self.report.out_of_scope_failures += 1

    def compare(self, index: int, size: int, digest: bytes) -> None:
        tail = self.leaves.tail(index)  # u64be(size) ‖ H(content)
        if tail != size.to_bytes(8, "big") + digest:
            sealed_size = int.from_bytes(tail[:8], "big")
            self.fail(
                self.in_scope[index], self.leaves.path(index), MODIFIED,
                f"{size} bytes, blake3 {digest.hex()[:16]}...; sealed {sealed_size} bytes, "
                f"blake3 {tail[8:].hex()[:16]}...",
            )

    def bucket_objects(self, source: BackupSource) -> None:
        sealed = {}
        for index in self.seal.bucket:
            path = self.leaves.path(index)
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
                if name in self.scope.resources:
                    self.unsealed_seen.add(name)
                kind = getattr(source, "non_regular", lambda _: None)(name)
                self.fail(self.rule.covers("", "", SCOPE_BUCKET, name, name), name,
                          UNEXPECTED, f"is {kind}, not a regular file; bucket object was not "
                          "sealed" if kind else "bucket object was not sealed")

    def tarball(self, source: BackupSource, limits: Limits, not_regular: NotRegularFile | None,
                progress: Callable[[int], None] | None, total: int | None) -> None:
        checkpoint = self.seal.checkpoint
        # Fast path: the very bytes the sealer parsed, so every tar leaf is proven.
        if not_regular is not None:  # the sealed tarball's place holds a link, FIFO, device
            self.report.add_failure(Failure(not_regular.path, MODIFIED, not_regular.reason))
            return
        identical = self.seal.archive_proven
        if identical and not checkpoint.inconsistent:
            self.report.notes.append("tarball is byte-identical to the sealed one")
            if self.seal.table_proven:
                self.report.notes.append(TABLE_PROVEN)
            return
        if identical:  # authentic, but sealed with --force: read it to name what is inconsistent
            self.report.notes.append(
                f"tarball is byte-identical to the sealed one, which was sealed with --force "
                f"despite {checkpoint.inconsistent} inconsistent entries; read entry by entry"
            )
        else:
            self.report.notes.append("tarball differs from the sealed file; checked entry by entry")
        phase(progress, "checking entry by entry", total)
        leaves = self.leaves
        count = len(leaves)
        seen = bytearray(count)
        for i in self.seal.bucket:
            seen[i] = 1
        stopped: ArchiveError | None = None
        # On the native path the engine takes each clean entry in Velero's layout whose
        # manifest agrees with its path, as it does for the sealer, and appends its sortable
        # leaf here instead of yielding it; they are compared in stream order (_taken) before
        # the next entry the engine hands back. A manifest that disagrees is handed back, so
        # the loop below warns about it exactly as before.
        taken: list[bytes] = []
        sink = SealSink(taken, manifest_decoder())
        try:
            with source.open_tarball() as stream:
                entry = self._entry
                hash_content = blake3.blake3
                leaf_and_key = table.tar_leaf_and_key
                find = leaves.find_item
                previous, digest = b"", hash_content(b"").digest()
                again = progress if listens(progress) else None  # plain callers: one pass
                for path, data, problem in ArchiveReader(stream, limits, again).tuples(sink):
                    if taken:
                        self._taken(taken, seen)
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
                            index = find(item, path)
                    if index is not None and not seen[index]:
                        # The hot path: a sealed entry seen for the first time.
                        seen[index] = 1
                        if not leaves.matches(index, item):
                            self.compare(index, len(data), digest)
                        if self.in_scope[index]:
                            self._manifest(path, data, key)
                    else:
                        entry(path, data, problem, index, seen)
                if taken:
                    self._taken(taken, seen)
        except ArchiveError as e:
            if taken:  # entries the engine took before the reader stopped
                self._taken(taken, seen)
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
            self.fail(self.in_scope[index], leaves.path(index), MISSING,
                      "sealed entry is not in the archive")
        if self.report.verified and not self.report.out_of_scope_failures:
            self.report.notes.append(
                "every entry matches its seal: the archive was only recompressed or reordered"
            )

    def _taken(self, taken: list[bytes], seen: bytearray) -> None:
        """The hot path for the sortable leaves of entries the native engine took (their
        manifests agree with their paths: no warning to give), in stream order; then empties
        ``taken``. The same steps as for a yielded entry; a leaf's path is rebuilt from its key
        (table.record_of) only when the sealed leaf is not byte-identical to it."""
        leaves = self.leaves
        find = leaves.find
        native = engine.native
        i, n = 0, len(taken)
        while True:
            # The common case in C: the sealed leaf is this very one, seen for the first time.
            i = leaves.take_equal(taken, i, seen, native)
            if i >= n:
                break
            item = taken[i]
            i += 1
            key = table.sort_key_of(item)
            index = find(key, "", item)  # the sealed leaf is this very one (the common case)
            path = ""
            if index is None:
                path = table.path_of(table.record_of(item))
                index = find(key, path, item)
            if index is not None and not seen[index]:
                seen[index] = 1
                if not leaves.matches(index, item):
                    tail = item[-2 - table.TAIL:-2]
                    self.compare(index, int.from_bytes(tail[:8], "big"), tail[8:])
            else:
                self._entry(path or table.path_of(table.record_of(item)), b"", None, index, seen)
        taken.clear()

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
        sealed = seal.leaves.index_of(error.path) is not None
        return Failure(error.path, MODIFIED if sealed else UNEXPECTED, detail)
    return Failure(error.path or tarball, MALFORMED, detail)


def _sealed_backup_hits(error: LimitExceeded, seal: TrustedSeal, limits: Limits) -> str:
    """How the sealed backup itself breaks the limit ``error`` reports ("" if it does not)."""
    leaves = seal.leaves
    tar = [i for i in range(len(leaves)) if not leaves.is_bucket_object(i)]
    size = leaves.size
    if error.limit == "max_entry_size":
        index = leaves.index_of(error.path) if error.path else None
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
        longest = max((len(leaves.path(i).encode()) for i in tar), default=0)
        return f"holds a path of {longest} bytes" if longest > limits.max_path_length else ""
    if error.limit == "max_pax_size":
        longest = max((len(leaves.path(i).encode()) for i in tar), default=0)
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
    not_regular: NotRegularFile | None = None
    with source.open_seal() if seal_bytes is None else nullcontext(io.BytesIO(seal_bytes)) as f:
        signed = open_signed(f, trusted)
        check_identity(signed.checkpoint, source, expected_uid)
        # The tarball is hashed before the table is checked: when it is the sealed file and
        # the seal's leaf section is unchanged (version 2), no record needs reading (trust.py).
        archive = None
        total = tarball_total(source, progress)  # asked once (for S3 it may cost a HEAD)
        phase(progress, "hashing the tarball", total)
        try:
            archive = _hash_file(source, progress)
        except NotRegularFile as e:
            not_regular = e
        # Its leaf section is read once or twice (framing, then records) or only hashed (v2):
        # no honest byte total up front, so the pass shows its elapsed time.
        phase(progress, "reading the seal, checking its table", None)
        seal = open_table(f, signed, scope, archive=archive, native=engine.native)
    checkpoint = seal.checkpoint
    assert seal.signer is not None
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
    checker.tarball(source, limits, not_regular, progress, total)
    checker.unknown_resources()
    return report


def _note_scope(scope: Scope, seal: TrustedSeal, report: VerifyReport) -> None:
    """The scope as checked: which namespaces it matched, and what was not used to narrow."""
    report.notes.extend(seal.scope_notes)
    rule = seal.rule
    if rule.matcher is None:
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
