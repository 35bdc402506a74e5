"""Byte-exact surgery on a Go-written tar stream, the way an attacker with bucket access edits one.

A Go-written Velero tarball is a sequence of members: an optional PAX header (for long names), a
USTAR header, the data padded to 512 bytes. ``read_members`` splits the decompressed stream into
them without re-encoding anything, so every member the test does not touch keeps Go's exact bytes;
``with_data`` changes only the size field and the checksum of the header it edits; ``go_member``
writes a new member as Go's ``archive/tar`` would (USTAR name, prefix split, or PAX ``path``).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from tests import tarcraft as tc

GO_MTIME = 1764221678  # a fixed header mtime for members written by the tests


@dataclass(frozen=True)
class Member:
    name: str  # the final path: the PAX path if there is one, else prefix/name
    meta: bytes  # the PAX header and its padded records, b"" when Go wrote none
    header: bytes  # the 512-byte USTAR header
    data: bytes  # the entry's data, unpadded

    def raw(self) -> bytes:
        return self.meta + self.header + tc.pad(self.data)

    def with_data(self, data: bytes) -> Member:
        """The same member with other bytes: only the size field and checksum change."""
        header = bytearray(self.header)
        header[124:136] = tc.octal(len(data), 12)
        header[148:156] = b"        "
        header[148:156] = b"%06o\x00 " % tc.checksum(bytes(header))
        return replace(self, header=bytes(header), data=data)


def _field(block: bytes, start: int, width: int) -> bytes:
    return block[start : start + width].split(b"\x00", 1)[0]


def read_members(tar: bytes) -> list[Member]:
    """Split a Go-written tar stream (USTAR + PAX 'x' headers, regular files) into members."""
    members: list[Member] = []
    pos = 0
    meta = b""
    pax_path: str | None = None
    while True:
        header = tar[pos : pos + 512]
        assert len(header) == 512, "not a whole tar stream"
        if header == tc.ZERO_BLOCK:
            assert tar[pos + 512 : pos + 1024] == tc.ZERO_BLOCK
            return members
        size = int(_field(header, 124, 12) or b"0", 8)
        data = tar[pos + 512 : pos + 512 + size]
        block_end = pos + 512 + size + (-size % 512)
        typeflag = header[156:157]
        if typeflag == b"x":
            assert not meta, "two PAX headers in a row"
            meta = tar[pos:block_end]
            for record in data.decode().splitlines():
                key, _, value = record.split(" ", 1)[1].partition("=")
                if key == "path":
                    pax_path = value
            pos = block_end
            continue
        assert typeflag == b"0", f"Go-written Velero tarballs hold regular files only: {typeflag!r}"
        name = _field(header, 0, 100).decode()
        prefix = _field(header, 345, 155).decode()
        if prefix:
            name = prefix + "/" + name
        members.append(Member(pax_path or name, meta, header, data))
        meta, pax_path = b"", None
        pos = block_end


def go_member(path: str, data: bytes, *, mtime: int = GO_MTIME) -> Member:
    """The member Go's tar.Writer writes for a Velero item (writer.go: USTAR, else a prefix
    split at a '/', else a PAX header with the full path and the name cut to 100 bytes)."""
    raw = path.encode()
    if len(raw) <= 100 and path.isascii():
        return Member(path, b"", tc.header(raw, size=len(data), mtime=mtime), data)
    prefix, _, name = path.rpartition("/")
    if path.isascii() and 0 < len(prefix) <= 155 and 0 < len(name) <= 100:
        return Member(path, b"", tc.header(name, prefix=prefix, size=len(data), mtime=mtime), data)
    directory, _, file = path.rpartition("/")
    pax_name = f"{directory}/PaxHeaders.0/{file}".encode()[:100]
    records = tc.pax_record("path", path)
    meta = tc.header(pax_name, size=len(records), typeflag=b"x", mode=0, mtime=0,
                     fields={"devmajor": bytes(8), "devminor": bytes(8)}) + tc.pad(records)
    return Member(path, meta, tc.header(raw[:100], size=len(data), mtime=mtime), data)


def build(members: list[Member], *, end: bool = True) -> bytes:
    return b"".join(m.raw() for m in members) + (tc.end_of_archive() if end else b"")


def decompress(tarball: Path) -> bytes:
    return gzip.decompress(tarball.read_bytes())


def load(tarball: Path) -> list[Member]:
    return read_members(decompress(tarball))


def store(tarball: Path, tar: bytes | list[Member], *, level: int = 6) -> None:
    """Write ``tar`` (bytes, or members + end marker) as one gzip member with Go's header."""
    if not isinstance(tar, bytes):
        tar = build(tar)
    tarball.write_bytes(tc.gzip_member(tar, level=level))


def find(members: list[Member], prefix: str) -> Member:
    return next(m for m in members if m.name.startswith(prefix))


def index_of(members: list[Member], name: str) -> int:
    return next(i for i, m in enumerate(members) if m.name == name)


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF
