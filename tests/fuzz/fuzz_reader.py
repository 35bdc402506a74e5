"""atheris harness: the strict tar.gz reader (merkle_backup/archive/, docs/format.md §2).

The first input byte picks the layer: bit 0 clear, the rest is the compressed file as stored;
set, the rest is a tar stream that the harness gzips first, so mutations reach the header, PAX
and GNU parsers. With bit 1 also set, every 512-byte block with a "ustar" magic gets its header
checksum recomputed first, so mutated headers get past the checksum to the field parsers.
Properties: the reader raises only ArchiveError (LimitExceeded included); every entry it
yields without a problem has a safe relative path and at most max_entry_size bytes. Where the
native engine is built (merkle_backup/archive/_engine.c) every input runs on it and on the pure
path, and both must give the same entries or the same error (class, message, path); with
MERKLE_BACKUP_PURE=1 only the pure path runs. The C code is not coverage-instrumented (atheris
instruments Python): the differential and tests/test_engine.py's AddressSanitizer run cover it.

    python tests/fuzz/fuzz_reader.py -workers=1 -max_total_time=300 /tmp/corpus-reader
"""

from __future__ import annotations

import io
import sys

import _common  # first: puts the repository root on sys.path
import atheris

from tests import tarcraft as tc

with atheris.instrument_imports(include=["merkle_backup"]):
    from merkle_backup.archive import ArchiveReader, Limits, engine, path_problem
    from merkle_backup.errors import ArchiveError

NATIVE = engine.native
print(f"fuzz_reader: engine {engine.ENGINE}", file=sys.stderr)

LIMITS = Limits(max_entry_size=1 << 20, max_entries=2000, max_total_size=8 << 20,
                max_path_length=1024, max_pax_size=1 << 16)


def read(blob: bytes) -> object:
    entries = []
    try:
        for entry in ArchiveReader(io.BytesIO(blob), LIMITS):
            if entry.problem is None:
                raw = entry.path.encode()
                assert path_problem(raw) is None, entry.path
                assert len(raw) <= LIMITS.max_path_length
                assert len(entry.data) <= LIMITS.max_entry_size
            else:
                assert entry.data == b""
            entries.append((entry.path, entry.data, entry.problem))
    except ArchiveError as e:
        return (type(e).__name__, str(e), e.path)
    return entries


def check(blob: bytes) -> None:
    first = read(blob)
    if NATIVE is not None:  # the same input on the pure path: the engine must agree
        engine.native = None
        try:
            assert read(blob) == first, "the native engine and the pure path disagree"
        finally:
            engine.native = NATIVE


def fix_checksums(tar: bytes) -> bytes:
    blocks = bytearray(tar)
    for start in range(0, len(blocks) - 511, 512):
        if blocks[start + 257 : start + 262] == b"ustar":
            blocks[start + 148 : start + 156] = b"%06o\x00 " % (
                tc.checksum(bytes(blocks[start : start + 512])) & 0o777777
            )
    return bytes(blocks)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        check(tc.gzip_member(fix_checksums(body) if data[0] & 2 else body))
    else:
        check(body)


def seeds() -> dict[str, bytes]:
    return {
        "targz": b"\x00" + _common.TARGZ,
        "tar": b"\x01" + _common.TAR,
        "tar-fixed": b"\x03" + _common.TAR,
        "gnu": b"\x01" + tc.tar(tc.gnu_long_name("resources/cm/namespaces/ns/" + "c" * 100),
                                tc.entry("c", b"[1,2,3]", magic=tc.GNU)),
        "types": b"\x01" + tc.tar(tc.header("dir/", typeflag=b"5"),
                                  tc.header("l", typeflag=b"2", linkname=b"/etc"),
                                  tc.entry("a.json", b"x", typeflag=b"\x00")),
        "pax-size": b"\x01" + tc.tar(tc.pax_header([("size", "700"), ("mtime", "1.5")]),
                                     tc.entry("a.json", b"z" * 700, size=3)),
    }


if __name__ == "__main__":
    _common.write_seeds(sys.argv, seeds())
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
