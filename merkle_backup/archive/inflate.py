"""The gzip layer: exactly one gzip member, inflated in bounded pieces on a second thread.

docs/format.md §2 rule 1. ``Inflater`` is the plain, single-threaded reference;
``ThreadedInflater`` runs it a few pieces ahead of the tar layer, because isal releases the GIL
while it inflates, so decompression overlaps the caller's per-entry work (see its docstring).
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from typing import cast

from isal import igzip_lib, isal_zlib

from merkle_backup.errors import ArchiveError, LimitExceeded, NotGzip

# Compressed bytes read per ``fileobj.read`` call.
READ_SIZE = 1 << 20
# Most decompressed bytes one ``decompress`` call may return: a gzip bomb can never make one call
# allocate more than this (docs/format.md §2 rule 8, limits). The inflater thread takes the GIL
# back after every call, so larger pieces mean fewer waits for it (1 MiB pieces: seal 25% slower).
MAX_OUTPUT = 4 << 20
# Decompressed pieces the inflater thread may hold ready ahead of the tar layer (16 MiB).
READ_AHEAD = 4

GZIP_MAGIC = b"\x1f\x8b"
# gzip header flags (RFC 1952 §2.3.1), and the longest header Go's reader accepts: 10 fixed
# bytes, FEXTRA (2 + 65535), FNAME and FCOMMENT (512 each, NUL included), FHCRC (2).
FEXTRA, FNAME, FCOMMENT = 0x04, 0x08, 0x10
MAX_GZIP_HEADER = 10 + 2 + 65535 + 512 + 512 + 2

# isal's type stub declares ``error`` as an instance; it is the exception class.
GZIP_ERROR = cast("type[Exception]", isal_zlib.error)
IGZIP_ERROR = cast("type[Exception]", igzip_lib.error)

# The start of an object stored with aws-chunked framing (Velero issue #9951).
AWS_CHUNKED = re.compile(rb"[0-9a-fA-F]{1,16};chunk-signature=")

class Inflater:
    """Decompresses exactly one gzip member, in bounded pieces (docs/format.md §2 rule 1).

    isal's ``IgzipDecompressor`` (gzip flag) parses the gzip header and checks the CRC-32 and
    ISIZE trailer. It replaced ``isal_zlib.decompressobj(wbits=31)``, which re-copies its
    unconsumed input into a new ``unconsumed_tail`` on every bounded call and takes the GIL
    back several times per call: on realistic-10000 (41 MB gz, 327 MB tar), inflating in
    4 MiB pieces took 2.46-2.70 s with decompressobj and 1.58-1.67 s with IgzipDecompressor
    (/tmp-style loop over 1 MiB reads, two runs each, on this shared 2-core machine).
    """

    def __init__(self, max_total_size: int, read_compressed: Callable[[], bytes]) -> None:
        self._read = read_compressed
        self.max_total_size = max_total_size
        self._d = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
        self._started = False
        self._file_ended = False
        self.total_out = 0  # decompressed bytes handed out so far

    def read(self) -> bytes:
        """The next non-empty piece of decompressed bytes (at most MAX_OUTPUT), or b"" at the
        end of the gzip member."""
        d = self._d
        while True:
            if d.eof:
                return b""
            if d.needs_input:
                if self._file_ended:
                    raise ArchiveError(
                        "truncated gzip stream: the file ends before the end of the gzip member"
                    )
                raw = self._first_chunk() if not self._started else self._read()
                if not raw:
                    self._file_ended = True
                    continue
            else:
                raw = b""  # more output is pending from input already given
            try:
                out = d.decompress(raw, MAX_OUTPUT)
            except (IGZIP_ERROR, GZIP_ERROR, EOFError) as e:
                raise ArchiveError(f"corrupt gzip stream: {e}") from e
            if d.eof and d.unused_data:
                raise trailing_bytes_error(d.unused_data)
            if out:
                self.total_out += len(out)
                if self.total_out > self.max_total_size:
                    raise LimitExceeded(
                        "the decompressed tar stream is over the limit "
                        f"max_total_size={self.max_total_size}", limit="max_total_size"
                    )
                return out

    def position(self, buf: bytes, off: int) -> int:
        """The tar stream offset of ``buf[off]`` (for error messages)."""
        return self.total_out - (len(buf) - off)

    def finish(self) -> None:
        """Once the gzip member ended: nothing may follow it in the file, which is read to EOF."""
        assert self._d.eof, "finish() before the end of the gzip member"
        if not self._file_ended:
            rest = self._read()
            if rest:
                raise trailing_bytes_error(rest)
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
                raise ArchiveError(not_gzip_message(raw))
            raise NotGzip(not_gzip_message(raw))
        check_gzip_names(raw)
        return raw


class ThreadedInflater:
    """An ``Inflater`` run on a second thread, a few pieces ahead of the tar layer.

    isal releases the GIL while it inflates (and BLAKE3 while it hashes the compressed chunks),
    so decompression overlaps the per-entry work of the caller's thread. Pieces, and any error,
    reach the caller in exactly the order the single-threaded ``Inflater`` would produce them,
    so every rule and message is unchanged; ``total_out`` and ``position`` count only what the
    tar layer has taken. Read-ahead is bounded: at most ``READ_AHEAD`` pieces of ``MAX_OUTPUT``.
    """

    def __init__(
        self,
        inner: Inflater,
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
        except BaseException as e:
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
        """As ``Inflater.read``."""
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
        """As ``Inflater.finish`` (the thread has already checked the rest of the file)."""
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


def check_gzip_names(raw: bytes) -> None:
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


def not_gzip_message(raw: bytes) -> str:
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


def trailing_bytes_error(rest: bytes) -> ArchiveError:
    if rest.startswith(GZIP_MAGIC):
        return ArchiveError("a second gzip member follows the first; Velero writes exactly one")
    return ArchiveError(
        f"trailing bytes after the gzip member: {rest[:16].hex(' ')} ({_ascii_preview(rest[:16])})"
    )


def _ascii_preview(raw: bytes) -> str:
    return repr(raw.decode("ascii", "backslashreplace"))

