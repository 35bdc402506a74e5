"""The chain of trust (docs/format.md §9.1): a seal in, a ``TrustedSeal`` out, nothing else.

What a reviewer reads to know when merkle-backup says VERIFIED: this module, the pure core it
builds on (``core/``: keys, leaf records, the leaf table, the RFC 9162 tree, the checkpoint
text), ``formats/seal.py`` and ``formats/strict.py`` (the strict decoders), ``signing.py``
(Ed25519) and ``selection/`` (what a scope covers): about 3,100 lines, a third of them
docstrings and comments. It does no I/O of its own (it reads only the seal
stream it is handed) and imports nothing that touches storage, networks or terminals
(tests/test_core_purity.py checks it).

Each step runs only after the one above it passed:

1. Decode the seal's head strictly (``formats.seal.read_seal_head``).
2. The signature over the exact checkpoint bytes, by one of the keys the user trusts; never a
   key from the backup (``check_signature``).
3. The checkpoint's text parses exactly, and the key it names is the one that signed it.
4. The leaf table: as many leaves as the checkpoint's tree size, hashing to its signed root.
5. Every record decodes, each key is the one its path implies, and keys strictly increase.

Version 2 (docs/format.md §7.4, §9.1): when the archive the caller hashed is the signed one, the
checkpoint records no inconsistency and the seal's leaf section hashes to the signed
``leaves-blake3``, steps 4-5 are proven by that hash (the sealer wrote those very bytes after
checking every record), so no record is decoded or hashed: a whole verification reads the
bucket objects' leaves only, a scoped one decides runs of leaves (``table.RecordTable.groups``).
Anything else takes the full steps 4-5, so every problem is still found and named.

A ``TrustedSeal`` is made only here, and only after step 2 passed. ``read_unverified`` runs
steps 1, 3, 4 and 5 without a key (``prove`` without ``--trust``: the proof's recipient checks
the signature) and returns a ``SealTable``, which no verification accepts. Which backup a seal
belongs to (name, UID) is the verifier's step, since that needs the storage.
"""

from __future__ import annotations

import bisect
import hmac
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, BinaryIO, Protocol

import blake3

from merkle_backup.consistency import Inconsistency
from merkle_backup.core import table, tree
from merkle_backup.core.checkpoint import Checkpoint, CheckpointError, parse_checkpoint
from merkle_backup.core.keys import SCOPE_BUCKET
from merkle_backup.errors import CannotCheck, FormatError, NotAuthentic, SignatureError
from merkle_backup.formats.seal import (
    LEAF_ERRORS,
    SealHead,
    check_framing,
    leaf_unpacker,
    read_leaves,
    read_seal_head,
)
from merkle_backup.selection import Scope, ScopeRule
from merkle_backup.signing import PublicKey
from merkle_backup.velero import PREFERRED_SUFFIX


class Signed(Protocol):
    """A seal's or a proof file's signed part, not yet verified."""

    @property
    def checkpoint(self) -> bytes: ...
    @property
    def signatures(self) -> tuple[bytes, ...]: ...


@dataclass(frozen=True)
class SealTable:
    """A seal's leaf table checked against its checkpoint (steps 1, 3-5), the signature not.

    ``in_scope[i]`` says whether leaf ``i`` is covered by the scope it was read for; the rest is
    what the scope's report needs.
    """

    checkpoint: Checkpoint
    head: SealHead
    leaves: table.LeafTable
    in_scope: bytearray
    bucket: list[int]  # indices of bucket-object leaves
    namespaces: set[str]  # namespaces with leaves (collected for a scope that is not whole)
    resources: set[str]  # scope.resources that have a leaf
    copies: list[Inconsistency]  # in-scope -preferredversion copies unlike their classic copy
    merkle: tree.MerkleTree | None  # every level, when asked for (to prove leaves)
    rule: ScopeRule
    scope_notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrustedSeal(SealTable):
    """A seal whose signature, checkpoint and leaf table were all checked (steps 1-5)."""

    signer: PublicKey | None = None  # always set: open_seal is the only maker
    # The archive the caller hashed is the sealed file (size and BLAKE3 as signed).
    archive_proven: bool = False
    # Steps 4-5 were proven by the signed leaf-section hash (version 2), not record by record.
    table_proven: bool = False


@dataclass(frozen=True)
class SignedSeal:
    """Steps 1-3 passed: a seal's head whose checkpoint a trusted key signed. Its leaf table is
    not checked yet (``open_table``); no verification accepts this."""

    head: SealHead
    checkpoint: Checkpoint
    signer: PublicKey


def check_signature(signed: Signed, trusted: Sequence[PublicKey]) -> tuple[Checkpoint, PublicKey]:
    """Steps 2-3: a signature over the exact checkpoint bytes by a key the user named, the
    checkpoint's key line at that signature's place naming that key (docs/format.md §9.1).

    A seal may carry several signatures (version 3, overlap rotation, §7.5): any trusted key
    that verified one is enough, and it is the key reported. A trusted key with a bound
    (``not_after``, §6.3) counts only for a checkpoint created no later than its bound.
    """
    if not trusted:
        raise CannotCheck("no trusted public key given")
    signatures = signed.signatures
    verified: list[tuple[PublicKey, int]] = []
    for key in trusted:
        for index, signature in enumerate(signatures):
            try:
                key.verify(signature, signed.checkpoint)
            except SignatureError:
                continue
            verified.append((key, index))
            break
    if not verified:
        names = ", ".join(k.source for k in trusted)
        raise SignatureError(f"the checkpoint is not signed by any trusted key ({names})")
    checkpoint = _parse(signed.checkpoint, "signed checkpoint")
    if len(signatures) != len(checkpoint.key_ids):
        raise FormatError(f"the checkpoint names {len(checkpoint.key_ids)} keys but "
                          f"{len(signatures)} signatures come with it")
    retired = []
    for key, index in verified:
        if not hmac.compare_digest(checkpoint.key_ids[index], key.key_id):
            raise NotAuthentic("the checkpoint names another key than the one that signed it")
        if key.not_after is not None and checkpoint.created > key.not_after:
            retired.append(key)
            continue
        return checkpoint, key
    names = ", ".join(f"{k.source} (not after {_time(k.not_after)})" for k in retired)
    raise SignatureError(f"the checkpoint (created {_time(checkpoint.created)}) is signed only "
                         f"by keys retired before it: {names}")


def _time(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t is not None else "-"


def open_seal(seal: bytes | BinaryIO, trusted: Sequence[PublicKey], scope: Scope = Scope(),
              *, keep_tree: bool = False) -> TrustedSeal:
    """Steps 1-5. ``seal`` is the seal's bytes or a seekable file at its start; with
    ``keep_tree`` every level of the Merkle tree is kept (to prove leaves)."""
    f = io.BytesIO(seal) if isinstance(seal, bytes) else seal
    return open_table(f, open_signed(f, trusted), scope, keep_tree=keep_tree)


def open_signed(f: BinaryIO, trusted: Sequence[PublicKey]) -> SignedSeal:
    """Steps 1-3 on a seekable seal file at its start; ``open_table`` on the same file next."""
    head = read_seal_head(f, framing=False)
    checkpoint, signer = check_signature(head, trusted)
    if checkpoint.version != head.version:  # read_seal_head matched the context line already
        raise FormatError(
            f"seal version {head.version} holds a checkpoint of version {checkpoint.version}")
    return SignedSeal(head, checkpoint, signer)


def open_table(f: BinaryIO, signed: SignedSeal, scope: Scope = Scope(), *,
               keep_tree: bool = False, archive: tuple[bytes, int] | None = None,
               native: Any = None) -> TrustedSeal:
    """Steps 4-5 for a seal ``open_signed`` read from ``f``. ``archive``: (BLAKE3, size) of the
    tarball as the caller read it, if it did; when it is the signed one, ``archive_proven``.
    ``native``: the native engine (``archive.engine.native``, passed in: this module imports
    no archive code), which then takes the record pass of a whole verification.
    """
    head, checkpoint, signer = signed.head, signed.checkpoint, signed.signer
    archive_proven = archive is not None and archive[1] == checkpoint.archive_size and \
        hmac.compare_digest(archive[0], checkpoint.archive_digest)
    if archive_proven and checkpoint.leaves_digest is not None and not keep_tree \
            and not checkpoint.inconsistent:
        if head.leaf_count != checkpoint.tree_size:
            raise NotAuthentic(
                f"seal holds {head.leaf_count} leaves, its checkpoint says {checkpoint.tree_size}")
        proven = _ProvenTable(head, checkpoint, scope).run(f)
        if proven is not None:
            return TrustedSeal(checkpoint, head, **proven, signer=signer, archive_proven=True,
                               table_proven=True)
    if not head.framing_checked:
        check_framing(f, head)
    fields = _TablePass(head, checkpoint, scope, keep_tree, native).run(f)
    return TrustedSeal(checkpoint, head, **fields, signer=signer, archive_proven=archive_proven)


def read_unverified(
    seal: BinaryIO, scope: Scope = Scope(), *, keep_tree: bool = False
) -> SealTable:
    """Steps 1 and 3-5 without a key: a table consistent with its checkpoint, nothing more."""
    head = read_seal_head(seal)
    checkpoint = _parse(head.checkpoint, "seal checkpoint")
    if checkpoint.version != head.version:
        raise FormatError(
            f"seal version {head.version} holds a checkpoint of version {checkpoint.version}")
    return SealTable(checkpoint, head, **_TablePass(head, checkpoint, scope, keep_tree).run(seal))


def _parse(text: bytes, what: str) -> Checkpoint:
    try:
        return parse_checkpoint(text)
    except CheckpointError as e:
        raise FormatError(f"{what} is malformed: {e}") from e


class _ProvenTable:
    """Steps 4-5 by one hash (version 2): the leaf section, read once in chunks, hashes to the
    signed ``leaves-blake3``. Only what the scope needs is taken from the very bytes hashed
    (never read again, so a file changed meanwhile cannot slip in): for the whole backup the
    bucket objects' leading run of records; for another scope every record (one msgpack call
    per chunk), decided run by run. ``run`` returns None when the hash differs: the caller then
    takes the full steps 4-5, which name what is wrong."""

    def __init__(self, head: SealHead, checkpoint: Checkpoint, scope: Scope) -> None:
        self.head, self.checkpoint, self.scope = head, checkpoint, scope
        self.rule = ScopeRule(scope, checkpoint.backup)

    def run(self, f: BinaryIO) -> dict[str, Any] | None:
        count = self.head.leaf_count
        whole = self.scope.whole
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        unpacker = leaf_unpacker()
        records: list[bytes] = []
        bucket_run = True  # whole: still in the leading bucket records
        f.seek(self.head.leaves_at)
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
            if whole and not bucket_run:
                continue
            unpacker.feed(chunk)
            try:
                records.extend(unpacker)
            except LEAF_ERRORS:  # not the sealer's bytes: the hash will say so
                records, whole, bucket_run = [], True, False
                continue
            if whole:
                run = table.bucket_prefix_length(records)
                if run < len(records):
                    del records[run:]
                    bucket_run = False
        if not hmac.compare_digest(hasher.digest(), self.checkpoint.leaves_digest or b""):
            return None
        # The sealer's own bytes: count records, each valid, strictly ordered, under the root.
        if whole:
            in_scope = bytearray(b"\x01") * count
            leaves: table.LeafTable = table.LeafPrefix(
                [table.check_record(r).item for r in records], count)
            return self._fields(leaves, in_scope, list(range(len(records))), set(), set())
        if len(records) != count:
            raise FormatError("signed leaf section holds another number of leaves")
        record_table = table.RecordTable(records)
        in_scope, namespaces, resources = self._scope(record_table)
        bucket = list(range(record_table.bucket_run()))
        return self._fields(record_table, in_scope, bucket, namespaces, resources)

    def _fields(self, leaves: table.LeafTable, in_scope: bytearray, bucket: list[int],
                namespaces: set[str], resources: set[str]) -> dict[str, Any]:
        return {"leaves": leaves, "in_scope": in_scope, "bucket": bucket,
                "namespaces": namespaces, "resources": resources, "copies": [],
                "merkle": None, "rule": self.rule, "scope_notes": self.rule.notes}

    def _scope(self, leaves: table.RecordTable) -> tuple[bytearray, set[str], set[str]]:
        """What ``_TablePass`` marks leaf by leaf, decided once per run of leaves sharing
        namespace, resource and scope (all that a rule reads of a leaf, but for the names of
        bucket objects and the paths of single resources: runs holding those are decided leaf
        by leaf, exactly as ``_TablePass`` decides them, side effects on the rule included)."""
        in_scope = bytearray(len(leaves))
        namespaces: set[str] = set()
        resources: set[str] = set()
        wanted: set[int] = set()
        for path in self.scope.resources:
            i = leaves.index_of(path)
            if i is not None:
                resources.add(path)
                wanted.add(i)
        groups = list(leaves.groups())
        self._decide(leaves, groups, in_scope, wanted, everything=True)
        for g in groups:
            namespaces.add(g.namespace)
        if self.rule.finish():  # as _TablePass._widen: only ever adds leaves
            self._decide(leaves, groups, in_scope, wanted, everything=False)
        namespaces.discard("")
        return in_scope, namespaces, resources

    def _decide(self, leaves: table.RecordTable, groups: list[table.Group], in_scope: bytearray,
                wanted: set[int], *, everything: bool) -> None:
        covers, covers_group = self.rule.covers, self.rule.covers_group
        marked = sorted(wanted)
        for g in groups:
            k = bisect.bisect_left(marked, g.begin)
            if g.scope == SCOPE_BUCKET or (k < len(marked) and marked[k] < g.end):
                for i in range(g.begin, g.end):
                    if everything or not in_scope[i]:
                        name = leaves.name(i)
                        in_scope[i] = covers(g.namespace, g.resource, g.scope, name, leaves.path(i))
            elif (everything or not all(in_scope[g.begin:g.end])) and \
                    covers_group(g.namespace, g.resource, g.scope, g.name):
                in_scope[g.begin:g.end] = b"\x01" * (g.end - g.begin)


# Records per call into the native record pass: bounds what is held besides the items.
_NATIVE_CHUNK = 1 << 16

# What _TablePass._records finds: the items, the scope marks, the bucket objects' indexes, the
# namespaces and requested resources seen, the copy findings, the first path out of order.
_Found = tuple[list[bytes], bytearray, list[int], set[str], set[str],
               list[tuple[int, Inconsistency]], str | None]


class _TablePass:
    """Steps 4-5 in one streaming pass over the records as bytes (core/table.py), which also
    marks what the scope covers; only the root is kept unless ``keep_tree`` (O(log n) memory)."""

    def __init__(
        self, head: SealHead, checkpoint: Checkpoint, scope: Scope, keep_tree: bool,
        native: Any = None,
    ) -> None:
        if head.leaf_count != checkpoint.tree_size:
            raise NotAuthentic(
                f"seal holds {head.leaf_count} leaves, its checkpoint says {checkpoint.tree_size}")
        self.head, self.checkpoint, self.scope = head, checkpoint, scope
        self.hashes: list[bytes] | None = [] if keep_tree else None
        self.root = tree.RootBuilder()
        self.rule = ScopeRule(scope, checkpoint.backup)
        # The native record pass covers a whole verification (no scope to mark, no resources
        # asked for, no tree to keep); _records stays the reference (tests/test_engine.py).
        self.native = native if (native is not None and keep_tree is False and scope.whole
                                 and not scope.resources) else None

    def run(self, f: BinaryIO) -> dict[str, Any]:
        leaves = read_leaves(f, self.head)
        add_leaf = self.hashes.append if self.hashes is not None else self.root.add_unchecked
        native_root = None
        try:
            if self.native is not None:
                found, invalid, native_root = self._records_native(leaves)
            else:
                found = self._records(leaves, add_leaf)
                invalid = None
        except FormatError:
            raise  # the file is not a seal (any more): nothing to hash
        except ValueError as e:
            invalid = e
            for leaf in leaves:  # the root first: a changed table is not authentic
                add_leaf(blake3.blake3(tree.LEAF_PREFIX + leaf).digest())
        merkle = tree.MerkleTree(self.hashes) if self.hashes is not None else None
        root = merkle.root if merkle is not None else (
            native_root if native_root is not None else self.root.root())
        if not hmac.compare_digest(root, self.checkpoint.root):  # step 4
            raise NotAuthentic("the seal's leaf table does not hash to its signed root")
        if invalid is not None:  # step 5
            raise FormatError(f"signed leaf table holds an invalid record: {invalid}") from invalid
        items, in_scope, bucket, namespaces, resources, copies, out_of_order = found
        if out_of_order is not None:
            raise FormatError(f"signed leaf table is not in strict key order at {out_of_order}")
        leaf_table = table.LeafTable(items)
        self._widen(leaf_table, in_scope)
        namespaces.discard("")
        return {
            "leaves": leaf_table, "in_scope": in_scope, "bucket": bucket,
            "namespaces": namespaces, "resources": resources,
            "copies": [c for i, c in copies if in_scope[i]], "merkle": merkle,
            "rule": self.rule, "scope_notes": self.rule.notes,
        }

    def _records(self, leaves: Iterable[bytes], add_leaf: Callable[[bytes], None]) -> _Found:
        # The hot loop: names bound to locals, one pass, no call that could be avoided.
        """Hash each record into the tree, decode it strictly, check the order, mark the scope."""
        count = self.head.leaf_count
        whole = self.scope.whole
        wanted = self.scope.resources
        covers_key = self.rule.covers_key
        check_record = table.check_record
        check_copy = table.CopyChecker().check
        leaf_hash, leaf_prefix, tail = blake3.blake3, tree.LEAF_PREFIX, table.TAIL
        items: list[bytes] = []
        in_scope = bytearray(b"\x01") * count if whole else bytearray(count)
        bucket: list[int] = []
        namespaces: set[str] = set()
        resources: set[str] = set()
        copies: list[tuple[int, Inconsistency]] = []
        previous: bytes | None = None
        out_of_order: str | None = None
        for i, leaf in enumerate(leaves):
            add_leaf(leaf_hash(leaf_prefix + leaf).digest())
            sort_key, namespace, kind, path, item = check_record(leaf)
            items.append(item)
            # Keys strictly increase (§3.2): the NUL-joined components compare as the keys do.
            if previous is not None and not previous < sort_key and out_of_order is None:
                out_of_order = path
            previous = sort_key
            if kind == SCOPE_BUCKET:
                bucket.append(i)
            if wanted and path in wanted:
                resources.add(path)
            if not whole:
                namespaces.add(namespace)
                if covers_key(sort_key, path):
                    in_scope[i] = 1
            problem = check_copy(sort_key, leaf[-tail:], leaf)
            if problem is not None:
                copies.append((i, Inconsistency(path, problem)))
        return items, in_scope, bucket, namespaces, resources, copies, out_of_order

    def _records_native(self, leaves: Iterator[bytes]) -> tuple[Any, ValueError | None, bytes]:
        """``_records`` for a whole verification on the native engine (_engine.LeafPass and
        table_order): the same items, bucket indices, findings and order check, and the root.
        Records the engine's fast path is not sure of are decoded here by the reference
        (table.check_record); an invalid one stops the checking, never the hashing (the root
        is compared first: a changed table is not authentic)."""
        native = self.native
        assert native is not None
        count = self.head.leaf_count
        records_pass = native.LeafPass(blake3.blake3)
        check_record = table.check_record
        items: list[bytes] = []
        invalid: ValueError | None = None
        while chunk := list(islice(leaves, _NATIVE_CHUNK)):
            got, slow = records_pass.records(chunk, invalid is None)
            if invalid is not None:
                continue
            try:
                for j in slow:
                    got[j] = check_record(chunk[j]).item
            except ValueError as e:
                invalid = e
                continue
            items.extend(got)
        root, _ = records_pass.root()
        if invalid is not None:
            return None, invalid, root
        bucket, found, out = native.table_order(
            items, SCOPE_BUCKET.encode(), PREFERRED_SUFFIX.encode())
        path = table.path_of
        record = table.record_of
        copies = [(i, Inconsistency(path(record(items[i])), table.NO_CLASSIC_COPY if twin < 0
                                    else table.DIFFERS_FROM_CLASSIC.format(
                                        path(record(items[twin])))))
                  for i, twin in found]
        out_of_order = path(record(items[out])) if out >= 0 else None
        in_scope = bytearray(b"\x01") * count
        return (items, in_scope, bucket, set(), set(), copies, out_of_order), None, root

    def _widen(self, leaves: table.LeafTable, in_scope: bytearray) -> None:
        """What Velero decides from the whole backup can widen the scope (selection.Matcher
        .finish): decide the leaves left out again. It only ever adds leaves."""
        if self.rule.finish():
            for i in range(len(leaves)):
                if not in_scope[i]:
                    in_scope[i] = self.rule.covers_key(leaves.sort_key(i), leaves.path(i))
