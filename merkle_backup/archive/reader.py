"""The tar layer: ArchiveReader, the one way to read a Velero tarball (docs/format.md §2).

``ArchiveReader`` yields every entry once, in stream order, as ``Entry`` objects or (for the
sealer's and verifier's hot loops) as ``(path, data, problem)`` tuples. Its loop has a fast path
for the exact header shape Go writes and hands every other header to ``headers.parse_header``;
``ArchiveReader(..., fast_path=False)`` sends every header there, which is how the tests check
that both paths agree (tests/test_archive.py::test_fast_and_slow_header_paths_agree).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import blake3
from isal import isal_zlib

from merkle_backup.archive import engine
from merkle_backup.archive.headers import (
    BLOCK_SIZE,
    DIRECTORY_PROBLEM,
    FAST_HEADER,
    FATAL_TYPES,
    GO_MAX_SPECIAL_FILE,
    HEADER_ONLY_TYPES,
    MAGIC_GNU,
    MAGIC_USTAR,
    META_KINDS,
    SAFE_PATH,
    TYPE_GNU_LONGNAME,
    TYPE_GNU_SPARSE,
    TYPE_PAX,
    TYPE_REG,
    TYPE_REGA,
    ZERO_BLOCK,
    Meta,
    parse_gnu_long_name,
    parse_header,
    parse_pax,
    path_problem,
    shown_path,
    type_problem,
)
from merkle_backup.archive.inflate import READ_SIZE, Inflater, ThreadedInflater
from merkle_backup.errors import ArchiveError, LimitExceeded

_NEVER = re.compile(rb"(?!)")  # matches nothing: with it as the fast header, every header goes slow


@dataclass(frozen=True, slots=True)
class SealSink:
    """Lets the native engine take the sealer's per-entry step itself (builder.hash_tarball):
    entries it takes are not yielded; their sortable leaves go to ``leaves``, and it accepts an
    entry only if ``decode_manifest`` (consistency's decoder; None: no manifest check) shows
    the manifest agrees with its path. On the pure path the sink is unused."""

    leaves: list[bytes]
    decode_manifest: Callable[[Any], Any] | None

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
        *,
        fast_path: bool = True,
    ) -> None:
        self._fileobj = fileobj
        self._limits = limits
        self._fast_header = (FAST_HEADER if fast_path else _NEVER).fullmatch
        self._fast_path = fast_path
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
        return cast("Iterator[Entry]", self._entries(False, None))

    def tuples(self, seal: SealSink | None = None) -> Iterator[tuple[str, bytes, str | None]]:
        """The same entries as plain ``(path, data, problem)`` tuples: for the sealer's and
        verifier's hot loops, where building an ``Entry`` per entry is a measurable share.
        With ``seal``, on the native path, entries the engine seals itself are not yielded."""
        if self._started:
            raise RuntimeError("an ArchiveReader can be iterated only once")
        self._started = True
        return self._entries(True, seal)  # type: ignore[return-value]

    # -- the tar layer ----------------------------------------------------------------------

    def _entries(
        self, as_tuples: bool, seal: SealSink | None
    ) -> Iterator[Entry | tuple[str, bytes, str | None]]:
        """The tar layer, with the gzip layer decompressing ahead on a second thread."""
        inflater = ThreadedInflater(
            Inflater(self._limits.max_total_size, self._read_compressed),
            self._take_unreported, self._progress,
        )
        try:
            yield from self._tar(inflater, as_tuples, seal)
        finally:
            inflater.close()
        self._digest = self._hasher.digest()

    def _tar(
        self, inflater: ThreadedInflater, as_tuples: bool, seal: SealSink | None
    ) -> Iterator[Entry | tuple[str, bytes, str | None]]:
        """The tar layer (docs/format.md §2 rules 2-8), in numbered steps.

        One loop on purpose: steps 1, 2, 4 and 5 run once per entry, and as separate functions
        they cost about 0.4 µs more per entry (a tenth of the sealer's whole per-entry budget).
        The rare cases, meta headers (step 3) and entries with a problem (step 6), are
        functions below; the slow header path is ``headers.parse_header``, the reference.

        Step 0, on the native path: the engine (``_engine.c``) takes the run of clean entries
        from ``buf[off]`` on, and stops before the first one it is not sure of, which steps
        1-6 then take as on the pure path.
        """
        limits = self._limits
        max_entry_size = limits.max_entry_size
        max_entries = limits.max_entries
        max_path_length = limits.max_path_length
        fast_header = self._fast_header
        safe_path = SAFE_PATH.fullmatch
        adler32 = isal_zlib.adler32

        buf = b""  # decompressed bytes; the stream position is buf[off]
        off = 0
        count = 0  # entries yielded (meta headers not counted)
        # Set by a PAX or GNU long-name header for the one header that follows it.
        meta: Meta | None = None

        native = engine.native if self._fast_path else None
        run_entries = run_seal = None
        if native is not None:
            if seal is not None:
                run_seal = native.Walker(
                    max_entries, max_path_length, max_entry_size, leaves=seal.leaves,
                    hash=blake3.blake3, decode=seal.decode_manifest,
                ).seal
            else:
                run_entries = native.Walker(max_entries, max_path_length, max_entry_size).entries

        while True:
            # 0. The native engine's run of clean entries (no meta header may be pending).
            if meta is None and off < len(buf):
                if run_seal is not None:
                    off, count = run_seal(buf, off, count)
                elif run_entries is not None:
                    done, off, count = run_entries(buf, off, count)
                    if done:
                        if as_tuples:
                            yield from done
                        else:
                            for path, data, _ in done:
                                entry = _new_entry(Entry)
                                _set_path(entry, path)
                                _set_data(entry, data)
                                _set_problem(entry, None)
                                yield entry

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
                    parse_header(hdr, inflater.position(buf, off))  # raises, with the details
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
                name, size, typeflag = parse_header(hdr, inflater.position(buf, off))

            # 3. Meta headers: they apply to the next header only (Go reader.go Reader.next).
            if typeflag != TYPE_REG and typeflag in (TYPE_PAX, TYPE_GNU_LONGNAME):
                meta, buf, off = _read_meta(inflater, buf, off, hdr, typeflag, size, meta, limits)
                continue
            if typeflag != TYPE_REG and typeflag in FATAL_TYPES:
                # A sparse header names its file; 'g' and 'K' headers name no entry.
                shown = shown_path(name) if typeflag == TYPE_GNU_SPARSE else None
                raise ArchiveError(FATAL_TYPES[typeflag], path=shown)

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
                    f"more than max_entries={max_entries} entries", path=shown_path(name),
                    limit="max_entries",
                )
            if len(name) > max_path_length:
                raise LimitExceeded(
                    f"path is {len(name)} bytes, over the limit max_path_length={max_path_length}",
                    path=shown_path(name), limit="max_path_length",
                )

            # 5. Regular file with a safe path: the hot path.
            # (A legacy '\0' entry named "dir/" fails the path check: see type_problem.)
            if typeflag in (TYPE_REG, TYPE_REGA) and safe_path(name) is not None:
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
            path, problem, buf, off = _problem_entry(inflater, buf, off, name, size, typeflag,
                                                     max_entry_size)
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



# -- the rare steps ----------------------------------------------------------------------------


def _read_meta(inflater: ThreadedInflater, buf: bytes, off: int, hdr: bytes, typeflag: bytes,
               size: int, meta: Meta | None, limits: Limits) -> tuple[Meta, bytes, int]:
    """Step 3: a PAX 'x' or GNU 'L' header, whose records apply to the next header only."""
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
            f"{META_KINDS[typeflag]} header is {size} bytes, over the limit "
            f"max_pax_size={limits.max_pax_size}", limit="max_pax_size"
        )
    if size > GO_MAX_SPECIAL_FILE:
        raise ArchiveError(
            f"{META_KINDS[typeflag]} header is {size} bytes; Go's archive/tar "
            f"refuses more than {GO_MAX_SPECIAL_FILE}"
        )
    payload, buf, off = _take_entry_data(inflater, buf, off, size, None)
    meta = parse_pax(payload) if typeflag == TYPE_PAX else parse_gnu_long_name(payload)
    return meta, buf, off


def _problem_entry(inflater: ThreadedInflater, buf: bytes, off: int, name: bytes, size: int,
                   typeflag: bytes, max_entry_size: int) -> tuple[str, str, bytes, int]:
    """Step 6: an entry that is not a regular file with a safe path: (path, problem), its data
    skipped (Go ignores the size field of header-only types)."""
    problem = type_problem(typeflag, name) or path_problem(name)
    assert problem is not None  # the fast check of step 5 only fails for a reason
    path = name.decode("utf-8", "backslashreplace")
    if typeflag in HEADER_ONLY_TYPES or problem == DIRECTORY_PROBLEM:
        size = 0
    elif size > max_entry_size:
        raise LimitExceeded(
            f"entry data is {size} bytes, over the limit max_entry_size={max_entry_size}",
            path=shown_path(path), limit="max_entry_size",
        )
    buf, off = _skip(inflater, buf, off, size + (-size & 511), path)
    return path, problem, buf, off


# -- buffer helpers (slow path: only where a read crosses a decompressed piece) ---------------


def _take(inflater: ThreadedInflater, buf: bytes, off: int, n: int) -> tuple[bytes, bytes, int]:
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


def _skip(inflater: ThreadedInflater, buf: bytes, off: int, n: int, path: str) -> tuple[bytes, int]:
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
    inflater: ThreadedInflater, buf: bytes, off: int, size: int, path: str | None
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


def _raise_truncated_header(hdr: bytes, meta: Meta | None) -> None:
    if hdr:
        raise ArchiveError("truncated tar stream: it ends inside a header")
    if meta is not None:
        raise ArchiveError(f"truncated tar stream: it ends after a {meta.kind} header")
    raise ArchiveError(
        "missing end-of-archive marker: the tar stream ends without its two zero blocks"
    )


def _finish_tar(inflater: ThreadedInflater, buf: bytes, off: int) -> None:
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
