"""Portable proofs over a sealed leaf table (docs/format.md §11).

* A **resource proof** is an RFC 9162 inclusion proof of one leaf record.
* A **namespace proof** is one range proof over the namespace's contiguous run of leaves
  *extended by the neighbour leaf on each side* (or up to the tree's edge). The neighbours show
  the verifier that nothing of the namespace was left out: their keys lie outside the namespace,
  and the range is contiguous, so the run between them is the namespace's whole run. With no
  leaf of the namespace, the two neighbours are adjacent: an absence proof of the same shape.

The completeness rules below are the lessons of celestiaorg/nmt's bugs: an empty absence proof
must not pass (#86), an absence proof must bracket the namespace from both sides (#110), a
truncated range must not pass the completeness check (#317), malformed nodes must raise, not
crash (#141), and plain inclusion of some leaves never proves completeness (#161).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from merkle_backup.core import tree
from merkle_backup.core.leaf import LeafRecord, decode_record
from merkle_backup.errors import ProofError

T = TypeVar("T")


@dataclass(frozen=True)
class NamespaceRange:
    """Where a namespace's leaves are, and the range a proof of it covers."""

    namespace: str
    first: int      # index of the namespace's first leaf (== last when absent)
    last: int       # one past its last leaf
    begin: int      # proof range: first - 1 when there is a left neighbour
    end: int        # proof range: last + 1 when there is a right neighbour

    @property
    def present(self) -> bool:
        return self.last > self.first


def namespace_range(
    leaves: Sequence[T], namespace: str,
    namespace_of: Callable[[T], str] = lambda record: record.key.namespace,  # type: ignore[attr-defined]
) -> NamespaceRange:
    """The run of ``namespace`` in a leaf table sorted by key (docs/format.md §3.2): leaves are
    LeafRecords, or anything ``namespace_of`` reads a namespace from."""
    if not namespace:
        raise ValueError("a namespace name is not empty")
    first = bisect.bisect_left(leaves, namespace, key=namespace_of)
    last = bisect.bisect_right(leaves, namespace, key=namespace_of)
    return NamespaceRange(
        namespace, first, last, begin=max(first - 1, 0), end=min(last + 1, len(leaves))
    )


def check_namespace_records(
    *, namespace: str, begin: int, size: int, records: Sequence[bytes]
) -> list[LeafRecord]:
    """The completeness rules of §11.3; returns the namespace's own records (maybe none).

    ``records`` are the leaf records at ``[begin, begin + len(records))``. Raises ProofError.
    """
    if type(namespace) is not str or not namespace:
        raise ProofError("namespace proof names no namespace")
    if type(begin) is not int or type(size) is not int or begin < 0 or size < 0:
        raise ProofError("namespace proof begin and size must be non-negative integers")
    if not isinstance(records, (list, tuple)) or not all(type(r) is bytes for r in records):
        raise ProofError("namespace proof records must be a list of byte strings")
    end = begin + len(records)
    if size == 0:
        if records or begin:
            raise ProofError("an empty tree has no records")
        return []
    if not records:
        # nmt#86: a proof with no leaves at all proves nothing, not absence.
        raise ProofError(f"namespace proof for {namespace!r} holds no records")
    if end > size:
        raise ProofError(f"namespace proof range [{begin}, {end}) is outside a tree of {size}")
    try:
        decoded = [decode_record(r) for r in records]
    except ValueError as e:
        raise ProofError(f"namespace proof holds an invalid leaf record: {e}") from e
    for previous, current in itertools.pairwise(decoded):
        if not previous.key < current.key:
            raise ProofError("namespace proof records are not in strict key order")
    inner = decoded
    # Left bracket: a neighbour that sorts before the namespace, or else the tree's first leaf
    # (nmt#110, #317: a range that merely starts inside the namespace proves nothing).
    if inner[0].key.namespace < namespace:
        inner = inner[1:]
    elif begin != 0:
        raise ProofError(
            f"namespace proof for {namespace!r} does not start with a leaf before the namespace"
        )
    # Right bracket: a neighbour that sorts after the namespace, or else the tree's last leaf.
    if inner and inner[-1].key.namespace > namespace:
        inner = inner[:-1]
    elif end != size:
        raise ProofError(
            f"namespace proof for {namespace!r} does not end with a leaf after the namespace"
        )
    for record in inner:
        if record.key.namespace != namespace:
            raise ProofError(
                f"namespace proof for {namespace!r} holds {record.path}, which is outside it"
            )
    return inner


def verify_namespace_proof(
    *, namespace: str, begin: int, size: int, records: Sequence[bytes], proof: Sequence[bytes],
    root: bytes,
) -> list[LeafRecord]:
    """ProofError unless the records are the whole namespace (completeness) and the range proof
    leads from them to ``root``; the namespace's own records."""
    own = check_namespace_records(namespace=namespace, begin=begin, size=size, records=records)
    if size == 0:
        if proof:
            raise ProofError("an empty tree has no proof hashes")
        tree.verify_root(root, tree.BLAKE3.empty_root(), "the empty tree")
        return own
    tree.verify_range(begin=begin, end=begin + len(records), size=size,
                      leaf_hashes=[tree.BLAKE3.leaf_hash(r) for r in records], proof=proof,
                      root=root)
    return own
