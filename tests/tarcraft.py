"""Byte-exact tar and gzip construction for tests of the strict archive reader.

Every helper returns plain ``bytes`` so that a test can build any stream, valid or not, and say
exactly which bytes are wrong. Defaults produce what Go's ``archive/tar`` writes for Velero:
USTAR magic ``ustar\\0`` + ``00``, mode 0755, zero-padded NUL-terminated octal numbers.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)

USTAR = b"ustar\x0000"  # magic + version, as Go writes
GNU = b"ustar  \x00"  # GNU magic + version

# Field offsets and widths of a header block (POSIX ustar).
FIELDS: dict[str, tuple[int, int]] = {
    "name": (0, 100),
    "mode": (100, 8),
    "uid": (108, 8),
    "gid": (116, 8),
    "size": (124, 12),
    "mtime": (136, 12),
    "chksum": (148, 8),
    "typeflag": (156, 1),
    "linkname": (157, 100),
    "magic": (257, 8),  # magic and version together
    "uname": (265, 32),
    "gname": (297, 32),
    "devmajor": (329, 8),
    "devminor": (337, 8),
    "prefix": (345, 155),
    "pad": (500, 12),
}


def octal(value: int, width: int) -> bytes:
    """A zero-padded, NUL-terminated octal field as Go writes it."""
    return b"%0*o\x00" % (width - 1, value)


def checksum(block: bytes) -> int:
    """The unsigned header checksum: all bytes, with the checksum field counted as spaces."""
    return sum(block[:148]) + 8 * 0x20 + sum(block[156:])


def header(
    name: bytes | str = b"file.json",
    *,
    size: int = 0,
    typeflag: bytes = b"0",
    magic: bytes = USTAR,
    prefix: bytes | str = b"",
    linkname: bytes = b"",
    mode: int = 0o755,
    mtime: int = 1732780800,
    chksum: int | bytes | None = None,
    fields: dict[str, bytes] | None = None,
) -> bytes:
    """One 512-byte header block.

    ``fields`` overrides any raw field (see FIELDS) before the checksum is computed, e.g.
    ``fields={"size": b"\\x80" + bytes(11)}``. ``chksum`` is the checksum to write: an int (written
    as Go does, 6 octal digits + NUL + space), raw bytes, or None for the correct one.
    """
    if isinstance(name, str):
        name = name.encode()
    if isinstance(prefix, str):
        prefix = prefix.encode()
    block = bytearray(BLOCK)

    def put(field: str, value: bytes) -> None:
        start, width = FIELDS[field]
        if len(value) > width:
            raise ValueError(f"{field} is {len(value)} bytes, the field holds {width}")
        block[start : start + len(value)] = value

    put("name", name)
    put("mode", octal(mode, 8))
    put("uid", octal(0, 8))
    put("gid", octal(0, 8))
    put("size", octal(size, 12))
    put("mtime", octal(mtime, 12))
    put("typeflag", typeflag)
    put("linkname", linkname)
    put("magic", magic)
    if magic == USTAR:
        put("devmajor", octal(0, 8))
        put("devminor", octal(0, 8))
        put("prefix", prefix)
    for field, value in (fields or {}).items():
        width = FIELDS[field][1]
        if len(value) != width:
            raise ValueError(f"raw {field} must be {width} bytes, got {len(value)}")
        put(field, value)
    if chksum is None:
        chksum = checksum(bytes(block))
    if isinstance(chksum, int):
        chksum = b"%06o\x00 " % chksum
    put("chksum", chksum)
    return bytes(block)


def gnu_header(name: bytes | str = b"file.json", **kwargs: object) -> bytes:
    """A header with the GNU magic (``ustar  \\0``); GNU has no prefix field."""
    return header(name, magic=GNU, **kwargs)  # type: ignore[arg-type]


def pad(data: bytes) -> bytes:
    """``data`` followed by NULs up to a whole number of blocks."""
    return data + bytes(-len(data) % BLOCK)


def entry(name: bytes | str, data: bytes = b"", **kwargs: object) -> bytes:
    """A header (size = len(data) unless given) followed by the padded data."""
    kwargs.setdefault("size", len(data))
    return header(name, **kwargs) + pad(data)  # type: ignore[arg-type]


def pax_record(key: bytes | str, value: bytes | str) -> bytes:
    """One PAX record ``"%d %s=%s\\n"`` whose length counts itself."""
    if isinstance(key, str):
        key = key.encode()
    if isinstance(value, str):
        value = value.encode()
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax_header(
    records: Iterable[tuple[bytes | str, bytes | str]] | bytes,
    *,
    name: bytes = b"PaxHeaders.0/file.json",
    typeflag: bytes = b"x",
    magic: bytes = USTAR,
) -> bytes:
    """A PAX extended header ('x', or 'g' for global) and its padded records.

    ``records`` is a list of (key, value) pairs, or raw record bytes for malformed ones.
    """
    payload = (
        records if isinstance(records, bytes) else b"".join(pax_record(k, v) for k, v in records)
    )
    return header(name, size=len(payload), typeflag=typeflag, mtime=0, magic=magic) + pad(payload)


def gnu_long_name(name: bytes | str, *, typeflag: bytes = b"L", nul: bool = True) -> bytes:
    """A GNU long-name ('L', or 'K' for a long link name) header and its data, as GNU tar writes
    it: name ``././@LongLink``, data = the name plus a NUL."""
    if isinstance(name, str):
        name = name.encode()
    data = name + (b"\x00" if nul else b"")
    return gnu_header(b"././@LongLink", size=len(data), typeflag=typeflag, mode=0o644) + pad(data)


def end_of_archive() -> bytes:
    """The two zero blocks that end a tar stream."""
    return ZERO_BLOCK * 2


def tar(*parts: bytes, end: bool = True) -> bytes:
    """Concatenate parts and, unless ``end`` is False, the end-of-archive marker."""
    return b"".join(parts) + (end_of_archive() if end else b"")


def gzip_member(data: bytes, *, level: int = 6) -> bytes:
    """One gzip member with Go's fixed header (``1f 8b 08 00 00000000 00 ff``)."""
    co = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = co.compress(data) + co.flush()
    trailer = (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little") + (
        len(data) & 0xFFFFFFFF
    ).to_bytes(4, "little")
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body + trailer


def targz(*parts: bytes, end: bool = True) -> bytes:
    """``gzip_member(tar(*parts))``: a whole tarball in one call."""
    return gzip_member(tar(*parts, end=end))
