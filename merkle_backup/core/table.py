"""The leaf table in bulk: records built, sorted and checked as bytes (docs/format.md §3-4).

``keys.py`` and ``leaf.py`` are the reference for one key and one record. Sealing or verifying a
backup of a million entries with them costs a dozen Python objects and calls per entry, so this
module does the same work on the paths Velero actually writes with a few C-level operations per
entry, and hands every other path to the reference functions. Its outputs are byte-identical to
theirs (tests/test_table.py checks both on every shape of path).

A *sortable leaf* is ``sort key ‖ payload ‖ u16be(len(sort key))`` where the sort key is the
five key components joined by NUL, plus one NUL (docs/format.md §3.2). Components hold no NUL,
so comparing two sortable leaves bytewise compares their keys first (a key that is a prefix of
another ends in the NUL terminator, which sorts before any character), and ``list.sort()``
with no key function puts them in seal order. The payload is the record, or, for a path in
Velero's usual shape (which its key alone determines), just the record's last 40 bytes
``u64be(size) ‖ H(content)``: a record is never that short, and leaving out the fields and
path halves what a sealer holds per entry (the table is in memory until sorted);
``drain_sorted`` rebuilds the record.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, NamedTuple

from merkle_backup.core.keys import (
    NAMESPACES_RESOURCE,
    SCOPE_CLUSTER,
    SCOPE_NAMESPACED,
    PathError,
    ResourceKey,
    key_for_bucket_object,
    key_for_tar_path,
)
from merkle_backup.core.leaf import LeafRecord, decode_record
from merkle_backup.core.proofs import NamespaceRange, namespace_range
from merkle_backup.velero import PREFERRED_SUFFIX

# A path segment as Kubernetes and Velero spell them: ASCII, not starting with "." (so never "."
# or ".."), no "/", NUL, backslash or control character. A path made of such segments in the
# layout of docs/format.md §3.1 maps to its key exactly as key_for_tar_path maps it; any other
# path (long, non-ASCII, odd characters, outside the layout) takes the reference function.
_SEGMENT = r"[A-Za-z0-9_:-][A-Za-z0-9._:-]*"
VELERO_PATH = re.compile(
    rf"resources/({_SEGMENT})/(?:(?!cluster/|namespaces/)({_SEGMENT})/)?"
    rf"(?:cluster/({_SEGMENT})|namespaces/({_SEGMENT})/({_SEGMENT}))\.json"
)
_velero_path = VELERO_PATH.fullmatch
# Fast paths are under 256 bytes, so every length prefix is "\0" + one byte.
FAST_PATH_LIMIT = 256
TAIL = 8 + 32  # u64be(size) ‖ H(content) end every record
_MAX_SORT_KEY = 0xFFFF


class Fields(NamedTuple):
    namespace: str
    resource: str
    scope: str
    name: str
    version: str


def _fast_fields(path: str) -> Fields | None:
    """The key of a common Velero path, or None (then the reference decides)."""
    m = VELERO_PATH.fullmatch(path) if len(path) < FAST_PATH_LIMIT else None
    if m is None:
        return None
    resource, version, cluster_name, namespace, name = m.groups()
    if cluster_name is not None:
        # A Namespace object sorts into its own namespace's run (docs/format.md §3.1).
        owner = cluster_name if resource == NAMESPACES_RESOURCE else ""
        return Fields(owner, resource, SCOPE_CLUSTER, cluster_name, version or "")
    return Fields(namespace, resource, SCOPE_NAMESPACED, name, version or "")


def _fast_head(f: Fields, path: str) -> str:
    """The record up to its size, as latin-1 text; for ASCII paths under 256 bytes (every
    component is part of the path, so every length prefix is "\0" + one byte)."""
    ns, gr, scope, name, ver = f
    return (f"\0{chr(len(ns))}{ns}\0{chr(len(gr))}{gr}\0{chr(len(scope))}{scope}"
            f"\0{chr(len(name))}{name}\0{chr(len(ver))}{ver}\0{chr(len(path))}{path}")


def tar_leaf_and_key(path: str, size: int, digest: bytes) -> tuple[bytes, Fields]:
    """(sortable leaf, key) of a tar entry: the sealer's per-entry step, in one call."""
    m = _velero_path(path) if len(path) < FAST_PATH_LIMIT else None
    if m is None:  # any other path: the reference functions, and the whole record
        f = Fields(*key_for_tar_path(path).components())  # PathError: not sealable
        return sortable_leaf(LeafRecord(ResourceKey(*f), path, size, digest)), f
    # _fast_fields, inline (this runs once per entry)
    gr, ver, cluster_name, ns, name = m.groups()
    if ver is None:
        ver = ""
    if cluster_name is None:
        scope = SCOPE_NAMESPACED
    else:
        scope, name = SCOPE_CLUSTER, cluster_name
        ns = cluster_name if gr == NAMESPACES_RESOURCE else ""
    sort_key = f"{ns}\0{gr}\0{scope}\0{name}\0{ver}\0"
    # Compact: the path and fields are implied by the key (see _rebuild_record).
    leaf = b"".join((sort_key.encode("latin-1"), size.to_bytes(8, "big"), digest,
                     len(sort_key).to_bytes(2, "big")))
    return leaf, Fields(ns, gr, scope, name, ver)


def _rebuild_record(key: bytes, tail: bytes) -> bytes:
    """The record of a compact sortable leaf: its path is the one Velero path with this key
    (the inverse of the fast path of tar_leaf_and_key; tests/core/test_table.py checks both)."""
    ns, gr, scope, name, ver = key[:-1].decode("latin-1").split("\0")
    where = f"cluster/{name}" if scope == SCOPE_CLUSTER else f"namespaces/{ns}/{name}"
    path = f"resources/{gr}/{ver}/{where}.json" if ver else f"resources/{gr}/{where}.json"
    return _fast_head(Fields(ns, gr, scope, name, ver), path).encode("latin-1") + tail


def sortable_leaf(record: LeafRecord) -> bytes:
    """The sortable leaf of any record (the reference encoding)."""
    sort_key = record.key.sort_bytes() + b"\0"
    if len(sort_key) > _MAX_SORT_KEY:
        raise ValueError("leaf key is longer than 65535 bytes")
    return sort_key + record.encode() + len(sort_key).to_bytes(2, "big")


class DuplicateKey(ValueError):
    """Two leaves with one key; ``path`` is the second one's."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


# A -preferredversion copy must be byte-identical to its classic copy (docs/format.md §7.2):
# restore reads one or the other depending on EnableAPIGroupVersions.
NO_CLASSIC_COPY = "preferred-version copy has no classic copy"
DIFFERS_FROM_CLASSIC = "differs from its classic copy {}"
_PREFERRED_END = PREFERRED_SUFFIX.encode()


class CopyChecker:
    """Compares each -preferredversion copy with its classic copy, leaf by leaf in key order,
    where an item's classic copy (version "") comes right before its versioned copies: one
    remembered leaf does. The one implementation, for the sealer's sort and the verifier's
    table pass (tests/core/test_table.py checks it against a reference over decoded records).
    """

    __slots__ = ("_twin", "_twin_id", "_twin_tail")

    def __init__(self) -> None:
        self._twin_id: bytes | None = None
        self._twin_tail = b""
        self._twin = b""

    def check(self, key: bytes, tail: bytes, record: bytes) -> str | None:
        """The finding for the leaf with sort key ``key`` (components NUL-joined, no
        terminator), ``tail`` = u64be(size) ‖ H(content), ``record`` its record; or None."""
        if key.startswith(b"\0\0"):  # bucket objects and metadata/version: no copies
            return None
        if key.endswith(b"\0"):  # version "": a classic copy
            self._twin_id, self._twin_tail, self._twin = key, tail, record
            return None
        if not key.endswith(_PREFERRED_END):
            return None
        if self._twin_id is None or key[: key.rindex(b"\0") + 1] != self._twin_id:
            return NO_CLASSIC_COPY
        if self._twin_tail != tail:
            return DIFFERS_FROM_CLASSIC.format(path_of(self._twin))
        return None


def namespace_of(item: bytes) -> str:
    """The namespace of a sortable leaf: its key's first component."""
    return item[: item.index(b"\0")].decode("utf-8")


def record_of(item: bytes) -> bytes:
    """The record a sortable leaf stands for."""
    k = (item[-2] << 8) | item[-1]
    record = item[k:-2]
    return _rebuild_record(item[:k], record) if len(record) == TAIL else record


def sort_leaves(
    items: list[bytes],
    leaf_hash_input: list[bytes] | None = None,
    copies: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    """Sort sortable leaves into key order and turn each, in place, into its record.

    Raises DuplicateKey on two leaves with one key (docs/format.md §3.2). If
    ``leaf_hash_input`` is given, ``0x00 ‖ record`` of each leaf is appended to it. If
    ``copies`` is given, every -preferredversion copy that differs from its classic copy (or
    has none) is appended as (path, problem), exactly as consistency.check_copies finds them.
    """
    for i, record in enumerate(drain_sorted(items, copies)):
        if leaf_hash_input is not None:
            leaf_hash_input.append(b"\0" + record)
        items[i] = record
    return items


def drain_sorted(
    items: list[Any], copies: list[tuple[str, str]] | None = None
) -> Iterator[bytes]:
    """Sort sortable leaves and yield their records in key order, dropping each item from the
    list as it goes (so a caller writing the records out never holds the table twice).

    DuplicateKey and ``copies`` as in ``sort_leaves``.
    """
    items.sort()  # sortable leaves (bytes) until the loop below sets them to None
    previous = b""
    checker = CopyChecker() if copies is not None else None
    for i, item in enumerate(items):
        assert item is not None
        items[i] = None
        k = (item[-2] << 8) | item[-1]
        key = item[:k]
        record = item[k:-2]
        del item
        if len(record) == TAIL:  # compact: only u64be(size) ‖ H(content) was kept
            record = _rebuild_record(key, record)
        if key == previous:
            raise DuplicateKey(path_of(record))
        previous = key
        if checker is not None:
            problem = checker.check(key[:-1], record[-TAIL:], record)
            if problem is not None:
                assert copies is not None
                copies.append((path_of(record), problem))
        yield record


class CheckedLeaf(NamedTuple):
    sort_key: bytes
    namespace: str
    scope: str
    path: str
    item: bytes  # the record's sortable leaf, compact where the path allows (record_of inverts)


def check_record(record: bytes) -> CheckedLeaf:
    """Strictly decode one record (docs/format.md §4.1); ValueError as decode_record raises it.

    The fast path finds the path, recomputes the whole record from it and requires every byte
    to be equal; anything else is decoded by the reference decoder.
    """
    path = fast_path_of(record)
    if path is not None:
        f = _fast_fields(path)
        if f is not None:
            head = _fast_head(f, path).encode("latin-1")
            if len(record) == len(head) + TAIL and record.startswith(head):
                sort_key = f"{f.namespace}\0{f.resource}\0{f.scope}\0{f.name}\0{f.version}\0"
                k = sort_key.encode("latin-1")
                item = b"".join((k, record[-TAIL:], len(k).to_bytes(2, "big")))
                return CheckedLeaf(k[:-1], f.namespace, f.scope, path, item)
    decoded = decode_record(record)
    key = decoded.key
    return CheckedLeaf(key.sort_bytes(), key.namespace, key.scope, decoded.path,
                       sortable_leaf(decoded))


def fast_path_of(record: bytes) -> str | None:
    """The path of a record whose path is ASCII and under 256 bytes, else None (ask
    decode_record). Sound on any input: a wrong guess is never returned for a valid record."""
    end = len(record) - TAIL
    j = record.rfind(b"\0", 0, end)
    # [0x00, L, path...] with L < 256 and no NUL in the path: j is the high length byte.
    if j < 0 or j + 2 > end or record[j + 1] != end - j - 2:
        return None
    raw = record[j + 2:end]
    return raw.decode("ascii") if raw.isascii() else None


def path_of(record: bytes) -> str:
    """The path of a record already checked."""
    path = fast_path_of(record)
    return path if path is not None else decode_record(record).path




def sort_key_of(item: bytes) -> bytes:
    """The sort key of a sortable leaf (NUL-ended): the part compared to find it."""
    return item[: (item[-2] << 8) | item[-1]]


class LeafTable:
    """The leaves of a seal in key order, each kept as its sortable leaf (compact where its path
    allows: about 120 bytes for the paths Velero writes). The one type that knows that layout:
    callers ask it questions and never slice a leaf themselves. An archive entry's sortable leaf
    (``tar_leaf_and_key``) is found by bisection and compared whole.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[bytes]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def record(self, index: int) -> bytes:
        return record_of(self.items[index])

    def path(self, index: int) -> str:
        return path_of(self.record(index))

    def namespace(self, index: int) -> str:
        return namespace_of(self.items[index])

    def sort_key(self, index: int) -> bytes:
        return sort_key_of(self.items[index])

    def tail(self, index: int) -> bytes:
        """``u64be(size) ‖ H(content)`` of the leaf: what an object is compared with."""
        return self.items[index][-2 - TAIL:-2]

    def size(self, index: int) -> int:
        return int.from_bytes(self.tail(index)[:8], "big")

    def is_bucket_object(self, index: int) -> bool:
        return self.items[index].startswith(b"\0\0bucket\0")

    def matches(self, index: int, item: bytes) -> bool:
        """Whether an entry's sortable leaf is exactly the sealed one (same key, size, digest)."""
        return self.items[index] == item

    def find(self, key: bytes, path: str, item: bytes = b"") -> int | None:
        """The index of the leaf with sort key ``key`` (NUL-ended) and this path, or None.
        ``item``, the sortable leaf expected there, spares rebuilding the path when equal."""
        items = self.items
        i = bisect_left(items, key)
        if i < len(items) and (items[i] == item or (
                items[i].startswith(key) and self.path(i) == path)):
            return i
        return None

    def find_item(self, item: bytes, path: str) -> int | None:
        """The index of the leaf with the key of the sortable leaf ``item`` and this path."""
        return self.find(sort_key_of(item), path, item)

    def take_equal(self, taken: list[bytes], start: int, seen: bytearray, native: Any) -> int:
        """From ``taken[start]`` on, in order: while a sortable leaf is byte-identical to a
        leaf of this table not yet ``seen``, mark that one seen; returns the index of the first
        that is not (``len(taken)`` when none), which the caller takes through ``find_item``.
        The verifier's hot path for a changed archive, in C (``native``: the engine's
        ``take_equal``; with None nothing is taken here). Equal leaves have equal keys, and
        keys are unique in a checked table, so this is find_item's first case."""
        if native is None:
            return start
        return int(native.take_equal(self.items, taken, start, seen))

    def index_of(self, path: str) -> int | None:
        """The leaf of a tar path or bucket object name, or None."""
        for key_of in (key_for_tar_path, key_for_bucket_object):
            try:
                key = key_of(path)
            except PathError:
                continue
            return self.find(key.sort_bytes() + b"\0", path)
        return None

    def namespace_range(self, namespace: str) -> NamespaceRange:
        """The namespace's contiguous run of leaves and its two neighbours (§3.2, §11.3)."""
        return namespace_range(self.items, namespace, namespace_of)


# --- a proven leaf section (seal version 2) ---------------------------------------------------

BUCKET_RECORD_PREFIX = b"\0\0\0\0\0\x06bucket"  # LP("") ‖ LP("") ‖ LP("bucket"): §3.1, §4.1


def bucket_prefix_length(records: list[bytes]) -> int:
    """How many of these records (in key order) are bucket objects: they sort first (§3.2).
    Anything but a record (of a section not yet proven) ends the run."""
    return bisect_left(records, True, key=lambda r: type(r) is not bytes
                       or not r.startswith(BUCKET_RECORD_PREFIX))


def record_fields(record: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """The five key components of a well-formed record (one a sealer wrote), as UTF-8 bytes."""
    fields = []
    p = 0
    for _ in range(5):
        n = (record[p] << 8) | record[p + 1]
        fields.append(record[p + 2:p + 2 + n])
        p += 2 + n
    return fields[0], fields[1], fields[2], fields[3], fields[4]


def record_sort_key(record: bytes) -> bytes:
    """The sort key (NUL-ended, §3.2) of a well-formed record."""
    return b"\0".join(record_fields(record)) + b"\0"


class Group(NamedTuple):
    """A run of leaves sharing namespace, resource and scope: what a scope decides by (§9.2);
    ``name`` is its first leaf's."""

    begin: int
    end: int
    namespace: str
    resource: str
    scope: str
    name: str


class RecordTable(LeafTable):
    """The leaves of a seal whose leaf section was proven by its signed hash (§7.4): the
    sealer's own records, already known to decode, in strict key order and hashing to the root,
    so none is decoded or hashed again here. Kept as the records themselves; found by key with
    a bisection that decodes O(log n) keys, so asking about a few leaves costs a few records.
    """

    __slots__ = ()

    def take_equal(self, taken: list[bytes], start: int, seen: bytearray, native: Any) -> int:
        return start  # its items are records, not sortable leaves: find_item decides

    def record(self, index: int) -> bytes:
        return self.items[index]

    def namespace(self, index: int) -> str:
        return record_fields(self.items[index])[0].decode("utf-8")

    def sort_key(self, index: int) -> bytes:
        return record_sort_key(self.items[index])

    def tail(self, index: int) -> bytes:
        return self.items[index][-TAIL:]

    def is_bucket_object(self, index: int) -> bool:
        return self.items[index].startswith(BUCKET_RECORD_PREFIX)

    def matches(self, index: int, item: bytes) -> bool:
        return record_of(item) == self.items[index]

    def find(self, key: bytes, path: str, item: bytes = b"") -> int | None:
        items = self.items
        i = bisect_left(items, key, key=record_sort_key)
        if i < len(items) and record_sort_key(items[i]) == key and self.path(i) == path:
            return i
        return None

    def namespace_range(self, namespace: str) -> NamespaceRange:
        return namespace_range(self.items, namespace,
                               lambda r: record_fields(r)[0].decode("utf-8"))

    def name(self, index: int) -> str:
        return record_fields(self.items[index])[3].decode("utf-8")

    def bucket_run(self) -> int:
        return bucket_prefix_length(self.items)

    def groups(self) -> Iterator[Group]:
        """Every run of leaves sharing (namespace, resource, scope), in key order; each found
        by galloping search (keys are sorted, so a run is contiguous)."""
        items = self.items
        count = len(items)
        i = 0
        while i < count:
            record = items[i]
            fields = []
            p = 0
            for _ in range(4):
                n = (record[p] << 8) | record[p + 1]
                fields.append(record[p + 2:p + 2 + n].decode("utf-8"))
                p += 2 + n
                if len(fields) == 3:
                    # LP(ns) ‖ LP(gr) ‖ LP(scope): length prefixes make the encoding prefix-free,
                    # so a record starts with these bytes iff it shares the three fields.
                    prefix = record[:p]
            # Galloping: most runs are short; the run ends in (i + step // 2, i + step].
            step = 1
            while i + step < count and items[i + step].startswith(prefix):
                step *= 2
            lo, hi = i + step // 2 + 1, min(i + step, count)
            while lo < hi:
                mid = (lo + hi) // 2
                if items[mid].startswith(prefix):
                    lo = mid + 1
                else:
                    hi = mid
            yield Group(i, lo, fields[0], fields[1], fields[2], fields[3])
            i = lo


class LeafPrefix(LeafTable):
    """The first leaves of a table of ``count`` (a proven seal's bucket objects, all that a
    whole verification of an unchanged archive reads); asking about any other leaf, or
    searching, is a bug and fails loudly rather than answering "not sealed"."""

    __slots__ = ("count",)

    def take_equal(self, taken: list[bytes], start: int, seen: bytearray, native: Any) -> int:
        return start  # only a prefix of the table is held: find_item decides

    def __init__(self, items: list[bytes], count: int) -> None:
        super().__init__(items)
        self.count = count

    def __len__(self) -> int:
        return self.count

    def find(self, key: bytes, path: str, item: bytes = b"") -> int | None:
        raise LookupError("a leaf prefix cannot be searched")

    def namespace_range(self, namespace: str) -> NamespaceRange:
        raise LookupError("a leaf prefix cannot be searched")
