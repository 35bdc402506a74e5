"""A second, naive RFC 9162 §2.1 Merkle tree, written straight from the RFC's recursive definitions.

It exists only to check ``merkle_backup.core.tree`` and shares no code with it: no levels, no
bit tricks, every hash recomputed from the leaves. It is slow (O(n log n) per root, worse per
proof) and only meant for small trees. The hash is a parameter so that the same code can also be
checked against the SHA-256 RFC 6962 vectors; it defaults to BLAKE3-256.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

import blake3

Digest = Callable[[bytes], bytes]


def blake3_256(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(data: bytes, digest: Digest = blake3_256) -> bytes:
    """RFC 9162 §2.1.1: ``MTH({d0}) = HASH(0x00 || d0)``."""
    return digest(b"\x00" + data)


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1), by counting up."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes], digest: Digest = blake3_256) -> bytes:
    """RFC 9162 §2.1.1 MTH over leaf *hashes*: MTH({}) = HASH(), MTH({d0}) = the leaf hash."""
    return _mth(tuple(leaves), digest)


@functools.lru_cache(maxsize=1 << 16)  # only a cache: the exhaustive sweeps call MTH very often
def _mth(leaves: tuple[bytes, ...], digest: Digest) -> bytes:
    n = len(leaves)
    if n == 0:
        return digest(b"")
    if n == 1:
        return leaves[0]
    k = _k(n)
    return digest(b"\x01" + _mth(leaves[:k], digest) + _mth(leaves[k:], digest))


def path(m: int, leaves: list[bytes], digest: Digest = blake3_256) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, leaves[:k], digest), mth(leaves[k:], digest)]
    return [*path(m - k, leaves[k:], digest), mth(leaves[:k], digest)]


def proof(m: int, leaves: list[bytes], digest: Digest = blake3_256) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    return _subproof(m, leaves, True, digest)


def _subproof(m: int, leaves: list[bytes], b: bool, digest: Digest) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves, digest)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], b, digest), mth(leaves[k:], digest)]
    return [*_subproof(m - k, leaves[k:], False, digest), mth(leaves[:k], digest)]


def range_proof(
    begin: int, end: int, leaves: list[bytes], digest: Digest = blake3_256
) -> list[bytes]:
    """The MTH of every maximal subtree lying entirely outside [begin, end), left to right.

    ``begin`` and ``end`` are relative to the first of ``leaves`` (and may fall outside it).
    """
    n = len(leaves)
    if end <= 0 or n <= begin:  # this whole subtree is outside the range
        return [mth(leaves, digest)]
    if begin <= 0 and n <= end:  # this whole subtree is inside the range
        return []
    k = _k(n)
    return range_proof(begin, end, leaves[:k], digest) + range_proof(
        begin - k, end - k, leaves[k:], digest
    )
