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

Layout: ``reader`` (the tar layer and the one iteration API), ``headers`` (header, PAX and GNU
parsing and the per-entry rules: the reference for every rule), ``inflate`` (the gzip layer),
``engine`` (which per-entry engine runs: ``_engine.c``, a native fast path over the reader's
clean entries, or the pure path alone; ``ENGINE`` is "native" or "pure").
"""

from merkle_backup.archive.engine import ENGINE
from merkle_backup.archive.headers import path_problem
from merkle_backup.archive.reader import ArchiveReader, Entry, Limits

__all__ = ["ENGINE", "ArchiveReader", "Entry", "Limits", "path_problem"]
