"""A strict, streaming reader for Velero backup tarballs (docs/format.md §2, the archive reader).

The tarball is read exactly once, front to back, from any binary file-like object, and is never
extracted. Every compressed byte is hashed (BLAKE3) as it is read, so ``archive_digest`` covers the
whole file, trailing bytes included, and the reader always reads to the very end of the file.

The reader accepts what Velero writes (one gzip member around a Go ``archive/tar`` stream: USTAR
headers, PAX ``x`` headers for long names) plus GNU long names, and for every entry it accepts it
reports the same name and bytes as Go's ``archive/tar`` (which Velero's restore uses). It is
stricter than Go wherever Go is lenient. Three outcomes:

* the entry is a regular file with a safe path: ``Entry(path, data)``;
* the entry breaks a per-entry rule (not a regular file, unsafe path): ``Entry(path, b"", problem)``
  and the reader goes on, so the caller can report every bad entry at once;
* the stream itself is malformed, or a limit is hit: ``ArchiveError`` / ``LimitExceeded``.

Speed: the per-entry work is a few C calls (one regex match over the 512-byte header, three
``adler32`` calls for the header checksum, one regex match over the path, two slices). Headers
that do not have the exact shape Go writes take a slower, field-by-field path that is the
reference for every rule and the source of every error message.
"""

from __future__ import annotations

import queue
import re
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import blake3
from isal import isal_zlib

from merkle_backup.errors import ArchiveError, LimitExceeded, NotGzip

__all__ = ["ArchiveReader", "Entry", "Limits"]

# Compressed bytes read per ``fileobj.read`` call.
READ_SIZE = 1 << 20
# Most decompressed bytes one ``decompress`` call may return: a gzip bomb can never make one call
# allocate more than this (docs/format.md §2 rule 8, limits). The inflater thread takes the GIL
# back after every call, so larger pieces mean fewer waits for it (1 MiB pieces: seal 25% slower).
MAX_OUTPUT = 4 << 20
# Decompressed pieces the inflater thread may hold ready ahead of the tar layer (16 MiB).
READ_AHEAD = 4

BLOCK_SIZE = 512
ZERO_BLOCK = bytes(BLOCK_SIZE)
GZIP_MAGIC = b"\x1f\x8b"
# gzip header flags (RFC 1952 §2.3.1), and the longest header Go's reader accepts: 10 fixed
# bytes, FEXTRA (2 + 65535), FNAME and FCOMMENT (512 each, NUL included), FHCRC (2).
FEXTRA, FNAME, FCOMMENT = 0x04, 0x08, 0x10
MAX_GZIP_HEADER = 10 + 2 + 65535 + 512 + 512 + 2

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

# PAX records (docs/format.md §2 rule 4): "%d %s=%s\n", length in decimal without sign or leading zero.
PAX_LENGTH = re.compile(rb"[1-9][0-9]{0,9} ")
PAX_SIZE = re.compile(rb"[0-9]{1,18}")  # Go's strconv.ParseInt(v, 10, 64); no sign
PAX_INT = re.compile(rb"-?[0-9]{1,18}")  # uid, gid: Go's strconv.ParseInt(v, 10, 64)
PAX_TIME = re.compile(rb"-?[0-9]{1,18}(?:\.[0-9]*)?")  # Go's parsePAXTime
PAX_IGNORED_TIME_KEYS = frozenset((b"mtime", b"atime", b"ctime"))
PAX_IGNORED_INT_KEYS = frozenset((b"uid", b"gid"))
PAX_IGNORED_NAME_KEYS = frozenset((b"uname", b"gname"))

# isal's type stub declares ``error`` as an instance; it is the exception class.
GZIP_ERROR = cast("type[Exception]", isal_zlib.error)

# The start of an object stored with aws-chunked framing (Velero issue #9951).
AWS_CHUNKED = re.compile(rb"[0-9a-fA-F]{1,16};chunk-signature=")

# Go's archive/tar refuses a PAX or GNU long-name header whose data is over this (format.go
# maxSpecialFileSize), whatever max_pax_size says.
GO_MAX_SPECIAL_FILE = 1 << 20

# How much of a long path to show in an error message.
SHOWN_PATH_CHARS = 200


@dataclass(frozen=True)
class Limits:
    """Caps that bound the reader's time and memory (docs/format.md §2 rule 8).

    Hitting any of them raises ``LimitExceeded`` before the oversized data is read. Entries with
    a problem count towards ``max_entries``, and ``max_entry_size`` also bounds the data they
    skip. Go's own 1 MiB cap on PAX / GNU long-name data applies whatever ``max_pax_size`` says.
    """

    max_entry_size: int = 64 * 2**20  # bytes of one entry's data
    max_entries: int = 5_000_000  # entries, not counting PAX / GNU meta headers
    max_total_size: int = 64 * 2**30  # decompressed bytes of the whole tar stream
    max_path_length: int = 1024  # bytes of an entry's final path
    max_pax_size: int = 64 * 2**10  # bytes of one PAX extended header or GNU long name


@dataclass(frozen=True, slots=True)
class Entry:
    """One tar entry, in stream order.

    ``path`` is the final name exactly as Go's ``archive/tar`` reports it (PAX ``path``, GNU long
    name or USTAR prefix + name applied). When ``problem`` is set the entry broke a per-entry rule,
    ``data`` is ``b""``, and a path that is not valid UTF-8 has its bad bytes shown as ``\\xNN``.
    """

    path: str
    data: bytes
    problem: str | None = None


# Entry is frozen, so its generated __init__ sets each field through object.__setattr__: a large
# share of the per-entry cost. The hot loop builds entries through the slot descriptors instead
# (the same object, about 0.2 µs less per entry).
_new_entry = Entry.__new__
_set_path = cast(Any, Entry).path.__set__
_set_data = cast(Any, Entry).data.__set__
_set_problem = cast(Any, Entry).problem.__set__


class ArchiveReader:
    """Reads a Velero ``.tar.gz`` once as a stream and yields its entries.

    Iterate it once. ``archive_digest`` (BLAKE3-256 of every byte of the file) is valid only after
    the iteration finished without error; ``archive_size`` counts the compressed bytes read so far.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        limits: Limits = Limits(),
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self._fileobj = fileobj
        self._limits = limits
        self._progress = progress
        self._hasher = blake3.blake3()
        self._digest: bytes | None = None
        self._started = False
        self.archive_size = 0
        self._unreported = 0  # compressed bytes read but not yet reported to progress

    @property
    def archive_digest(self) -> bytes:
        """BLAKE3-256 of the whole compressed file; only once iteration has finished."""
        if self._digest is None:
            raise RuntimeError("archive_digest is only known once the archive was read to its end")
        return self._digest

    def __iter__(self) -> Iterator[Entry]:
        if self._started:
            raise RuntimeError("an ArchiveReader can be iterated only once")
        self._started = True
        return cast("Iterator[Entry]", self._entries(False))

    def tuples(self) -> Iterator[tuple[str, bytes, str | None]]:
        """The same entries as plain ``(path, data, problem)`` tuples: for the sealer's and
        verifier's hot loops, where building an ``Entry`` per entry is a measurable share."""
        if self._started:
            raise RuntimeError("an ArchiveReader can be iterated only once")
        self._started = True
        return self._entries(True)  # type: ignore[return-value]

    # -- the tar layer ----------------------------------------------------------------------

    def _entries(self, as_tuples: bool) -> Iterator[Entry | tuple[str, bytes, str | None]]:
        """The tar layer, with the gzip layer decompressing ahead on a second thread."""
        inflater = _ThreadedInflater(
            _Inflater(self._limits.max_total_size, self._read_compressed),
            self._take_unreported, self._progress,
        )
        try:
            yield from self._tar(inflater, as_tuples)
        finally:
            inflater.close()
        self._digest = self._hasher.digest()

    def _tar(
        self, inflater: _ThreadedInflater, as_tuples: bool
    ) -> Iterator[Entry | tuple[str, bytes, str | None]]:
        """The tar layer (docs/format.md §2 rules 2-8). Hot path first; rare cases call helpers."""
        limits = self._limits
        max_entry_size = limits.max_entry_size
        max_entries = limits.max_entries
        max_path_length = limits.max_path_length
        fast_header = FAST_HEADER.fullmatch
        safe_path = SAFE_PATH.fullmatch
        adler32 = isal_zlib.adler32

        buf = b""  # decompressed bytes; the stream position is buf[off]
        off = 0
        count = 0  # entries yielded (meta headers not counted)
        # Set by a PAX or GNU long-name header for the one header that follows it.
        meta: _Meta | None = None

        while True:
            # 1. The next 512-byte header.
            end = off + BLOCK_SIZE
            if end <= len(buf):
                hdr = buf[off:end]
                off = end
            else:
                hdr, buf, off = _take(inflater, buf, off, BLOCK_SIZE)
                if len(hdr) < BLOCK_SIZE:
                    _raise_truncated_header(hdr, meta)

            # 2. Parse it: the fast path for the exact shape Go writes, else the slow path.
            m = fast_header(hdr)
            if m is not None:
                name, size_field, checksum_field, typeflag, prefix = m.groups()
                # Unsigned header checksum, the checksum field counted as 8 spaces (POSIX ustar).
                # Each adler32 low half is 1 + the exact byte sum: no part can reach 65521.
                checksum = (
                    (adler32(hdr[:148]) & 0xFFFF)
                    + (adler32(hdr[156:356]) & 0xFFFF)
                    + (adler32(hdr[356:]) & 0xFFFF)
                    + 253  # 8 spaces (256) less the three initial 1s
                )
                if checksum != int(checksum_field, 8):
                    _parse_header(hdr, inflater.position(buf, off))  # raises, with the details
                    raise AssertionError("fast and slow header checksums disagree")
                size = int(size_field, 8)
                if prefix:
                    name = prefix + b"/" + name
            elif hdr == ZERO_BLOCK:
                if meta is not None:
                    raise ArchiveError(
                        f"{meta.kind} header is followed by the end-of-archive marker, not by "
                        "the entry it applies to"
                    )
                _finish_tar(inflater, buf, off)
                break
            else:
                name, size, typeflag = _parse_header(hdr, inflater.position(buf, off))

            # 3. Meta headers: they apply to the next header only (Go reader.go Reader.next).
            if typeflag != TYPE_REG and (typeflag == TYPE_PAX or typeflag == TYPE_GNU_LONGNAME):
                if meta is not None:
                    raise ArchiveError(
                        f"{meta.kind} header is followed by another meta header; it must be "
                        "followed by the entry it applies to"
                    )
                if typeflag == TYPE_PAX and hdr[257:263] != MAGIC_USTAR:
                    raise ArchiveError("PAX header ('x') without the USTAR magic")
                if typeflag == TYPE_GNU_LONGNAME and hdr[257:263] != MAGIC_GNU:
                    raise ArchiveError("GNU long name header ('L') without the GNU magic")
                if size > limits.max_pax_size:
                    raise LimitExceeded(
                        f"{_META_KINDS[typeflag]} header is {size} bytes, over the limit "
                        f"max_pax_size={limits.max_pax_size}", limit="max_pax_size"
                    )
                if size > GO_MAX_SPECIAL_FILE:
                    raise ArchiveError(
                        f"{_META_KINDS[typeflag]} header is {size} bytes; Go's archive/tar "
                        f"refuses more than {GO_MAX_SPECIAL_FILE}"
                    )
                payload, buf, off = _take_entry_data(inflater, buf, off, size, None)
                if typeflag == TYPE_PAX:
                    meta = _parse_pax(payload)
                else:
                    meta = _parse_gnu_long_name(payload)
                continue
            if typeflag != TYPE_REG and typeflag in _FATAL_TYPES:
                # A sparse header names its file; 'g' and 'K' headers name no entry.
                shown = _show(name) if typeflag == TYPE_GNU_SPARSE else None
                raise ArchiveError(_FATAL_TYPES[typeflag], path=shown)

            # 4. The entry's final name and size (Go reader.go: mergePAX, then the GNU long name).
            if meta is not None:
                if meta.path is not None:
                    name = meta.path
                if meta.size is not None:
                    size = meta.size
                meta = None

            count += 1
            if count > max_entries:
                raise LimitExceeded(
                    f"more than max_entries={max_entries} entries", path=_show(name),
                    limit="max_entries",
                )
            if len(name) > max_path_length:
                raise LimitExceeded(
                    f"path is {len(name)} bytes, over the limit max_path_length={max_path_length}",
                    path=_show(name), limit="max_path_length",
                )

            # 5. Regular file with a safe path: the hot path.
            # (A legacy '\0' entry named "dir/" fails the path check: see _type_problem.)
            if (typeflag == TYPE_REG or typeflag == TYPE_REGA) and safe_path(name) is not None:
                try:
                    path = name.decode("utf-8")
                except UnicodeDecodeError:
                    path = ""
                if path:
                    if size > max_entry_size:
                        raise LimitExceeded(
                            f"entry data is {size} bytes, over the limit "
                            f"max_entry_size={max_entry_size}",
                            path=path, limit="max_entry_size",
                        )
                    end = off + size
                    padded = end + (-size & 511)  # data is padded to a whole block
                    if padded <= len(buf):
                        data = buf[off:end]
                        off = padded
                    else:
                        data, buf, off = _take_entry_data(inflater, buf, off, size, path)
                    if as_tuples:
                        yield (path, data, None)
                        continue
                    entry = _new_entry(Entry)  # Entry(path, data), faster
                    _set_path(entry, path)
                    _set_data(entry, data)
                    _set_problem(entry, None)
                    yield entry
                    continue

            # 6. Anything else is yielded with a problem and its data skipped.
            problem = _type_problem(typeflag, name) or _path_problem(name)
            assert problem is not None  # the fast check above only fails for a reason
            path = name.decode("utf-8", "backslashreplace")
            if typeflag in HEADER_ONLY_TYPES or problem == DIRECTORY_PROBLEM:
                size = 0  # Go ignores the size field of header-only types
            elif size > max_entry_size:
                raise LimitExceeded(
                    f"entry data is {size} bytes, over the limit max_entry_size={max_entry_size}",
                    path=_show(path), limit="max_entry_size",
                )
            buf, off = _skip(inflater, buf, off, size + (-size & 511), path)
            yield (path, b"", problem) if as_tuples else Entry(path, b"", problem)

        inflater.finish()

    def _read_compressed(self) -> bytes:
        """Read, hash and count the next compressed chunk (b"" at the end of the file).

        Runs on the inflater's thread; progress is reported from the caller's thread."""
        raw = self._fileobj.read(READ_SIZE)
        if raw:
            self._hasher.update(raw)
            self.archive_size += len(raw)
            self._unreported += len(raw)
        return raw or b""

    def _take_unreported(self) -> int:
        n, self._unreported = self._unreported, 0
        return n


# -- the gzip layer ---------------------------------------------------------------------------


class _Inflater:
    """Decompresses exactly one gzip member, in bounded pieces (docs/format.md §2 rule 1).

    ``isal_zlib`` with ``wbits=31`` parses the gzip header and checks the CRC-32 and ISIZE trailer.
    """

    def __init__(self, max_total_size: int, read_compressed: Callable[[], bytes]) -> None:
        self._read = read_compressed
        self.max_total_size = max_total_size
        self._d = isal_zlib.decompressobj(wbits=31)
        self._started = False
        self._file_ended = False
        self.total_out = 0  # decompressed bytes handed out so far

    def read(self) -> bytes:
        """The next non-empty piece of decompressed bytes (at most MAX_OUTPUT), or b"" at the
        end of the gzip member."""
        d = self._d
        while True:
            if d.unconsumed_tail:
                raw = d.unconsumed_tail
            elif d.eof:
                return b""
            elif self._file_ended:
                raw = b""
            else:
                raw = self._first_chunk() if not self._started else self._read()
                if not raw:
                    self._file_ended = True
            try:
                out = d.decompress(raw, MAX_OUTPUT)
            except GZIP_ERROR as e:
                raise ArchiveError(f"corrupt gzip stream: {e}") from e
            if d.eof and d.unused_data:
                raise _trailing_bytes_error(d.unused_data)
            if out:
                self.total_out += len(out)
                if self.total_out > self.max_total_size:
                    raise LimitExceeded(
                        "the decompressed tar stream is over the limit "
                        f"max_total_size={self.max_total_size}", limit="max_total_size"
                    )
                return out
            if self._file_ended and not d.eof and not d.unconsumed_tail:
                raise ArchiveError(
                    "truncated gzip stream: the file ends before the end of the gzip member"
                )

    def position(self, buf: bytes, off: int) -> int:
        """The tar stream offset of ``buf[off]`` (for error messages)."""
        return self.total_out - (len(buf) - off)

    def finish(self) -> None:
        """Once the gzip member ended: nothing may follow it in the file, which is read to EOF."""
        assert self._d.eof, "finish() before the end of the gzip member"
        if not self._file_ended:
            rest = self._read()
            if rest:
                raise _trailing_bytes_error(rest)
            self._file_ended = True

    def _first_chunk(self) -> bytes:
        """Read the first chunk and check the gzip magic and header before anything else."""
        self._started = True
        raw = self._read()
        while 0 < len(raw) < MAX_GZIP_HEADER:  # short reads, e.g. from an unbuffered stream
            more = self._read()
            if not more:
                break
            raw += more
        if raw[:2] != GZIP_MAGIC:
            if GZIP_MAGIC.startswith(raw):  # empty, or cut inside the magic: truncation
                raise ArchiveError(_not_gzip_message(raw))
            raise NotGzip(_not_gzip_message(raw))
        _check_gzip_names(raw)
        return raw


class _ThreadedInflater:
    """An ``_Inflater`` run on a second thread, a few pieces ahead of the tar layer.

    isal releases the GIL while it inflates (and BLAKE3 while it hashes the compressed chunks),
    so decompression overlaps the per-entry work of the caller's thread. Pieces, and any error,
    reach the caller in exactly the order the single-threaded ``_Inflater`` would produce them,
    so every rule and message is unchanged; ``total_out`` and ``position`` count only what the
    tar layer has taken. Read-ahead is bounded: at most ``READ_AHEAD`` pieces of ``MAX_OUTPUT``.
    """

    def __init__(
        self,
        inner: _Inflater,
        take_unreported: Callable[[], int],
        progress: Callable[[int], None] | None,
    ) -> None:
        self._inner = inner
        self._take_unreported = take_unreported
        self._progress = progress
        self.max_total_size = inner.max_total_size
        self.total_out = 0
        self._queue: queue.Queue[tuple[bytes | BaseException | None, int]] = queue.Queue(READ_AHEAD)
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="merkle-backup-inflate", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                piece = self._inner.read()
                if not self._put(piece):
                    return
                if not piece:
                    break
            self._inner.finish()  # the rest of the file must be empty
            self._put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, in order
            self._put(e)

    def _put(self, item: bytes | BaseException | None) -> bool:
        done = (item, self._take_unreported())
        while not self._stop.is_set():
            try:
                self._queue.put(done, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _get(self) -> bytes | None:
        item, read = self._queue.get()
        if read and self._progress is not None:
            self._progress(read)
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        return item

    def read(self) -> bytes:
        """As ``_Inflater.read``."""
        if self._ended:
            return b""
        piece = self._get()
        if not piece:
            self._ended = True
            return b""
        self.total_out += len(piece)
        return piece

    def position(self, buf: bytes, off: int) -> int:
        """The tar stream offset of ``buf[off]`` (for error messages)."""
        return self.total_out - (len(buf) - off)

    def finish(self) -> None:
        """As ``_Inflater.finish`` (the thread has already checked the rest of the file)."""
        assert self._ended, "finish() before the end of the gzip member"
        self._get()
        self._thread.join()

    def close(self) -> None:
        """Stop the thread (at once if the caller gave up early) and wait for it."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


def _check_gzip_names(raw: bytes) -> None:
    """Refuse a gzip FNAME or FCOMMENT over 511 bytes: Go's compress/gzip reads them into a
    512-byte buffer and fails, so Velero could not restore such a file. The rest of the header
    (and its FHCRC) is checked by isal."""
    if len(raw) < 10:
        return  # isal reports the truncation
    flags = raw[3]
    pos = 10
    if flags & FEXTRA:
        pos += 2 + int.from_bytes(raw[10:12], "little")
    for flag, what in ((FNAME, "file name"), (FCOMMENT, "comment")):
        if flags & flag:
            nul = raw.find(b"\x00", pos, pos + 512)
            if nul < 0:
                if len(raw) >= pos + 512:
                    raise ArchiveError(
                        f"the gzip header's {what} is over 511 bytes (Go's gzip reader refuses it)"
                    )
                return  # the header is cut short: isal reports the truncation
            pos = nul + 1


def _not_gzip_message(raw: bytes) -> str:
    if not raw:
        return "not a gzip stream: the file is empty"
    shown = raw[:16]
    message = f"not a gzip stream: it starts with {shown.hex(' ')} ({_ascii_preview(shown)})"
    if AWS_CHUNKED.match(raw):
        message += (
            "; this looks like an object stored with aws-chunked framing (Velero issue #9951): "
            "the upload's chunk signatures were saved as part of the object"
        )
    return message


def _trailing_bytes_error(rest: bytes) -> ArchiveError:
    if rest.startswith(GZIP_MAGIC):
        return ArchiveError("a second gzip member follows the first; Velero writes exactly one")
    return ArchiveError(
        f"trailing bytes after the gzip member: {rest[:16].hex(' ')} ({_ascii_preview(rest[:16])})"
    )


def _ascii_preview(raw: bytes) -> str:
    return repr(raw.decode("ascii", "backslashreplace"))


# -- buffer helpers (slow path: only where a read crosses a decompressed piece) ---------------


def _take(inflater: _ThreadedInflater, buf: bytes, off: int, n: int) -> tuple[bytes, bytes, int]:
    """The next ``n`` bytes (fewer only at the end of the stream), and the new buffer state."""
    first = buf[off:]
    if len(first) >= n:
        return first[:n], buf, off + n
    parts = [first]
    have = len(first)
    while have < n:
        piece = inflater.read()
        if not piece:
            break
        need = n - have
        if len(piece) >= need:
            parts.append(piece[:need])
            return b"".join(parts), piece, need
        parts.append(piece)
        have += len(piece)
    return b"".join(parts), b"", 0


def _skip(inflater: _ThreadedInflater, buf: bytes, off: int, n: int, path: str) -> tuple[bytes, int]:
    """Discard ``n`` bytes; the stream must hold them."""
    while off + n > len(buf):
        n -= len(buf) - off
        buf, off = inflater.read(), 0
        if not buf:
            raise ArchiveError(
                "truncated tar stream: an entry's data or padding is cut short", path
            )
    return buf, off + n


def _take_entry_data(
    inflater: _ThreadedInflater, buf: bytes, off: int, size: int, path: str | None
) -> tuple[bytes, bytes, int]:
    """``size`` bytes of entry data, then skip its padding to the next 512-byte boundary."""
    if inflater.position(buf, off) + size > inflater.max_total_size:
        # Refuse before gathering the data, not once max_total_size bytes have been decompressed.
        raise LimitExceeded(
            f"entry data of {size} bytes would take the tar stream over the limit "
            f"max_total_size={inflater.max_total_size}",
            path, limit="max_total_size",
        )
    data, buf, off = _take(inflater, buf, off, size)
    if len(data) < size:
        what = "this entry" if path is not None else "a meta header"
        raise ArchiveError(f"truncated tar stream: the data of {what} is cut short", path)
    buf, off = _skip(inflater, buf, off, -size & 511, path or "")
    return data, buf, off


def _raise_truncated_header(hdr: bytes, meta: _Meta | None) -> None:
    if hdr:
        raise ArchiveError("truncated tar stream: it ends inside a header")
    if meta is not None:
        raise ArchiveError(f"truncated tar stream: it ends after a {meta.kind} header")
    raise ArchiveError(
        "missing end-of-archive marker: the tar stream ends without its two zero blocks"
    )


def _finish_tar(inflater: _ThreadedInflater, buf: bytes, off: int) -> None:
    """After one zero block: a second one must follow, then only zero bytes until the end of the
    gzip member (docs/format.md §2 rule 7). Go stops at the second zero block; this
    reader reads on, so nothing can hide after it."""
    second, buf, off = _take(inflater, buf, off, BLOCK_SIZE)
    if len(second) < BLOCK_SIZE:
        raise ArchiveError(
            "missing end-of-archive marker: the tar stream ends after a single zero block"
        )
    if second != ZERO_BLOCK:
        raise ArchiveError("a zero block is followed by a non-zero block (not an end marker)")
    rest = buf[off:]
    padding = 0
    while True:
        if rest.lstrip(b"\x00"):
            raise ArchiveError("non-zero bytes after the end-of-archive marker")
        padding += len(rest)
        if padding > MAX_END_PADDING:
            # Writers pad to their record size (Go: none, tar(1): 10 KiB); gigabytes of zeros
            # would only cost the verifier CPU time.
            raise ArchiveError(
                f"more than {MAX_END_PADDING} bytes of zero padding after the end-of-archive marker"
            )
        rest = inflater.read()
        if not rest:
            return


MAX_END_PADDING = 2**20


# -- headers ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Meta:
    """What a PAX 'x' or GNU 'L' header says about the next header."""

    kind: str
    path: bytes | None = None
    size: int | None = None


_META_KINDS = {TYPE_PAX: "PAX", TYPE_GNU_LONGNAME: "GNU long name"}

_FATAL_TYPES = {
    TYPE_PAX_GLOBAL: "global PAX headers ('g') are not supported",
    TYPE_GNU_SPARSE: "sparse files ('S') are not supported",
    TYPE_GNU_LONGLINK: "GNU long link names ('K') are not supported",
}


def _parse_header(hdr: bytes, position: int) -> tuple[bytes, int, bytes]:
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
    shown = _show(name) or None
    where = f" (header at tar offset {position - BLOCK_SIZE})"

    checksum = _octal(checksum_field)
    if checksum is None:
        raise ArchiveError(f"bad header checksum field {checksum_field!r}{where}", shown)
    actual = sum(hdr[:148]) + 8 * 32 + sum(hdr[156:])
    if checksum != actual:
        raise ArchiveError(
            f"bad header checksum: the header says {checksum}, the bytes sum to {actual}{where}",
            shown,
        )

    if magic == MAGIC_USTAR:
        if version != VERSION_USTAR:
            raise ArchiveError(f"USTAR header with version {version!r}, not b'00'{where}", shown)
        if hdr[508:512] == TRAILER_STAR:
            raise ArchiveError(f"STAR headers are not supported{where}", shown)
        is_gnu = False
    elif magic == MAGIC_GNU and version == VERSION_GNU:
        is_gnu = True
    else:
        raise ArchiveError(
            f"not a USTAR or GNU header (magic {magic + version!r}; V7 and other old formats "
            f"are not supported){where}",
            shown,
        )

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


def _octal(field: bytes) -> int | None:
    """A numeric header field's value, or None if it is not plain octal (see OCTAL_FIELD)."""
    m = OCTAL_FIELD.fullmatch(field)
    if m is None:
        return None
    digits = m.group(1)
    return int(digits, 8) if digits else 0


def _parse_pax(payload: bytes) -> _Meta:
    """Parse a PAX extended header's records strictly (docs/format.md §2 rule 4).

    Grammar per record: ``"%d %s=%s\\n"`` where the length counts the whole record. Only the keys
    Velero's writer can produce are allowed; ``path`` and ``size`` apply to the next entry as in
    Go's mergePAX, and an empty value there (which Go reads as "keep the header field") is refused.
    """
    meta = _Meta("PAX")
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


def _parse_gnu_long_name(payload: bytes) -> _Meta:
    """A GNU 'L' header's data is the next entry's name, cut at the first NUL (Go parseString)."""
    name = payload.split(b"\x00", 1)[0]
    if not name:
        # Go would silently keep the header's own name; refuse the ambiguity.
        raise ArchiveError("GNU long name header ('L') with an empty name")
    return _Meta("GNU long name", path=name)


def _key(key: bytes) -> str:
    return repr(key[:60].decode("utf-8", "backslashreplace"))


# -- per-entry rules --------------------------------------------------------------------------


def _type_problem(typeflag: bytes, name: bytes) -> str | None:
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


def _path_problem(name: bytes) -> str | None:
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


def _show(name: bytes | str) -> str:
    """A path fit for an error message: decoded, and cut if very long."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "backslashreplace")
    if len(name) > SHOWN_PATH_CHARS:
        return name[:SHOWN_PATH_CHARS] + f"...({len(name)} chars)"
    return name
