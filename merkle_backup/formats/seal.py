"""The seal file: bytes <-> SealFile (docs/format.md §7).

One msgpack map with exactly the keys ``magic``, ``version``, ``checkpoint``, ``signature`` and
``leaves``; in version 2 ``leaves`` is the last, so its records (the *leaf section*, §7.4) run
to the end of the file and their BLAKE3 is signed in the checkpoint. Decoding is strict: wrong
magic, unknown version, missing or extra keys, wrong types, trailing bytes and over-limit sizes
are all FormatError. Nothing here is trusted: the
verifier checks the signature over ``checkpoint`` first and only then the leaf table.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import blake3
import msgpack

from merkle_backup.errors import FormatError
from merkle_backup.formats.strict import unique_keys

SEAL_MAGIC = "merkle-backup-seal"
SEAL_VERSION = 2  # what this tool writes for one key; 3 for several (§7.5); it reads 1, 2 and 3
SEAL_VERSION_MULTI = 3
SEAL_VERSIONS = (1, 2, 3)
MAX_SIGNATURES = 8  # core.checkpoint.MAX_KEYS
MAX_SEAL_BYTES = 2 * 2**30        # a seal of 5 million leaves is about 1 GiB
MAX_LEAVES = 10_000_000
MAX_RECORD_BYTES = 6 * (2 + 0xFFFF) + 40
MAX_CHECKPOINT_BYTES = 4096
_KEYS = frozenset({"magic", "version", "checkpoint", "signature", "leaves"})
# Version 3 (§7.5): ``signatures``, one per key line of the checkpoint, instead of ``signature``.
_KEYS_V3 = frozenset({"magic", "version", "checkpoint", "signatures", "leaves"})


@dataclass(frozen=True)
class SealFile:
    """A decoded, NOT yet verified seal: every field is attacker-controlled until checked."""

    checkpoint: bytes       # the signed checkpoint body (core/checkpoint.py)
    signature: bytes        # Ed25519 over checkpoint
    leaves: list[bytes]     # leaf records (core/leaf.py), in key order
    # The envelope's version; None: the version of the checkpoint's context line (2 for
    # "merkle-backup/checkpoint/v2", else 1).
    version: int | None = None
    # Version 3: the signatures of the checkpoint's other key lines, in their order.
    co_signatures: tuple[bytes, ...] = ()

    @property
    def signatures(self) -> tuple[bytes, ...]:
        return (self.signature, *self.co_signatures)


def version_of(checkpoint: bytes) -> int:
    """The seal version whose checkpoint this text claims to be (its context line)."""
    if checkpoint.startswith(b"merkle-backup/checkpoint/v3\n"):
        return 3
    return 2 if checkpoint.startswith(b"merkle-backup/checkpoint/v2\n") else 1


def _signature_field(version: int, signatures: tuple[bytes, ...]) -> tuple[str, Any]:
    if version == SEAL_VERSION_MULTI:
        return "signatures", list(signatures)
    return "signature", signatures[0]


def encode_seal(seal: SealFile) -> bytes:
    version = seal.version if seal.version is not None else version_of(seal.checkpoint)
    key, value = _signature_field(version, seal.signatures)
    packed: bytes = msgpack.packb(
        {
            "magic": SEAL_MAGIC,
            "version": version,
            "checkpoint": seal.checkpoint,
            key: value,
            "leaves": seal.leaves,
        },
        use_bin_type=True,
    )
    return packed


def encode_seal_head(checkpoint: bytes, signature: bytes | tuple[bytes, ...], leaves: int) -> bytes:
    """The bytes of ``encode_seal`` up to its first leaf: a seal is this, then each record in
    the framing of ``leaf_frame`` (the leaf section). Lets a sealer write the leaves as it
    produces them. ``signature``: one, or (version 3) one per key line of ``checkpoint``."""
    packer = msgpack.Packer(use_bin_type=True)
    head: bytes = packer.pack_map_header(5)
    version = version_of(checkpoint)
    signatures = (signature,) if isinstance(signature, bytes) else signature
    for key, value in (("magic", SEAL_MAGIC), ("version", version),
                       ("checkpoint", checkpoint), _signature_field(version, signatures)):
        head += packer.pack(key) + packer.pack(value)
    tail: bytes = packer.pack("leaves") + packer.pack_array_header(leaves)
    return head + tail


def leaf_section(records: list[bytes]) -> bytes:
    """The leaf section of a seal holding these records (§7.4): each record's shortest msgpack
    ``bin`` header, then the record."""
    return b"".join(leaf_frame(len(r)) + r for r in records)


def leaf_frame(length: int) -> bytes:
    """The msgpack ``bin`` header that precedes a leaf record of ``length`` bytes."""
    if length < 0x100:
        return bytes((0xC4, length))
    if length < 0x10000:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


def unpack_strict(
    data: bytes, *, what: str, max_array: int, max_map: int = 16, max_bin: int = 2**20
) -> Any:
    """msgpack-decode ``data`` as one object with no trailing bytes, raising FormatError."""
    try:
        return msgpack.unpackb(
            data, max_bin_len=max(MAX_RECORD_BYTES, max_bin), max_array_len=max_array,
            max_map_len=max_map, **_STRICT,
        )
    except msgpack.ExtraData as e:
        raise FormatError(f"{what} has trailing bytes after its content") from e
    except _MSGPACK_ERRORS as e:
        raise _invalid(what, e) from e


def _invalid(what: str, e: Exception) -> FormatError:
    return FormatError(f"{what} is not valid msgpack ({type(e).__name__}: {e})")


# Every msgpack decode of our files: text as str, only str map keys, lists, no ext types, no
# repeated map keys, and no string longer than a checkpoint.
_STRICT: dict[str, Any] = {
    "raw": False, "strict_map_key": True, "use_list": True,
    "max_str_len": MAX_CHECKPOINT_BYTES, "max_ext_len": 0,
    "object_pairs_hook": unique_keys,  # msgpack keeps the last of repeated keys: refuse them
}
# msgpack raises ValueError (incl. StackError, FormatError) and UnpackException subclasses.
_MSGPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


def signed_fields(obj: dict[str, Any], *, multi: bool, what: str
                  ) -> tuple[bytes, bytes, tuple[bytes, ...]]:
    """The checkpoint and its signatures of a seal or proof file's envelope, checked (§7.1,
    §7.5, §11.1): the checkpoint binary, at most 4096 bytes; one 64-byte ``signature``, or, in
    the several-keys versions, a ``signatures`` list of 2 to MAX_SIGNATURES of them."""
    checkpoint = obj["checkpoint"]
    if type(checkpoint) is not bytes or len(checkpoint) > MAX_CHECKPOINT_BYTES:
        raise FormatError(f"{what} checkpoint must be binary, at most 4096 bytes")
    if multi:
        signatures = obj["signatures"]
        if type(signatures) is not list or not 2 <= len(signatures) <= MAX_SIGNATURES:
            raise FormatError(f"{what} signatures must be a list of 2 to {MAX_SIGNATURES}")
    else:
        signatures = [obj["signature"]]
    if not all(type(sig) is bytes and len(sig) == 64 for sig in signatures):
        raise FormatError(f"{what} signature must be 64 bytes of binary")
    return checkpoint, signatures[0], tuple(signatures[1:])


def check_envelope(obj: Any, *, what: str, magic: str, version: int | tuple[int, ...],
                   keys: frozenset[str]) -> dict[str, Any]:
    """The shared magic/version/exact-keys checks of our msgpack files."""
    if not isinstance(obj, dict):
        raise FormatError(f"{what} is not a msgpack map")
    if obj.get("magic") != magic:
        raise FormatError(
            f"not a {what}: magic is {str(obj.get('magic'))[:40]!r}, expected {magic!r}"
        )
    versions = version if isinstance(version, tuple) else (version,)
    found = obj.get("version")
    if type(found) is not int or found not in versions:
        reads = " and ".join(map(str, versions))
        raise FormatError(f"{what} version {found!r} is not supported (this tool reads {reads})")
    if set(obj) != keys:
        missing, extra = sorted(keys - set(obj)), sorted(set(obj) - keys, key=repr)
        raise FormatError(
            f"{what} keys differ from version {version}: missing {missing}, extra {extra}"
        )
    return obj


@dataclass(frozen=True)
class SealHead:
    """A seal file's fields but its leaves, NOT yet verified; the leaves stay in the file."""

    checkpoint: bytes
    signature: bytes
    leaf_count: int
    leaves_at: int  # file offset of the first leaf record's msgpack header
    version: int = 1
    # Whether every leaf's framing and the end of the file were read. False only for a
    # version-2 head read with ``framing=False``: its leaf section runs to the end of the file,
    # and trust.py hashes it first (check_framing reads it through when the hash differs).
    framing_checked: bool = True
    size: int = 0  # the seal file's size in bytes
    co_signatures: tuple[bytes, ...] = ()  # version 3: the signatures after the first

    @property
    def signatures(self) -> tuple[bytes, ...]:
        """Every signature, in the order of the checkpoint's key lines (one before version 3)."""
        return (self.signature, *self.co_signatures)


def _unpacker(f: BinaryIO) -> msgpack.Unpacker:
    return msgpack.Unpacker(
        f, read_size=1 << 20, max_buffer_size=4 * MAX_RECORD_BYTES, max_bin_len=MAX_RECORD_BYTES,
        max_array_len=MAX_LEAVES, max_map_len=16, **_STRICT,
    )


# How much of a seal ``read_seal_head(..., whole=False)`` needs: its fields before the leaves
# (a checkpoint of at most 4096 bytes, a 64-byte signature, the keys) fit with room to spare.
SEAL_HEAD_PREFIX_BYTES = 8192


def read_seal_head(f: BinaryIO, *, whole: bool = True, framing: bool = True) -> SealHead:
    """Read and check a seal file's envelope (§7.1) in one streaming pass over a seekable
    binary file, skipping the leaf records (in constant memory, whatever the seal's size);
    ``read_leaves`` then streams them. The same rules as ``decode_seal``, which is built on it.

    ``whole=False`` checks a prefix of a seal (at least its first SEAL_HEAD_PREFIX_BYTES, e.g.
    one ranged GET): every field but the leaves, which must come last, as this tool writes
    them; the leaves and the end of the file are not read. Enough to tell a seal from an
    empty, truncated or foreign file (``seal-all``), not to verify one.

    ``framing=False``: a version-2 seal's leaf section (which must come last) is not read
    through (``framing_checked`` False): the caller hashes it, and calls ``check_framing`` when
    the hash is not the signed one. Version-1 seals are read through as with ``framing``.
    """
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    if size > MAX_SEAL_BYTES:
        raise FormatError(f"seal is {size} bytes, over the {MAX_SEAL_BYTES} byte limit")
    unpacker = _unpacker(f)
    fields: dict[str, Any] = {}
    count = leaves_at = -1
    last = False
    try:
        try:
            entries = unpacker.read_map_header()
        except msgpack.UnpackValueError as e:  # another type than a map
            raise FormatError("seal file is not a msgpack map") from e
        for _ in range(entries):
            key = unpacker.unpack()
            if key in fields:
                raise ValueError("a map repeats a key")
            if key != "leaves":
                fields[key] = unpacker.unpack()
                continue
            try:
                count = unpacker.read_array_header()
            except msgpack.UnpackValueError as e:
                raise FormatError("seal leaves must be a list of binary leaf records") from e
            if count > MAX_LEAVES:  # read_array_header does not apply max_array_len
                raise FormatError(f"seal holds {count} leaves, over the limit of {MAX_LEAVES}")
            leaves_at = unpacker.tell()
            fields[key] = None  # read by read_leaves
            last = len(fields) == entries
            if not whole or (not framing and last and fields.get("version") in (2, 3)):
                if not last:
                    raise FormatError("seal leaves are not its last field")
                break
            for _ in range(count):
                unpacker.skip()
    except FormatError:
        raise
    except _MSGPACK_ERRORS as e:
        raise _invalid("seal file", e) from e
    found = fields.get("version")
    if found in (2, 3) and not last:  # the leaf section runs to the end (§7.4)
        raise FormatError(f"seal version {found}: leaves are not its last field")
    checked = whole and (framing or found not in (2, 3))
    if checked and unpacker.tell() != size:
        raise FormatError("seal file has trailing bytes after its content")
    check_envelope(fields, what="seal file", magic=SEAL_MAGIC, version=SEAL_VERSIONS,
                   keys=_KEYS_V3 if found == SEAL_VERSION_MULTI else _KEYS)
    checkpoint, signature, co_signatures = signed_fields(
        fields, multi=found == SEAL_VERSION_MULTI, what="seal")
    version = fields["version"]
    if version_of(checkpoint) != version:  # no downgrade or upgrade (docs/format.md §7.4)
        raise FormatError(f"seal version {version} holds a checkpoint of version "
                          f"{version_of(checkpoint)}")
    return SealHead(checkpoint, signature, count, leaves_at, version, checked, size, co_signatures)


LEAF_ERRORS = _MSGPACK_ERRORS


def leaf_unpacker() -> msgpack.Unpacker:
    """A feed-mode unpacker of leaf records (``feed`` the leaf section, iterate the records)."""
    return msgpack.Unpacker(max_buffer_size=4 * MAX_RECORD_BYTES + (4 << 20),
                            max_bin_len=MAX_RECORD_BYTES, max_array_len=0, max_map_len=0,
                            max_str_len=0, max_ext_len=0)


def check_framing(f: BinaryIO, head: SealHead) -> None:
    """Read a head's leaf section through: every leaf a msgpack value, nothing after the last
    (what ``read_seal_head`` checks with ``framing``). Record types are read_leaves' check."""
    f.seek(head.leaves_at)
    unpacker = _unpacker(f)
    try:
        for _ in range(head.leaf_count):
            unpacker.skip()
    except _MSGPACK_ERRORS as e:
        raise _invalid("seal file", e) from e
    if head.leaves_at + unpacker.tell() != head.size:
        raise FormatError("seal file has trailing bytes after its content")


def hash_leaf_section(f: BinaryIO, head: SealHead) -> bytes:
    """BLAKE3 of the head's leaf section: from its first leaf to the end of the file (§7.4)."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    f.seek(head.leaves_at)
    while chunk := f.read(4 << 20):
        hasher.update(chunk)
    return hasher.digest()


def read_leaf_list(f: BinaryIO, head: SealHead) -> list[bytes]:
    """Every leaf record at once, decoded by one msgpack call: for a leaf section already proven
    by its signed hash (so the sealer wrote it). FormatError as read_leaves raises it."""
    f.seek(head.leaves_at)
    array = msgpack.Packer().pack_array_header(head.leaf_count)
    unpacker = msgpack.Unpacker(
        _Prefixed(array, f), read_size=1 << 20, max_buffer_size=4 * MAX_RECORD_BYTES + (1 << 20),
        max_bin_len=MAX_RECORD_BYTES, max_array_len=MAX_LEAVES, max_map_len=0, max_str_len=0,
        max_ext_len=0)
    try:
        records = unpacker.unpack()
    except _MSGPACK_ERRORS as e:
        raise _invalid("seal file", e) from e
    if type(records) is not list or not all(type(r) is bytes for r in records):
        raise FormatError("seal leaves must be a list of binary leaf records")
    return records


class _Prefixed:
    """A file read as ``prefix`` followed by the rest of ``f`` (for read_leaf_list)."""

    def __init__(self, prefix: bytes, f: BinaryIO) -> None:
        self.prefix, self.f = prefix, f

    def read(self, n: int = -1) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix, b""
            return data
        return self.f.read(n)


def read_leaves(f: BinaryIO, head: SealHead) -> Iterator[bytes]:
    """The leaf records of the seal file ``head`` was read from, one at a time (FormatError
    on a record that is not binary, or a file that changed under the reader)."""
    f.seek(head.leaves_at)
    unpacker = _unpacker(f)
    for _ in range(head.leaf_count):
        try:
            record = unpacker.unpack()
        except _MSGPACK_ERRORS as e:
            raise _invalid("seal file", e) from e
        if type(record) is not bytes:
            raise FormatError("seal leaves must be a list of binary leaf records")
        yield record


def decode_seal(data: bytes) -> SealFile:
    f = io.BytesIO(data)
    head = read_seal_head(f)
    return SealFile(head.checkpoint, head.signature, list(read_leaves(f, head)),
                    co_signatures=head.co_signatures)
