"""RFC 9162 §2.1 Merkle trees with a pinned hash (BLAKE3-256).

The tree shape, the domain separation and the proofs are exactly those of RFC 9162 §2.1
(= RFC 6962 §2.1); only the hash function differs, and it is pinned here, never read from a
proof or a file. A SHA-256 ``TreeHasher`` built by the tests reproduces the RFC 6962 vectors.

* ``MTH({}) = H("")``, ``MTH({d0}) = H(0x00 || d0)``, and for ``n > 1`` with ``k`` the largest
  power of two strictly less than ``n``: ``MTH(D[n]) = H(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``.
* Functions here take *leaf hashes* (``H(0x00 || data)``), not the data itself.

Provers (``MerkleTree``) and verifiers (``root_from_*`` / ``verify_*``) are kept apart. Verifiers
compute a root, then compare, then raise: ``root_from_*`` is pure and returns bytes, ``verify_*``
compares with ``hmac.compare_digest`` and raises ``ProofError``. Every malformed input (a wrong
count, a hash of the wrong type or length, an index or size out of range, a bool where an int is
expected) raises ``ProofError`` as well, never ``IndexError``/``ValueError``/``TypeError``.

Over 400 lines on purpose: the root, the prover and the three verifiers (inclusion, range,
consistency) share the RFC's split rule and input checks, and a reviewer checks them against
RFC 9162 §2.1 side by side; about half of it is docstrings and the RFC's step comments.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import blake3

from merkle_backup.errors import ProofError

__all__ = [
    "BLAKE3",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "MAX_TREE_SIZE",
    "NODE_PREFIX",
    "MerkleTree",
    "TreeHasher",
    "root",
    "root_from_inclusion_proof",
    "root_from_range_proof",
    "verify_consistency",
    "verify_inclusion",
    "verify_range",
]

# RFC 9162 §2.1.1: domain separation between leaves and interior nodes. Fixed, never chosen by
# the input.
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

# Every hash in the tree (leaf hashes, node hashes, roots, proof entries) is 32 bytes.
HASH_SIZE = 32

# Tree sizes and leaf indices are unsigned 64-bit numbers (as in RFC 9162 and transparency-dev).
# The bound also keeps the range-proof recursion at most 64 levels deep.
MAX_TREE_SIZE = 2**64 - 1


@dataclass(frozen=True)
class TreeHasher:
    """The hash function of a tree: RFC 9162 §2.1.1 with ``H = digest``.

    Production code only ever uses ``BLAKE3``; the tests build a SHA-256 one to run the
    RFC 6962 vectors.
    """

    name: str
    digest: Callable[[bytes], bytes]  # must return HASH_SIZE bytes

    def __post_init__(self) -> None:
        # A programming error, not untrusted input: crash loudly.
        if len(self.digest(b"")) != HASH_SIZE:
            raise ValueError(f"hasher {self.name!r} must produce {HASH_SIZE}-byte digests")

    def leaf_hash(self, data: bytes) -> bytes:
        """``H(0x00 || data)`` (RFC 9162 §2.1.1)."""
        return self.digest(LEAF_PREFIX + data)

    def node_hash(self, left: bytes, right: bytes) -> bytes:
        """``H(0x01 || left || right)`` (RFC 9162 §2.1.1)."""
        return self.digest(NODE_PREFIX + left + right)

    def empty_root(self) -> bytes:
        """``MTH({}) = H("")``, the root of the tree with no leaves (RFC 9162 §2.1.1)."""
        return self.digest(b"")


def _blake3_256(data: bytes) -> bytes:
    return blake3.blake3(data).digest()  # default mode, 32-byte output


BLAKE3 = TreeHasher(name="blake3", digest=_blake3_256)


# --- Input checks: every failure is a ProofError -------------------------------------------------


def _describe(value: object) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return type(value).__name__


def _check_uint(what: str, value: object) -> int:
    # bool is a subclass of int; True must not pass for 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProofError(f"{what}: expected an int, found {type(value).__name__}")
    if not 0 <= value <= MAX_TREE_SIZE:
        shown = str(value) if value.bit_length() <= 128 else f"a {value.bit_length()}-bit number"
        raise ProofError(f"{what}: expected 0..{MAX_TREE_SIZE}, found {shown}")
    return value


def _check_hash(what: str, value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what}: expected a {HASH_SIZE}-byte hash, found {_describe(value)}")
    return value


def _check_hashes(what: str, values: object) -> Sequence[bytes]:
    # bytes and str are sequences too (of ints / of str); neither is a list of hashes.
    if isinstance(values, (bytes, bytearray, memoryview, str)) or not isinstance(values, Sequence):
        raise ProofError(f"{what}: expected a sequence of hashes, found {type(values).__name__}")
    for i, value in enumerate(values):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise ProofError(
                f"{what}[{i}]: expected a {HASH_SIZE}-byte hash, found {_describe(value)}"
            )
    return values


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (``n >= 2``), RFC 9162 §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def verify_root(expected: bytes, computed: bytes, what: str) -> None:
    """ProofError unless ``computed`` (from a proof) is the trusted root ``expected``."""
    if not hmac.compare_digest(computed, expected):
        raise ProofError(f"{what} leads to root {computed.hex()}, expected {expected.hex()}")


# --- Roots ---------------------------------------------------------------------------------------


def root(leaf_hashes: Sequence[bytes], *, hasher: TreeHasher = BLAKE3) -> bytes:
    """``MTH`` of the leaves (RFC 9162 §2.1.1), in O(n) time.

    Computed level by level: pair neighbours, and carry an odd last node up unchanged. This
    equals the RFC's recursive split at the largest power of two below ``n``: the node at
    ``(level, j)`` is the MTH of leaves ``[j * 2**level, min((j + 1) * 2**level, n))``, and the
    RFC's left subtree is always the full ``2**level`` block. Extra memory is one list of
    ``ceil(n / 2)`` hashes, reused for every level above the first.
    """
    _check_hashes("leaf_hashes", leaf_hashes)
    n = len(leaf_hashes)
    if n == 0:
        return hasher.empty_root()
    if n == 1:
        return leaf_hashes[0]
    if hasher is BLAKE3:
        return _blake3_root(leaf_hashes)
    node = hasher.node_hash
    level = [node(leaf_hashes[i], leaf_hashes[i + 1]) for i in range(0, n - 1, 2)]
    if n % 2:
        level.append(leaf_hashes[-1])
    while (n := len(level)) > 1:
        for i in range(0, n - 1, 2):
            level[i // 2] = node(level[i], level[i + 1])
        if n % 2:
            level[n // 2] = level[-1]
        del level[(n + 1) // 2 :]
    return level[0]


def _blake3_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """``root`` with the pinned BLAKE3 inlined: the same pairing, one C call per node instead of
    three Python frames (sealing and verifying hash a node per leaf). Extra memory is one list
    of ``ceil(n / 2)`` hashes, then a list half as long per level."""
    b3 = blake3.blake3
    level: Sequence[bytes] = leaf_hashes
    while len(level) > 1:
        pairs = iter(level)
        above = [
            b3(NODE_PREFIX + left + right).digest()
            for left, right in zip(pairs, pairs, strict=False)
        ]
        if len(level) % 2:
            above.append(level[-1])  # the odd last node is carried up unchanged
        level = above
    return level[0]


class RootBuilder:
    """``root`` of leaf hashes given one at a time, in O(log n) memory (pinned BLAKE3).

    Keeps the roots of the perfect subtrees the leaves so far form, largest first (the binary
    digits of the count); two of equal size merge at once. At the end, folding them from the
    right gives RFC 9162's MTH: its left subtree is the largest power of two below ``n``, which
    is the first of these subtrees, and the rest is the same rule again.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (leaves, subtree root)
        self.size = 0

    def add(self, leaf_hash: bytes) -> None:
        _check_hash("leaf_hash", leaf_hash)
        self.add_unchecked(leaf_hash)

    def add_unchecked(self, leaf_hash: bytes) -> None:
        """``add`` for a hash just computed by the caller (32 bytes by construction)."""
        stack = self._stack
        count, node = 1, leaf_hash
        while stack and stack[-1][0] == count:
            count += count
            node = blake3.blake3(NODE_PREFIX + stack.pop()[1] + node).digest()
        stack.append((count, node))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return BLAKE3.empty_root()
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = blake3.blake3(NODE_PREFIX + left + node).digest()
        return node


# --- Prover --------------------------------------------------------------------------------------


class MerkleTree:
    """A tree that keeps every level, so that many proofs are cheap to produce.

    ``levels[0]`` is the leaf hashes; ``levels[h][j]`` is the MTH of the leaves
    ``[j * 2**h, min((j + 1) * 2**h, size))`` (an odd last node is carried up unchanged, as in
    ``root``). Every subtree of the RFC 9162 tree is one of these nodes.
    """

    def __init__(self, leaf_hashes: Sequence[bytes], *, hasher: TreeHasher = BLAKE3) -> None:
        _check_hashes("leaf_hashes", leaf_hashes)
        self.hasher = hasher
        self.size: int = len(leaf_hashes)
        levels: list[list[bytes]] = [list(leaf_hashes)]
        while len(below := levels[-1]) > 1:
            level = [hasher.node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            if len(below) % 2:
                level.append(below[-1])
            levels.append(level)
        self._levels = levels
        self.root: bytes = levels[-1][0] if self.size else hasher.empty_root()

    def _subtree(self, begin: int, end: int) -> bytes:
        """MTH(D[begin:end]) for a subtree of the RFC tree (begin aligned, see class docstring)."""
        height = (end - begin - 1).bit_length()
        assert begin % (1 << height) == 0 and end == min(begin + (1 << height), self.size)
        return self._levels[height][begin >> height]

    def inclusion_proof(self, index: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 ``PATH(index, D[size])``: sibling hashes, leaf level first."""
        _check_uint("index", index)
        if index >= self.size:
            raise ProofError(f"leaf index {index} is outside a tree of size {self.size}")
        proof = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):  # else: the odd last node, carried up with no sibling
                proof.append(level[sibling])
            index >>= 1
        return proof

    def range_proof(self, begin: int, end: int) -> list[bytes]:
        """Proof for the leaves ``[begin, end)``: see ``root_from_range_proof``."""
        _check_range(begin=begin, end=end, size=self.size)
        proof: list[bytes] = []

        def walk(lo: int, hi: int) -> None:
            if hi <= begin or end <= lo:  # a maximal subtree entirely outside the range
                proof.append(self._subtree(lo, hi))
            elif not (begin <= lo and hi <= end):  # straddles an edge: look at both halves
                k = _split(hi - lo)
                walk(lo, lo + k)
                walk(lo + k, hi)

        walk(0, self.size)
        return proof

    def consistency_proof(self, size1: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 ``PROOF(size1, D[size])``, for ``0 < size1 <= size``."""
        _check_uint("size1", size1)
        if not 0 < size1 <= self.size:
            raise ProofError(f"size1 must be in 1..{self.size}, found {size1}")

        def subproof(m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
            # SUBPROOF(m, D[lo:hi], b); m counts leaves from lo.
            if m == hi - lo:
                return [] if whole else [self._subtree(lo, hi)]
            k = _split(hi - lo)
            if m <= k:
                return [*subproof(m, lo, lo + k, whole), self._subtree(lo + k, hi)]
            return [*subproof(m - k, lo + k, hi, False), self._subtree(lo, lo + k)]

        return subproof(size1, 0, self.size, True)


# --- Inclusion of one leaf (RFC 9162 §2.1.3) -----------------------------------------------------


def _inclusion_proof_length(*, index: int, size: int) -> int:
    """How many hashes ``PATH(index, D[size])`` has: one per level where the node has a sibling.

    Going up from the leaf, the node ``fn`` on a level whose last node is ``sn`` has no sibling
    only when it is that last node and has an even index (it is carried up unchanged).
    """
    length = 0
    fn, sn = index, size - 1
    while sn > 0:
        if fn & 1 or fn < sn:
            length += 1
        fn >>= 1
        sn >>= 1
    return length


def root_from_inclusion_proof(
    *,
    index: int,
    size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    hasher: TreeHasher = BLAKE3,
) -> bytes:
    """The root that ``proof`` leads to for ``leaf_hash`` at ``index`` (RFC 9162 §2.1.3.2).

    ``ProofError`` if the proof has the wrong shape for ``(index, size)``.
    """
    _check_uint("index", index)
    _check_uint("size", size)
    # Step 1: the leaf must be in the tree.
    if index >= size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash("leaf_hash", leaf_hash)
    _check_hashes("proof", proof)
    expected = _inclusion_proof_length(index=index, size=size)
    if len(proof) != expected:
        raise ProofError(
            f"inclusion proof for leaf {index} of {size}: expected {expected} hashes, "
            f"found {len(proof)}"
        )
    # Steps 2-5, verbatim. (The length check above already makes 4a and 5 unreachable; they
    # stay so that this reads as the RFC does.)
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:  # 4a
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:  # 4b: p is a left sibling
            r = hasher.node_hash(p, r)
            if not fn & 1:  # skip the levels where this node is carried up
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:  # p is a right sibling
            r = hasher.node_hash(r, p)
        fn >>= 1  # 4c
        sn >>= 1
    if sn != 0:  # 5
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    *,
    index: int,
    size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    root: bytes,
    hasher: TreeHasher = BLAKE3,
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows ``leaf_hash`` at ``index`` under ``root``.

    ``size`` and ``root`` must come together from the same signed checkpoint: the proof binds
    the leaf to the root, and the root (not the proof) binds the size.
    """
    _check_hash("root", root)
    computed = root_from_inclusion_proof(
        index=index, size=size, leaf_hash=leaf_hash, proof=proof, hasher=hasher
    )
    verify_root(root, computed, f"inclusion proof for leaf {index} of {size}")


# --- Inclusion of a contiguous run of leaves -----------------------------------------------------
#
# The proof for leaves [begin, end) is the MTH of every maximal subtree of the RFC 9162 tree that
# lies entirely outside [begin, end), listed left to right. The verifier walks the same shape:
# an outside subtree takes the next proof hash, a subtree inside the range is hashed from the
# leaves, a subtree that straddles an edge is split as the RFC splits it. For end - begin == 1
# these are the same hashes as PATH (RFC 9162 §2.1.3.1), but in left-to-right order, not
# leaf-level first. At most two hashes per level: about 2 * log2(size).


def _check_range(*, begin: int, end: int, size: int) -> None:
    _check_uint("begin", begin)
    _check_uint("end", end)
    _check_uint("size", size)
    if not begin < end <= size:
        raise ProofError(f"range [{begin}, {end}) is empty or outside a tree of size {size}")


def root_from_range_proof(
    *,
    begin: int,
    end: int,
    size: int,
    leaf_hashes: Sequence[bytes],
    proof: Sequence[bytes],
    hasher: TreeHasher = BLAKE3,
) -> bytes:
    """The root that ``proof`` leads to for ``leaf_hashes`` at ``[begin, end)``.

    ``ProofError`` on the wrong number of leaf hashes, or on missing or unused proof hashes.
    """
    _check_range(begin=begin, end=end, size=size)
    _check_hashes("leaf_hashes", leaf_hashes)
    if len(leaf_hashes) != end - begin:
        raise ProofError(
            f"range [{begin}, {end}): expected {end - begin} leaf hashes, found {len(leaf_hashes)}"
        )
    _check_hashes("proof", proof)
    used = 0

    def subtree_root(lo: int, hi: int) -> bytes:
        nonlocal used
        if hi <= begin or end <= lo:  # entirely outside: the proof gives its MTH
            if used == len(proof):
                raise ProofError(f"range proof for [{begin}, {end}) of {size} is too short")
            used += 1
            return proof[used - 1]
        if begin <= lo and hi <= end:  # entirely inside: hash it from the leaves
            return root(leaf_hashes[lo - begin : hi - begin], hasher=hasher)
        k = _split(hi - lo)  # straddles an edge of the range
        return hasher.node_hash(subtree_root(lo, lo + k), subtree_root(lo + k, hi))

    r = subtree_root(0, size)
    if used != len(proof):
        raise ProofError(
            f"range proof for [{begin}, {end}) of {size}: {len(proof) - used} unused hashes"
        )
    return r


def verify_range(
    *,
    begin: int,
    end: int,
    size: int,
    leaf_hashes: Sequence[bytes],
    proof: Sequence[bytes],
    root: bytes,
    hasher: TreeHasher = BLAKE3,
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows ``leaf_hashes`` at ``[begin, end)``."""
    _check_hash("root", root)
    computed = root_from_range_proof(
        begin=begin, end=end, size=size, leaf_hashes=leaf_hashes, proof=proof, hasher=hasher
    )
    verify_root(root, computed, f"range proof for [{begin}, {end}) of {size}")


# --- Consistency between two sizes (RFC 9162 §2.1.4) ---------------------------------------------


def verify_consistency(
    *,
    size1: int,
    size2: int,
    root1: bytes,
    root2: bytes,
    proof: Sequence[bytes],
    hasher: TreeHasher = BLAKE3,
) -> None:
    """Raise ``ProofError`` unless the tree ``(size2, root2)`` extends ``(size1, root1)``.

    RFC 9162 §2.1.4.2 for ``0 < size1 < size2``. Equal sizes need an empty proof and equal
    roots. ``size1 == 0`` is refused: every tree extends the empty one, so such a check proves
    nothing (transparency-dev's probes expect the refusal).
    """
    _check_uint("size1", size1)
    _check_uint("size2", size2)
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    _check_hashes("proof", proof)
    if size1 == 0:
        # Also required by the loop below: with size1 == 0, fn = -1 and step 4 never ends.
        raise ProofError("consistency with the empty tree proves nothing")
    if size1 > size2:
        raise ProofError(f"size1 ({size1}) is larger than size2 ({size2})")
    if size1 == size2:
        if proof:
            raise ProofError(f"sizes are equal, but the proof has {len(proof)} hashes")
        verify_root(root2, root1, "consistency proof (equal sizes)")
        return
    # RFC 9162 §2.1.4.2, steps 1-7.
    if not proof:  # 1
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # 2: size1 is a power of two, its root is a node of tree 2
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1  # 3
    while fn & 1:  # 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # 5
    for c in path[1:]:  # 6
        if sn == 0:  # 6a
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:  # 6b
            fr = hasher.node_hash(c, fr)
            sr = hasher.node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hasher.node_hash(sr, c)
        fn >>= 1  # 6c
        sn >>= 1
    if sn != 0:  # 7
        raise ProofError("consistency proof is too short")
    verify_root(root1, fr, f"consistency proof from {size1} (old root)")
    verify_root(root2, sr, f"consistency proof to {size2} (new root)")
