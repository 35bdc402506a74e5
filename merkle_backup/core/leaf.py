"""Leaf records: what one Merkle leaf commits to (docs/format.md §4).

A leaf record binds an object's identity to its bytes:

    record = LP(namespace) ‖ LP(resource) ‖ LP(scope) ‖ LP(name) ‖ LP(version) ‖ LP(path)
             ‖ u64be(size) ‖ BLAKE3-256(content)
    LP(s)  = u16be(len(utf8(s))) ‖ utf8(s)

and the leaf hash is ``BLAKE3(0x00 ‖ record)`` (core/tree.py). The key is recomputed from the
path on decoding and must equal the stored one, so content sealed for resource X can never pass
as resource Y: X's path, key and digest are all inside the hash.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import blake3

from merkle_backup.core.keys import (
    SCOPE_BUCKET,
    PathError,
    ResourceKey,
    key_for_bucket_object,
    key_for_tar_path,
)

DIGEST_SIZE = 32
MAX_FIELD = 0xFFFF
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


def content_digest(data: bytes) -> bytes:
    """BLAKE3-256 of an object's bytes (docs/format.md §4)."""
    return blake3.blake3(data).digest()


@dataclass(frozen=True, slots=True)
class LeafRecord:
    key: ResourceKey
    path: str
    size: int
    digest: bytes

    @property
    def is_bucket_object(self) -> bool:
        return self.key.scope == SCOPE_BUCKET

    def encode(self) -> bytes:
        parts = [_lp(c) for c in self.key.components()]
        parts.append(_lp(self.path))
        parts.append(_U64.pack(self.size))
        parts.append(self.digest)
        return b"".join(parts)


def key_for_path(path: str, *, bucket_object: bool) -> ResourceKey:
    return key_for_bucket_object(path) if bucket_object else key_for_tar_path(path)


def decode_record(data: bytes) -> LeafRecord:
    """Strictly decode one leaf record; ValueError on any deviation (callers wrap it)."""
    fields: list[str] = []
    offset = 0
    for _ in range(6):
        if offset + 2 > len(data):
            raise ValueError("leaf record is truncated")
        (length,) = _U16.unpack_from(data, offset)
        offset += 2
        raw = data[offset : offset + length]
        if len(raw) != length:
            raise ValueError("leaf record is truncated")
        fields.append(raw.decode("utf-8"))  # UnicodeDecodeError is a ValueError
        offset += length
    if len(data) - offset != 8 + DIGEST_SIZE:
        raise ValueError("leaf record has the wrong length")
    (size,) = _U64.unpack_from(data, offset)
    digest = bytes(data[offset + 8 :])
    key = ResourceKey(*fields[:5])
    path = fields[5]
    try:
        expected = key_for_path(path, bucket_object=key.scope == SCOPE_BUCKET)
    except PathError as e:
        raise ValueError(f"leaf record path {path!r}: {e}") from e
    if expected != key:
        raise ValueError(f"leaf record key does not match its path {path!r}")
    return LeafRecord(key, path, size, digest)


def _lp(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > MAX_FIELD:
        raise ValueError("leaf record field longer than 65535 bytes")
    return _U16.pack(len(raw)) + raw
