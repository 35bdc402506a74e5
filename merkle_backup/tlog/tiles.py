"""C2SP tlog-tiles over an RFC 6962 SHA-256 tree (docs/format.md §12.3). Pure: no I/O.

A tile at level L holds, in order, the hashes of the tree nodes at height 8·L (each the root of
2^(8·L) leaves); tile N of level L holds nodes 256·N … 256·N+W-1. A tile is full at W = 256,
else partial, with path suffix ``.p/W``. Entry bundles are level-0 tiles' entries, each
``u16be(len) ‖ bytes``. ``HashReader`` computes any node, root and RFC 9162 proof of a tree of
``size`` leaves from tiles handed to it by ``read_tile(level, index, width)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from merkle_backup.errors import FormatError, ProofError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
HASH_SIZE = 32
MAX_ENTRY = 0xFFFF

ReadTile = Callable[[int, int, int], list[bytes]]


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def empty_root() -> bytes:
    return hashlib.sha256(b"").digest()


def index_path(n: int) -> str:
    """C2SP: the index as 3-digit groups, every group but the last prefixed with 'x'."""
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + groups[-1:])


def tile_path(level: int | str, index: int, width: int) -> str:
    """``tile/<L>/<N>[.p/<W>]``; ``level`` "entries" gives an entry bundle's path."""
    if not 0 < width <= TILE_WIDTH:
        raise ValueError(f"tile width {width}")
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{index_path(index)}{suffix}"


def width_at(size: int, level: int, index: int) -> int:
    """How many hashes tile ``index`` of ``level`` holds in a tree of ``size`` (0: none)."""
    nodes = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, nodes - TILE_WIDTH * index))


def encode_hashes(hashes: Sequence[bytes]) -> bytes:
    return b"".join(hashes)


def decode_hashes(data: bytes, width: int, what: str = "tile") -> list[bytes]:
    if len(data) != width * HASH_SIZE:
        raise FormatError(f"{what} is {len(data)} bytes, expected {width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY:
            raise ValueError("log entry over 65535 bytes")
        out += len(e).to_bytes(2, "big") + e
    return bytes(out)


def decode_bundle(data: bytes, width: int, what: str = "entry bundle") -> list[bytes]:
    entries, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise FormatError(f"{what} is truncated")
        n = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + n > len(data):
            raise FormatError(f"{what} is truncated")
        entries.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    if len(entries) != width:
        raise FormatError(f"{what} holds {len(entries)} entries, expected {width}")
    return entries


def _mth_pow2(hashes: Sequence[bytes]) -> bytes:
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def _split(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH of leaf hashes (iterative over complete subtrees)."""
    if not leaf_hashes:
        return empty_root()
    stack: list[tuple[int, bytes]] = []  # (height, hash) of the complete subtrees so far
    for h in leaf_hashes:
        node, height = h, 0
        while stack and stack[-1][0] == height:
            node = node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))
    node = stack.pop()[1]
    while stack:
        node = node_hash(stack.pop()[1], node)
    return node


class HashReader:
    """Nodes, root and proofs of the tree of ``size`` leaves, from its tiles."""

    def __init__(self, size: int, read_tile: ReadTile) -> None:
        self.size = size
        self._read = read_tile
        self._tiles: dict[tuple[int, int], list[bytes]] = {}

    def tile(self, level: int, index: int) -> list[bytes]:
        key = (level, index)
        if key not in self._tiles:
            width = width_at(self.size, level, index)
            if width == 0:
                raise ProofError(f"tile {level}/{index} is outside a tree of {self.size}")
            hashes = self._read(level, index, width)
            if len(hashes) != width:
                raise FormatError(f"tile {tile_path(level, index, width)} has the wrong width")
            self._tiles[key] = hashes
        return self._tiles[key]

    def node(self, height: int, index: int) -> bytes:
        """The root of leaves [index·2^height, (index+1)·2^height)."""
        if (index + 1) << height > self.size:
            raise ProofError("node outside the tree")
        level, rest = divmod(height, TILE_HEIGHT)
        first = index << rest
        tile = self.tile(level, first >> TILE_HEIGHT)
        start = first & (TILE_WIDTH - 1)
        return _mth_pow2(tile[start : start + (1 << rest)])

    def mth(self, begin: int, end: int) -> bytes:
        """MTH of leaves [begin, end), a subtree of the RFC 9162 recursion (begin aligned)."""
        n = end - begin
        if n <= 0:
            raise ProofError("empty range")
        if n & (n - 1) == 0 and begin % n == 0:
            return self.node(n.bit_length() - 1, begin // n)
        k = _split(n)
        return node_hash(self.mth(begin, begin + k), self.mth(begin + k, end))

    def root(self) -> bytes:
        return empty_root() if self.size == 0 else self.mth(0, self.size)

    def inclusion_proof(self, index: int) -> list[bytes]:
        if not 0 <= index < self.size:
            raise ProofError(f"index {index} is not in a tree of {self.size}")
        proof: list[bytes] = []
        begin, end, m = 0, self.size, index
        while end - begin > 1:
            k = _split(end - begin)
            if m < k:
                proof.append(self.mth(begin + k, end))
                end = begin + k
            else:
                proof.append(self.mth(begin, begin + k))
                begin, m = begin + k, m - k
        proof.reverse()
        return proof

    def consistency_proof(self, old: int) -> list[bytes]:
        if not 0 < old <= self.size:
            raise ProofError(f"no consistency proof from {old} to {self.size}")
        proof: list[bytes] = []
        begin, end, m, flag = 0, self.size, old, True
        while True:
            n = end - begin
            if m == n:
                if not flag:
                    proof.append(self.mth(begin, end))
                break
            k = _split(n)
            if m <= k:
                proof.append(self.mth(begin + k, end))
                end = begin + k
            else:
                proof.append(self.mth(begin, begin + k))
                begin, m, flag = begin + k, m - k, False
        proof.reverse()
        return proof


def new_tiles(
    size: int, read_tile: ReadTile, leaves: Sequence[bytes]
) -> dict[tuple[int, int, int], list[bytes]]:
    """The hash tiles a tree of ``size`` gains when ``leaves`` (leaf hashes) are appended:
    (level, index, width) -> hashes. O(log n) tiles per appended leaf, at most."""
    new = size + len(leaves)
    out: dict[tuple[int, int, int], list[bytes]] = {}
    fresh: list[bytes] = list(leaves)  # the new nodes of the current level, in order
    level = 0
    while (new >> (TILE_HEIGHT * level)) > 0 and fresh:
        old_nodes = size >> (TILE_HEIGHT * level)
        new_nodes = new >> (TILE_HEIGHT * level)
        fresh = fresh[: new_nodes - old_nodes]
        first_tile = old_nodes >> TILE_HEIGHT
        old_width = old_nodes - (first_tile << TILE_HEIGHT)
        carried = read_tile(level, first_tile, old_width) if old_width else []
        nodes = carried + fresh  # hashes from index first_tile·256 on
        for t in range(first_tile, ((new_nodes - 1) >> TILE_HEIGHT) + 1):
            lo = (t - first_tile) << TILE_HEIGHT
            width = min(TILE_WIDTH, new_nodes - (t << TILE_HEIGHT))
            out[(level, t, width)] = nodes[lo : lo + width]
        # The next level's new nodes: every tile of this level that has just become full.
        up = []
        for t in range(old_nodes >> TILE_HEIGHT, new_nodes >> TILE_HEIGHT):
            lo = (t - first_tile) << TILE_HEIGHT
            up.append(_mth_pow2(nodes[lo : lo + TILE_WIDTH]))
        fresh = up
        level += 1
    return out
