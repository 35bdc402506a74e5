"""The chain of trust (docs/format.md §9.1): a seal in, a ``TrustedSeal`` out, nothing else.

What a reviewer reads to know when merkle-backup says VERIFIED: this module, the pure core it
builds on (``core/``: keys, leaf records, the leaf table, the RFC 9162 tree, the checkpoint
text), ``formats/seal.py`` (the strict decoder), ``signing.py`` (Ed25519) and ``selection.py``
(what a scope covers): about 2,300 lines. It does no I/O of its own (it reads only the seal
stream it is handed) and imports nothing that touches storage, networks or terminals
(tests/test_core_purity.py checks it).

Each step runs only after the one above it passed:

1. Decode the seal's head strictly (``formats.seal.read_seal_head``).
2. The signature over the exact checkpoint bytes, by one of the keys the user trusts; never a
   key from the backup (``check_signature``).
3. The checkpoint's text parses exactly, and the key it names is the one that signed it.
4. The leaf table: as many leaves as the checkpoint's tree size, hashing to its signed root.
5. Every record decodes, each key is the one its path implies, and keys strictly increase.

A ``TrustedSeal`` is made only here, and only after step 2 passed. ``read_unverified`` runs
steps 1, 3, 4 and 5 without a key (``prove`` without ``--trust``: the proof's recipient checks
the signature) and returns a ``SealTable``, which no verification accepts. Which backup a seal
belongs to (name, UID) is the verifier's step, since that needs the storage.
"""

from __future__ import annotations

import hmac
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import blake3

from merkle_backup.consistency import Inconsistency
from merkle_backup.core import table, tree
from merkle_backup.core.checkpoint import Checkpoint, CheckpointError, parse_checkpoint
from merkle_backup.core.keys import SCOPE_BUCKET
from merkle_backup.errors import CannotCheck, FormatError, NotAuthentic, SignatureError
from merkle_backup.formats.seal import SealHead, read_leaves, read_seal_head
from merkle_backup.selection import Scope, ScopeRule
from merkle_backup.signing import PublicKey


class Signed(Protocol):
    """A seal's or a proof file's signed part, not yet verified."""

    @property
    def checkpoint(self) -> bytes: ...
    @property
    def signature(self) -> bytes: ...


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


def check_signature(signed: Signed, trusted: Sequence[PublicKey]) -> tuple[Checkpoint, PublicKey]:
    """Steps 2-3: the signature over the exact checkpoint bytes, by a key the user named."""
    if not trusted:
        raise CannotCheck("no trusted public key given")
    signer = None
    for key in trusted:
        try:
            key.verify(signed.signature, signed.checkpoint)
        except SignatureError:
            continue
        signer = key
        break
    if signer is None:
        names = ", ".join(k.source for k in trusted)
        raise SignatureError(f"the checkpoint is not signed by any trusted key ({names})")
    checkpoint = _parse(signed.checkpoint, "signed checkpoint")
    if not hmac.compare_digest(checkpoint.key_id, signer.key_id):
        raise NotAuthentic("the checkpoint names another key than the one that signed it")
    return checkpoint, signer


def open_seal(seal: bytes | BinaryIO, trusted: Sequence[PublicKey], scope: Scope = Scope(),
              *, keep_tree: bool = False) -> TrustedSeal:
    """Steps 1-5. ``seal`` is the seal's bytes or a seekable file at its start; with
    ``keep_tree`` every level of the Merkle tree is kept (to prove leaves)."""
    f = io.BytesIO(seal) if isinstance(seal, bytes) else seal
    head = read_seal_head(f)
    checkpoint, signer = check_signature(head, trusted)
    fields = _TablePass(head, checkpoint, scope, keep_tree).run(f)
    return TrustedSeal(checkpoint, head, **fields, signer=signer)


def read_unverified(seal: BinaryIO, scope: Scope = Scope(), *, keep_tree: bool = False) -> SealTable:
    """Steps 1 and 3-5 without a key: a table consistent with its checkpoint, nothing more."""
    head = read_seal_head(seal)
    checkpoint = _parse(head.checkpoint, "seal checkpoint")
    return SealTable(checkpoint, head, **_TablePass(head, checkpoint, scope, keep_tree).run(seal))


def _parse(text: bytes, what: str) -> Checkpoint:
    try:
        return parse_checkpoint(text)
    except CheckpointError as e:
        raise FormatError(f"{what} is malformed: {e}") from e


class _TablePass:
    """Steps 4-5 in one streaming pass over the records as bytes (core/table.py), which also
    marks what the scope covers; only the root is kept unless ``keep_tree`` (O(log n) memory)."""

    def __init__(self, head: SealHead, checkpoint: Checkpoint, scope: Scope, keep_tree: bool) -> None:
        if head.leaf_count != checkpoint.tree_size:
            raise NotAuthentic(
                f"seal holds {head.leaf_count} leaves, its checkpoint says {checkpoint.tree_size}")
        self.head, self.checkpoint, self.scope = head, checkpoint, scope
        self.hashes: list[bytes] | None = [] if keep_tree else None
        self.root = tree.RootBuilder()
        self.rule = ScopeRule(scope, checkpoint.backup)

    def run(self, f: BinaryIO) -> dict[str, object]:
        leaves = read_leaves(f, self.head)
        add_leaf = self.hashes.append if self.hashes is not None else self.root.add_unchecked
        try:
            found = self._records(leaves, add_leaf)
            invalid = None
        except FormatError:
            raise  # the file is not a seal (any more): nothing to hash
        except ValueError as e:
            invalid = e
            for leaf in leaves:  # the root first: a changed table is not authentic
                add_leaf(blake3.blake3(tree.LEAF_PREFIX + leaf).digest())
        merkle = tree.MerkleTree(self.hashes) if self.hashes is not None else None
        root = merkle.root if merkle is not None else self.root.root()
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

    def _records(self, leaves, add_leaf):  # type: ignore[no-untyped-def]  # the hot loop
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
        previous = out_of_order = None
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

    def _widen(self, leaves: table.LeafTable, in_scope: bytearray) -> None:
        """What Velero decides from the whole backup can widen the scope (selection.Matcher
        .finish): decide the leaves left out again. It only ever adds leaves."""
        if self.rule.finish():
            for i in range(len(leaves)):
                if not in_scope[i]:
                    in_scope[i] = self.rule.covers_key(leaves.sort_key(i), leaves.path(i))
