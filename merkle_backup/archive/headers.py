"""Tar headers: the 512-byte block, PAX and GNU long-name records, entry types and path rules.

docs/format.md §2 rules 2-6. Everything here is the reference for a rule and the source of its
error message: ``parse_header`` parses any header field by field, ``parse_pax`` and
``parse_gnu_long_name`` the meta headers, ``type_problem`` and ``path_problem`` say why an entry
may not be sealed. The reader's fast path (``FAST_HEADER``, ``SAFE_PATH``) only recognises the
common, already-valid shapes; tests/test_archive.py checks that it agrees with these functions.
Pure: no I/O.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from merkle_backup.errors import ArchiveError

BLOCK_SIZE = 512
ZERO_BLOCK = bytes(BLOCK_SIZE)

# Magic and version fields (Go archive/tar format.go).
MAGIC_USTAR = b"ustar\x00"
VERSION_USTAR = b"00"
MAGIC_GNU = b"ustar "
VERSION_GNU = b" \x00"
TRAILER_STAR = b"tar\x00"  # bytes 508..512; Go then reads a 131-byte STAR prefix instead

# Typeflags.
TYPE_REG = b"0"
TYPE_REGA = b"\x00"  # legacy regular file; Go turns it into a directory if the name ends in "/"
TYPE_PAX = b"x"
TYPE_PAX_GLOBAL = b"g"
TYPE_GNU_LONGNAME = b"L"
TYPE_GNU_LONGLINK = b"K"
TYPE_GNU_SPARSE = b"S"

# Types Go treats as header-only: their size field is ignored and no data follows
# (Go archive/tar common.go isHeaderOnlyType).
HEADER_ONLY_TYPES = frozenset((b"1", b"2", b"3", b"4", b"5", b"6"))

# Per-entry problems for types that are not regular files (docs/format.md §2 rule 5).
TYPE_PROBLEMS = {
    b"1": "hard link entries are not allowed",
    b"2": "symlink entries are not allowed",
    b"3": "character device entries are not allowed",
    b"4": "block device entries are not allowed",
    b"5": "directory entries are not allowed",
    b"6": "fifo entries are not allowed",
    b"7": "contiguous file entries are not allowed",
}
DIRECTORY_PROBLEM = TYPE_PROBLEMS[b"5"]

# The header layout (POSIX ustar; GNU uses the same offsets up to byte 345).
HEADER_STRUCT = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12s")
# GNU atime and ctime sit where USTAR has the start of the prefix.
GNU_ATIME = slice(345, 357)
GNU_CTIME = slice(357, 369)

# The exact header shape Go's archive/tar writes (also GNU tar and Python's tarfile for plain
# files): NUL-terminated zero-padded octal numbers, "ustar\0" "00", nothing after the prefix.
# Groups: name (Go's parseString: up to the first NUL), size, checksum, typeflag, prefix.
# A header that does not match is not wrong: it takes the slow path, which decides.
FAST_HEADER = re.compile(
    rb"(?=([^\x00]{1,100})).{100}"  # name
    rb"[0-7]{7}\x00[0-7]{7}\x00[0-7]{7}\x00"  # mode, uid, gid
    rb"([0-7]{11})\x00[0-7]{11}\x00"  # size, mtime
    rb"([0-7]{6})\x00 "  # checksum
    rb"(.).{100}"  # typeflag, linkname
    rb"ustar\x0000"  # magic, version
    rb".{64}"  # uname, gname
    rb"(?:[0-7]{7}\x00[0-7]{7}\x00|\x00{16})"  # devmajor, devminor (empty in Go's PAX headers)
    rb"(?=([^\x00]{0,155})).{155}"  # prefix
    rb"\x00{12}",  # padding (so no STAR trailer)
    re.DOTALL,
)

# One numeric header field: octal digits, optionally surrounded by spaces / NULs. A strict subset
# of what Go's parseOctal accepts (it trims " \x00", cuts at a NUL, then parses octal), so any
# value accepted here is read identically by Go. Base-256 (high bit set) is refused.
OCTAL_FIELD = re.compile(rb"[ \x00]*([0-7]*)[ \x00]*")

# A safe relative path (docs/format.md §2 rule 6): one or more "/"-separated segments, each
# non-empty, not "." or "..", without NUL. Control characters and backslashes are allowed:
# Kubernetes allows them in RBAC names and Velero writes and restores them on Linux, where a
# backslash is an ordinary character. (They are escaped wherever a path is shown.) The fast
# check for the common case (UTF-8 is checked by decoding); _path_problem() says which rule a
# path breaks.
_SEGMENT = rb"(?!\.\.?(?:/|\Z))[^\x00/]+"
SAFE_PATH = re.compile(_SEGMENT + rb"(?:/" + _SEGMENT + rb")*")

# PAX records (docs/format.md §2 rule 4): "%d %s=%s\n", the length in decimal without sign or
# leading zero.
PAX_LENGTH = re.compile(rb"[1-9][0-9]{0,9} ")
PAX_SIZE = re.compile(rb"[0-9]{1,18}")  # Go's strconv.ParseInt(v, 10, 64); no sign
PAX_INT = re.compile(rb"-?[0-9]{1,18}")  # uid, gid: Go's strconv.ParseInt(v, 10, 64)
PAX_TIME = re.compile(rb"-?[0-9]{1,18}(?:\.[0-9]*)?")  # Go's parsePAXTime
PAX_IGNORED_TIME_KEYS = frozenset((b"mtime", b"atime", b"ctime"))
PAX_IGNORED_INT_KEYS = frozenset((b"uid", b"gid"))
PAX_IGNORED_NAME_KEYS = frozenset((b"uname", b"gname"))

# Go's archive/tar refuses a PAX or GNU long-name header whose data is over this (format.go
# maxSpecialFileSize), whatever max_pax_size says.
GO_MAX_SPECIAL_FILE = 1 << 20

# How much of a long path to show in an error message.
SHOWN_PATH_CHARS = 200

@dataclass(slots=True)
class Meta:
    """What a PAX 'x' or GNU 'L' header says about the next header."""

    kind: str
    path: bytes | None = None
    size: int | None = None


META_KINDS = {TYPE_PAX: "PAX", TYPE_GNU_LONGNAME: "GNU long name"}

FATAL_TYPES = {
    TYPE_PAX_GLOBAL: "global PAX headers ('g') are not supported",
    TYPE_GNU_SPARSE: "sparse files ('S') are not supported",
    TYPE_GNU_LONGLINK: "GNU long link names ('K') are not supported",
}


def parse_header(hdr: bytes, position: int) -> tuple[bytes, int, bytes]:
    """Parse any non-zero header block: (name with USTAR prefix applied, size, typeflag).

    The reference for the header rules (docs/format.md §2 rules 2-3); raises ArchiveError naming
    the rule. Checks follow Go's order: checksum, then format magic, then numeric fields.
    """
    (
        name_field,
        mode,
        uid,
        gid,
        size_field,
        mtime,
        checksum_field,
        typeflag,
        _linkname,
        magic,
        version,
        _uname,
        _gname,
        devmajor,
        devminor,
        prefix_field,
        _pad,
    ) = HEADER_STRUCT.unpack(hdr)
    name = name_field.split(b"\x00", 1)[0]
    shown = shown_path(name) or None
    where = f" (header at tar offset {position - BLOCK_SIZE})"

    _check_checksum(hdr, checksum_field, where, shown)
    is_gnu = _check_magic(hdr, magic, version, where, shown)

    fields = [
        ("mode", mode),
        ("uid", uid),
        ("gid", gid),
        ("size", size_field),
        ("mtime", mtime),
        ("devmajor", devmajor),
        ("devminor", devminor),
    ]
    if is_gnu:
        # Go parses GNU atime/ctime when their first byte is not NUL, and if that fails it falls
        # back to reading the bytes as a USTAR prefix (Go issue 12594). Refusing anything but
        # valid octal here means Go never takes that fallback, so the name agrees.
        for label, field in (("atime", hdr[GNU_ATIME]), ("ctime", hdr[GNU_CTIME])):
            if field[0] != 0:
                fields.append((label, field))
    values = {}
    for label, field in fields:
        value = _octal(field)
        if value is None:
            if field[0] & 0x80:
                problem = f"base-256 {label} field, not supported"
            else:
                problem = f"bad {label} field {field!r} (not an octal number)"
            raise ArchiveError(f"{problem}{where}", shown)
        values[label] = value

    if not is_gnu:
        prefix = prefix_field.split(b"\x00", 1)[0]
        if prefix:
            name = prefix + b"/" + name  # Go reader.go readHeader
    return name, values["size"], typeflag


def _check_checksum(hdr: bytes, field: bytes, where: str, shown: str | None) -> None:
    """Rule 2: the unsigned header checksum, the checksum field counted as 8 spaces."""
    checksum = _octal(field)
    if checksum is None:
        raise ArchiveError(f"bad header checksum field {field!r}{where}", shown)
    actual = sum(hdr[:148]) + 8 * 32 + sum(hdr[156:])
    if checksum != actual:
        raise ArchiveError(
            f"bad header checksum: the header says {checksum}, the bytes sum to {actual}{where}",
            shown,
        )


def _check_magic(hdr: bytes, magic: bytes, version: bytes, where: str, shown: str | None) -> bool:
    """Rule 2: USTAR (PAX included) or GNU magic and version; True for GNU."""
    if magic == MAGIC_USTAR:
        if version != VERSION_USTAR:
            raise ArchiveError(f"USTAR header with version {version!r}, not b'00'{where}", shown)
        if hdr[508:512] == TRAILER_STAR:
            raise ArchiveError(f"STAR headers are not supported{where}", shown)
        return False
    if magic == MAGIC_GNU and version == VERSION_GNU:
        return True
    raise ArchiveError(
        f"not a USTAR or GNU header (magic {magic + version!r}; V7 and other old formats "
        f"are not supported){where}",
        shown,
    )


def _octal(field: bytes) -> int | None:
    """A numeric header field's value, or None if it is not plain octal (see OCTAL_FIELD)."""
    m = OCTAL_FIELD.fullmatch(field)
    if m is None:
        return None
    digits = m.group(1)
    return int(digits, 8) if digits else 0


def parse_pax(payload: bytes) -> Meta:
    """Parse a PAX extended header's records strictly (docs/format.md §2 rule 4).

    Grammar per record: ``"%d %s=%s\\n"`` where the length counts the whole record. Only the keys
    Velero's writer can produce are allowed; ``path`` and ``size`` apply to the next entry as in
    Go's mergePAX, and an empty value there (which Go reads as "keep the header field") is refused.
    """
    meta = Meta("PAX")
    seen: set[bytes] = set()
    pos = 0
    while pos < len(payload):
        m = PAX_LENGTH.match(payload, pos)
        if m is None:
            raise ArchiveError(
                f"bad PAX record at byte {pos}: no decimal length without leading zeros"
            )
        length = int(m.group()[:-1])
        end = pos + length
        if end > len(payload) or payload[end - 1] != 0x0A:  # "\n"
            raise ArchiveError(f"bad PAX record at byte {pos}: its length does not match")
        key, eq, value = payload[m.end() : end - 1].partition(b"=")
        if not eq or not key:
            raise ArchiveError(f"bad PAX record at byte {pos}: no 'key=' part")
        if b"\x00" in key:
            raise ArchiveError(f"bad PAX record at byte {pos}: NUL byte in the key")
        if key in seen:
            raise ArchiveError(f"PAX record {_key(key)} appears twice")
        seen.add(key)
        pos = end

        if key == b"path":
            if not value:
                raise ArchiveError("PAX record 'path' is empty")
            if b"\x00" in value:  # Go's validPAXRecord refuses it too
                raise ArchiveError("PAX record 'path' contains a NUL byte")
            meta.path = value
        elif key == b"size":
            if PAX_SIZE.fullmatch(value) is None:
                raise ArchiveError(f"PAX record 'size' is {value[:40]!r}, not a decimal number")
            meta.size = int(value)
        elif key in PAX_IGNORED_TIME_KEYS or key in PAX_IGNORED_INT_KEYS:
            # Ignored, but checked as Go's mergePAX parses them (it rejects the archive if that
            # fails, and skips empty values).
            pattern = PAX_TIME if key in PAX_IGNORED_TIME_KEYS else PAX_INT
            if value and pattern.fullmatch(value) is None:
                raise ArchiveError(f"PAX record {_key(key)} is {value[:40]!r}, not a number")
        elif key in PAX_IGNORED_NAME_KEYS:
            if b"\x00" in value:
                raise ArchiveError(f"PAX record {_key(key)} contains a NUL byte")
        elif key.startswith(b"GNU.sparse."):
            raise ArchiveError(f"sparse files are not supported (PAX record {_key(key)})")
        else:
            raise ArchiveError(f"PAX record {_key(key)} is not supported")
    return meta


def parse_gnu_long_name(payload: bytes) -> Meta:
    """A GNU 'L' header's data is the next entry's name, cut at the first NUL (Go parseString)."""
    name = payload.split(b"\x00", 1)[0]
    if not name:
        # Go would silently keep the header's own name; refuse the ambiguity.
        raise ArchiveError("GNU long name header ('L') with an empty name")
    return Meta("GNU long name", path=name)


def _key(key: bytes) -> str:
    return repr(key[:60].decode("utf-8", "backslashreplace"))


# -- per-entry rules --------------------------------------------------------------------------


def type_problem(typeflag: bytes, name: bytes) -> str | None:
    """Why an entry of this typeflag is not a regular file, or None if it is one."""
    if typeflag == TYPE_REG:
        return None
    if typeflag == TYPE_REGA:
        # Go reader.go: a legacy regular file whose name ends in "/" is a directory.
        return DIRECTORY_PROBLEM if name.endswith(b"/") else None
    problem = TYPE_PROBLEMS.get(typeflag)
    if problem is not None:
        return problem
    shown = typeflag.decode("ascii") if 0x21 <= typeflag[0] <= 0x7E else f"0x{typeflag[0]:02x}"
    return f"entries of unknown type '{shown}' are not allowed"


def path_problem(name: bytes) -> str | None:
    """Why a path is unsafe to extract (docs/format.md §2 rule 6), or None."""
    if not name:
        return "path is empty"
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return "path is not valid UTF-8 (no Kubernetes name is: Velero never wrote it)"
    if b"\x00" in name:
        return "path contains a NUL byte (Go's archive/tar cannot carry one: Velero never wrote it)"
    if name.startswith(b"/"):
        return "path is absolute"
    segments = name.split(b"/")
    if b".." in segments:
        return "path has a '..' segment"
    if b"." in segments:
        return "path has a '.' segment"
    if b"" in segments:
        return "path has an empty segment"  # 'a//b' or a trailing '/'
    return None


def shown_path(name: bytes | str) -> str:
    """A path fit for an error message: decoded, and cut if very long."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "backslashreplace")
    if len(name) > SHOWN_PATH_CHARS:
        return name[:SHOWN_PATH_CHARS] + f"...({len(name)} chars)"
    return name

