"""Tests of the strict streaming tar.gz reader (docs/format.md §2, the archive reader).

The rejected constructions are the "malformed archives" attack of docs/threat-model.md T14.

* Go-written archives (fixtures, velerogen) read the same as Python's tarfile reads them.
* Every rejected construction, built byte-exactly with tests/tarcraft.py, raises the right error.
* Per-entry problems are reported and reading goes on; accepted oddities give Go's name and bytes.
* Bombs stop early with bounded memory; random mutations only ever raise ArchiveError.
* Differential: whenever this reader accepts an archive, Go's archive/tar (what Velero's restore
  uses) reads the same names and bytes (needs `go`; skipped without it).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from isal import isal_zlib

from merkle_backup.archive import ArchiveReader, Entry, Limits, headers, inflate
from merkle_backup.errors import ArchiveError, LimitExceeded, NotGzip
from tests import tarcraft as tc
from tests.attacks import golist
from tests.attacks.golist import GoListing, build_tarlist, parse_lines
from tests.conftest import short_id

FIXTURES = Path(__file__).parent / "fixtures" / "bucket" / "backups"
FIXTURE_TARBALLS = [
    FIXTURES / "demo-small" / "demo-small.tar.gz",
    FIXTURES / "demo-v153" / "demo-v153.tar.gz",
]
VELEROGEN_SRC = Path(__file__).parent / "tools" / "velerogen"


def read_all(blob: bytes, limits: Limits | None = None, *, fast_path: bool = True) -> list[Entry]:
    return list(ArchiveReader(io.BytesIO(blob), limits or Limits(), fast_path=fast_path))


def read_pairs(blob: bytes) -> list[tuple[str, bytes]]:
    return [(e.path, e.data) for e in read_all(blob)]


def tarfile_pairs(blob: bytes) -> list[tuple[str, bytes]]:
    """The second, independent reader: Python's tarfile."""
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tf:
        out = []
        for member in tf:
            f = tf.extractfile(member)
            assert f is not None
            out.append((member.name, f.read()))
        return out


def expect_error(
    blob: bytes, kind: type[ArchiveError], *fragments: str, **kw: object
) -> ArchiveError:
    with pytest.raises(ArchiveError) as info:
        read_all(blob, **kw)  # type: ignore[arg-type]
    assert type(info.value) is kind, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return info.value


GOOD = tc.entry("resources/pods/namespaces/ns/p.json", b'{"kind":"Pod"}')
GOOD_PAIR = ("resources/pods/namespaces/ns/p.json", b'{"kind":"Pod"}')


# -- Go helpers ---------------------------------------------------------------------------------

def _go_build(src_dir: Path, out: Path) -> None:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOPROXY="off")
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=src_dir, env=env, check=True)


@pytest.fixture(scope="session")
def go_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tools directory with `velerogen` and `tarlist` (tests/tools/tarlist: Go's own gzip +
    archive/tar, read as Velero's restore reads), built once per session."""
    if shutil.which("go") is None:
        pytest.skip("go is not installed")
    root = tmp_path_factory.mktemp("gobin")
    _go_build(VELEROGEN_SRC, root / "velerogen")
    assert build_tarlist(root) == root / "tarlist"
    return root


def velerogen(go_bin: Path, tmp_path: Path, items: list[tuple[str, bytes]]) -> bytes:
    lines = "".join(
        json.dumps({"path": p, "raw_b64": base64.b64encode(d).decode()}) + "\n" for p, d in items
    )
    out = tmp_path / "backup.tar.gz"
    subprocess.run(
        [str(go_bin / "velerogen"), "-o", str(out)],
        input=lines.encode(),
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def go_list(go_bin: Path, tmp_path: Path, blob: bytes) -> GoListing:
    path = tmp_path / "in.tar.gz"
    path.write_bytes(blob)
    out = subprocess.run(
        [str(go_bin / "tarlist"), str(path)], capture_output=True, check=True, text=True
    ).stdout
    return parse_lines(out.splitlines())


def assert_go_agrees(go_bin: Path, tmp_path: Path, blob: bytes, entries: list[Entry]) -> None:
    """This reader accepted ``blob``: Go must read it without error, with the same entries."""
    golist.assert_go_agrees(go_list(go_bin, tmp_path, blob), entries)


# -- Go-written archives --------------------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURE_TARBALLS, ids=lambda p: p.name)
def test_fixtures_read_as_tarfile_reads_them(path: Path) -> None:
    blob = path.read_bytes()
    seen: list[int] = []
    with path.open("rb") as f:
        reader = ArchiveReader(f, progress=seen.append)
        entries = list(reader)
    assert [(e.path, e.data) for e in entries] == tarfile_pairs(blob)
    assert all(e.problem is None for e in entries)
    assert reader.archive_digest == blake3.blake3(blob).digest()
    assert reader.archive_size == len(blob) == sum(seen)


def test_demo_small_has_its_pax_names() -> None:
    entries = read_all(FIXTURE_TARBALLS[0].read_bytes())
    assert len(entries) == 322
    assert sum(len(e.path.encode()) > 100 for e in entries) >= 3


@pytest.mark.parametrize("path", FIXTURE_TARBALLS, ids=lambda p: p.name)
def test_slow_header_path_reads_the_same(path: Path) -> None:
    """The fast path is only an optimisation: with it off every header goes the slow way."""
    blob = path.read_bytes()
    assert read_all(blob, fast_path=False) == read_all(blob)


def test_velerogen_long_and_split_names(go_bin: Path, tmp_path: Path) -> None:
    """Names Go writes with the USTAR prefix split, with PAX, and data crossing buffer pieces."""
    split = (
        "resources/customresourcedefinitions.apiextensions.k8s.io/v1-preferredversion/cluster/"
        "prometheusagents.monitoring.coreos.com.json"
    )  # > 100 bytes, last part < 100: prefix
    pax = "resources/services/namespaces/monitoring/" + "x" * 120 + ".json"  # last part > 100
    exact = "r/" + "y" * 98  # exactly 100 bytes: the name field has no NUL
    unicode = "resources/configmaps/namespaces/ns/caf\u00e9.json"  # non-ASCII: Go uses PAX
    items = [
        (split, b'{"a":1}'),
        (pax, b"z" * 513),
        (exact, b"{}"),  # (velerogen cannot write empty raw data)
        (unicode, b"\x00" * 511),
        ("big.json", os.urandom(3 * inflate.MAX_OUTPUT + 7)),
        ("after-big.json", b"{}"),
    ]
    blob = velerogen(go_bin, tmp_path, items)
    entries = read_all(blob)
    assert [(e.path, e.data) for e in entries] == items == tarfile_pairs(blob)

    raw = isal_zlib.decompress(blob, wbits=31)
    first = raw[:512]
    assert first[345:500].rstrip(b"\x00"), "velerogen did not use the USTAR prefix field"
    assert b"PaxHeaders" in raw and b"\x00x" not in first
    assert_go_agrees(go_bin, tmp_path, blob, entries)


# -- gzip layer -----------------------------------------------------------------------------------

PLAIN = tc.tar(GOOD)
GZ = tc.gzip_member(PLAIN)


def _with_trailer(blob: bytes, crc_delta: int = 0, size_delta: int = 0) -> bytes:
    crc = (int.from_bytes(blob[-8:-4], "little") + crc_delta) & 0xFFFFFFFF
    size = (int.from_bytes(blob[-4:], "little") + size_delta) & 0xFFFFFFFF
    return blob[:-8] + crc.to_bytes(4, "little") + size.to_bytes(4, "little")


def _gzip_with_header(flags: int, extra: bytes) -> bytes:
    """GZ with its header's FLG byte set and the optional fields ``extra`` inserted."""
    return GZ[:3] + bytes([flags]) + GZ[4:10] + extra + GZ[10:]


GZIP_REJECTIONS = {
    "plain tar, not gzip": (PLAIN, ["not a gzip stream", PLAIN[:4].hex(" ")]),
    "aws-chunked framing": (
        b"4000;chunk-signature=" + b"ab" * 32 + b"\r\n" + GZ,
        ["not a gzip stream", "aws-chunked", "#9951"],
    ),
    "empty file": (b"", ["not a gzip stream", "empty"]),
    "bad CRC-32": (_with_trailer(GZ, crc_delta=1), ["corrupt gzip stream"]),
    "bad ISIZE": (_with_trailer(GZ, size_delta=1), ["corrupt gzip stream"]),
    "truncated trailer": (GZ[:-3], ["truncated gzip stream"]),
    "truncated deflate data": (GZ[: len(GZ) // 2], ["truncated gzip stream"]),
    "only the gzip header": (GZ[:10], ["truncated gzip stream"]),
    "second gzip member": (GZ + GZ, ["second gzip member"]),
    "second empty member": (GZ + tc.gzip_member(b""), ["second gzip member"]),
    "trailing garbage": (GZ + b"garbage", ["trailing bytes after the gzip member", "67 61"]),
    "trailing NUL byte": (GZ + b"\x00", ["trailing bytes after the gzip member"]),
    "gzip file name over 511 bytes (Go refuses it)": (
        _gzip_with_header(0x08, b"n" * 512 + b"\x00"),
        ["file name is over 511 bytes"],
    ),
    "gzip comment over 511 bytes (Go refuses it)": (
        _gzip_with_header(0x18, b"name\x00" + b"c" * 600 + b"\x00"),
        ["comment is over 511"],
    ),
    "gzip header CRC wrong": (_gzip_with_header(0x02, b"\x00\x00"), ["corrupt gzip stream"]),
    "gzip method not deflate": (b"\x1f\x8b\x07" + GZ[3:], ["corrupt gzip stream"]),
    "trailing bytes after a full read chunk": (
        tc.gzip_member(tc.tar(GOOD, tc.entry("r.bin", os.urandom(inflate.READ_SIZE))))
        + b"\x00" * 10,
        ["trailing bytes"],
    ),
}


@pytest.mark.parametrize("case", GZIP_REJECTIONS, ids=str)
def test_gzip_rejections(case: str) -> None:
    blob, fragments = GZIP_REJECTIONS[case]
    # Not gzip at all is its own class: the verifier cannot compare anything (exit 3).
    not_gzip = any("not a gzip stream" in f for f in fragments) and not b"\x1f\x8b".startswith(blob)
    expect_error(blob, NotGzip if not_gzip else ArchiveError, *fragments)


def _header_crc(flags: int) -> bytes:
    return (zlib.crc32(GZ[:3] + bytes([flags]) + GZ[4:10]) & 0xFFFF).to_bytes(2, "little")


GZIP_ACCEPTED = {
    "as Go writes it": GZ,
    "file name (gzip(1) writes one)": _gzip_with_header(0x08, b"backup.tar\x00"),
    "511-byte file name": _gzip_with_header(0x08, b"n" * 511 + b"\x00"),
    "extra field, comment": _gzip_with_header(0x14, b"\x04\x00abcd" + b"c" * 511 + b"\x00"),
    "header CRC": _gzip_with_header(0x02, _header_crc(0x02)),
    "reserved flag bit (ignored by Go too)": _gzip_with_header(0x20, b""),
}


@pytest.mark.parametrize("case", GZIP_ACCEPTED, ids=str)
def test_valid_gzip_reads(case: str) -> None:
    assert read_pairs(GZIP_ACCEPTED[case]) == [GOOD_PAIR]


def test_go_agrees_on_gzip_headers(go_bin: Path, tmp_path: Path) -> None:
    for blob in GZIP_ACCEPTED.values():
        assert_go_agrees(go_bin, tmp_path, blob, read_all(blob))
    for case in ("gzip file name over 511 bytes (Go refuses it)", "gzip header CRC wrong"):
        assert go_list(go_bin, tmp_path, GZIP_REJECTIONS[case][0]).err


def test_short_reads_are_fine() -> None:
    """A stream returning a few bytes per read (e.g. unbuffered) reads the same."""

    class Dribble(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self._data.read(min(n, 1) if n >= 0 else 1)

    reader = ArchiveReader(Dribble(GZ))  # type: ignore[arg-type]
    assert [(e.path, e.data) for e in reader] == [GOOD_PAIR]
    assert reader.archive_size == len(GZ)
    assert reader.archive_digest == blake3.blake3(GZ).digest()


# -- tar layer: fatal -----------------------------------------------------------------------------

NAME = "resources/pods/namespaces/ns/p.json"


def _gnu_time_fields(atime: bytes) -> dict[str, bytes]:
    return {"prefix": atime.ljust(155, b"\x00")}


TAR_REJECTIONS: dict[str, tuple[bytes, type[ArchiveError], list[str], str | None]] = {
    # (tar bytes, error type, message fragments, path named by the error)
    "V7 header (no magic)": (
        tc.tar(tc.entry(NAME, b"x", magic=bytes(8))),
        ArchiveError,
        ["not a USTAR or GNU"],
        NAME,
    ),
    "unknown magic": (
        tc.tar(tc.entry(NAME, b"x", magic=b"ustar\x0001")),
        ArchiveError,
        ["version"],
        NAME,
    ),
    "STAR trailer": (
        tc.tar(tc.entry(NAME, fields={"pad": bytes(8) + b"tar\x00"})),
        ArchiveError,
        ["STAR"],
        NAME,
    ),
    "bad checksum": (
        tc.tar(tc.entry(NAME, b"x", chksum=1234)),
        ArchiveError,
        ["bad header checksum"],
        NAME,
    ),
    "checksum off by 65521": (  # the fast path's adler32 sums must be exact, not modular
        tc.tar(tc.entry(NAME, b"x", chksum=tc.checksum(tc.header(NAME, size=1)) + 65521)),
        ArchiveError,
        ["bad header checksum"],
        NAME,
    ),
    "signed checksum": (  # Go accepts a signed sum as well; this reader only the unsigned one
        tc.tar(
            tc.entry(
                NAME,
                b"x",
                fields={"uname": b"\xff" * 32},
                chksum=tc.checksum(tc.header(NAME, size=1, fields={"uname": b"\xff" * 32}))
                - 2 * 32 * 128,
            )
        ),
        ArchiveError,
        ["bad header checksum"],
        NAME,
    ),
    "non-octal checksum field": (
        tc.tar(tc.entry(NAME, chksum=b"01x345\x00 ")),
        ArchiveError,
        ["checksum field"],
        NAME,
    ),
    "non-octal size": (
        tc.tar(tc.entry(NAME, fields={"size": b"0000000001x\x00"})),
        ArchiveError,
        ["bad size field"],
        NAME,
    ),
    "size with a space inside": (
        tc.tar(tc.entry(NAME, fields={"size": b"00000 00001\x00"})),
        ArchiveError,
        ["bad size field"],
        NAME,
    ),
    "base-256 size": (
        tc.tar(tc.entry(NAME, fields={"size": b"\x80" + bytes(10) + b"\x01"})),
        ArchiveError,
        ["base-256 size"],
        NAME,
    ),
    "non-octal mode": (
        tc.tar(tc.entry(NAME, fields={"mode": b"00007x5\x00"})),
        ArchiveError,
        ["bad mode"],
        NAME,
    ),
    "non-octal uid": (
        tc.tar(tc.entry(NAME, fields={"uid": b"-000001\x00"})),
        ArchiveError,
        ["bad uid"],
        NAME,
    ),
    "non-octal mtime": (
        tc.tar(tc.entry(NAME, fields={"mtime": b"9" * 11 + b"\x00"})),
        ArchiveError,
        ["bad mtime"],
        NAME,
    ),
    "non-octal devmajor": (
        tc.tar(tc.entry(NAME, fields={"devmajor": b"abcdefg\x00"})),
        ArchiveError,
        ["bad devmajor"],
        NAME,
    ),
    "GNU header, unparsable atime": (  # Go would then read those bytes as a USTAR prefix
        tc.tar(tc.gnu_header(NAME, fields=_gnu_time_fields(b"evil/dir"))),
        ArchiveError,
        ["bad atime"],
        NAME,
    ),
    "GNU header, unparsable ctime": (
        tc.tar(tc.gnu_header(NAME, fields=_gnu_time_fields(bytes(12) + b"xx"))),
        ArchiveError,
        ["bad ctime"],
        NAME,
    ),
    "global PAX header": (
        tc.tar(tc.pax_header([("path", "a")], typeflag=b"g"), GOOD),
        ArchiveError,
        ["global PAX"],
        None,
    ),
    "GNU sparse 'S'": (
        tc.tar(tc.gnu_header(NAME, typeflag=b"S")),
        ArchiveError,
        ["sparse"],
        NAME,
    ),
    "PAX GNU.sparse record": (
        tc.tar(tc.pax_header([("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0")]), GOOD),
        ArchiveError,
        ["sparse", "GNU.sparse.major"],
        None,
    ),
    "PAX GNU.sparse.map record": (
        tc.tar(tc.pax_header([("GNU.sparse.map", "0,1")]), GOOD),
        ArchiveError,
        ["sparse"],
        None,
    ),
    "GNU long link 'K'": (
        tc.tar(tc.gnu_long_name("target", typeflag=b"K"), GOOD),
        ArchiveError,
        ["long link"],
        None,
    ),
    "PAX linkpath": (
        tc.tar(tc.pax_header([("linkpath", "x")]), GOOD),
        ArchiveError,
        ["'linkpath' is not supported"],
        None,
    ),
    "PAX hdrcharset": (
        tc.tar(tc.pax_header([("hdrcharset", "BINARY")]), GOOD),
        ArchiveError,
        ["'hdrcharset'"],
        None,
    ),
    "PAX SCHILY.xattr": (
        tc.tar(tc.pax_header([("SCHILY.xattr.user.a", "b")]), GOOD),
        ArchiveError,
        ["SCHILY.xattr.user.a"],
        None,
    ),
    "PAX comment": (
        tc.tar(tc.pax_header([("comment", "hi")]), GOOD),
        ArchiveError,
        ["'comment'"],
        None,
    ),
    "PAX record length too long": (
        tc.tar(tc.pax_header(b"30 path=abc\n"), GOOD),
        ArchiveError,
        ["length"],
        None,
    ),
    "PAX record length too short": (
        tc.tar(tc.pax_header(b"11 path=abc\n"), GOOD),
        ArchiveError,
        ["length"],
        None,
    ),
    "PAX record length with leading zero": (
        tc.tar(tc.pax_header(b"012 path=abc\n"), GOOD),
        ArchiveError,
        ["leading zero"],
        None,
    ),
    "PAX record length with sign": (
        tc.tar(tc.pax_header(b"+13 path=abc\n"), GOOD),
        ArchiveError,
        ["bad PAX record"],
        None,
    ),
    "PAX record without length": (
        tc.tar(tc.pax_header(b"path=abc\n"), GOOD),
        ArchiveError,
        ["bad PAX record"],
        None,
    ),
    "PAX record without newline": (
        tc.tar(tc.pax_header(b"12 path=abcX"), GOOD),
        ArchiveError,
        ["length"],
        None,
    ),
    "PAX record without '='": (
        tc.tar(tc.pax_header(b"9 pathab\n"), GOOD),
        ArchiveError,
        ["'key='"],
        None,
    ),
    "PAX record with empty key": (
        tc.tar(tc.pax_header(b"8 =abcd\n"), GOOD),
        ArchiveError,
        ["'key='"],
        None,
    ),
    "PAX record with NUL in key": (
        tc.tar(tc.pax_header(tc.pax_record(b"pa\x00th", "a")), GOOD),
        ArchiveError,
        ["NUL byte in the key"],
        None,
    ),
    "PAX record twice": (
        tc.tar(tc.pax_header([("path", "a"), ("path", "b")]), GOOD),
        ArchiveError,
        ["appears twice"],
        None,
    ),
    "PAX path with NUL": (  # Go's validPAXRecord refuses it too
        tc.tar(tc.pax_header([("path", "a\x00b")]), GOOD),
        ArchiveError,
        ["NUL"],
        None,
    ),
    "PAX empty path": (
        tc.tar(tc.pax_header([("path", "")]), GOOD),
        ArchiveError,
        ["'path' is empty"],
        None,
    ),
    "PAX negative size": (
        tc.tar(tc.pax_header([("size", "-1")]), GOOD),
        ArchiveError,
        ["'size'"],
        None,
    ),
    "PAX size with plus sign": (
        tc.tar(tc.pax_header([("size", "+1")]), GOOD),
        ArchiveError,
        ["'size'"],
        None,
    ),
    "PAX size not decimal": (
        tc.tar(tc.pax_header([("size", "0x10")]), GOOD),
        ArchiveError,
        ["'size'"],
        None,
    ),
    "PAX size over int64 (Go refuses it, even for a symlink)": (
        tc.tar(tc.pax_header([("size", "9" * 19)]), tc.header("l", typeflag=b"2"), GOOD),
        ArchiveError,
        ["'size'"],
        None,
    ),
    "PAX empty size": (
        tc.tar(tc.pax_header([("size", "")]), GOOD),
        ArchiveError,
        ["'size'"],
        None,
    ),
    "PAX bad mtime": (
        tc.tar(tc.pax_header([("mtime", "yesterday")]), GOOD),
        ArchiveError,
        ["'mtime'"],
        None,
    ),
    "PAX bad uid": (
        tc.tar(tc.pax_header([("uid", "1.5")]), GOOD),
        ArchiveError,
        ["'uid'"],
        None,
    ),
    "PAX uname with NUL": (
        tc.tar(tc.pax_header([("uname", "ro\x00ot")]), GOOD),
        ArchiveError,
        ["'uname'"],
        None,
    ),
    "PAX header with GNU magic": (
        tc.tar(tc.pax_header([("path", "a")], magic=tc.GNU), GOOD),
        ArchiveError,
        ["USTAR magic"],
        None,
    ),
    "GNU long name with USTAR magic": (
        tc.tar(tc.header("././@LongLink", size=2, typeflag=b"L") + tc.pad(b"a\x00"), GOOD),
        ArchiveError,
        ["GNU magic"],
        None,
    ),
    "GNU long name empty": (
        tc.tar(tc.gnu_long_name(""), GOOD),
        ArchiveError,
        ["empty name"],
        None,
    ),
    "PAX after PAX": (
        tc.tar(tc.pax_header([("path", "a")]), tc.pax_header([("path", "b")]), GOOD),
        ArchiveError,
        ["another meta header"],
        None,
    ),
    "GNU long name after GNU long name": (
        tc.tar(tc.gnu_long_name("a"), tc.gnu_long_name("b"), GOOD),
        ArchiveError,
        ["another meta header"],
        None,
    ),
    "GNU long name after PAX": (
        tc.tar(tc.pax_header([("path", "a")]), tc.gnu_long_name("b"), GOOD),
        ArchiveError,
        ["another meta header"],
        None,
    ),
    "PAX after GNU long name": (
        tc.tar(tc.gnu_long_name("b"), tc.pax_header([("path", "a")]), GOOD),
        ArchiveError,
        ["another meta header"],
        None,
    ),
    "PAX before the end marker": (
        tc.tar(GOOD, tc.pax_header([("path", "a")])),
        ArchiveError,
        ["end-of-archive"],
        None,
    ),
    "PAX at the end of the stream": (
        tc.tar(GOOD, tc.pax_header([("path", "a")]), end=False),
        ArchiveError,
        ["ends after a PAX header"],
        None,
    ),
    "no end-of-archive marker": (
        tc.tar(GOOD, end=False),
        ArchiveError,
        ["missing end-of-archive"],
        None,
    ),
    "empty tar stream": (b"", ArchiveError, ["missing end-of-archive"], None),
    "a single zero block": (
        GOOD + tc.ZERO_BLOCK,
        ArchiveError,
        ["single zero block"],
        None,
    ),
    "zero block then a header": (
        GOOD + tc.ZERO_BLOCK + GOOD + tc.end_of_archive(),
        ArchiveError,
        ["followed by a non-zero block"],
        None,
    ),
    "non-zero byte after the end marker": (
        GOOD + tc.end_of_archive() + bytes(5000) + b"\x01" + bytes(5000),
        ArchiveError,
        ["non-zero bytes after the end-of-archive"],
        None,
    ),
    "a header after the end marker": (
        GOOD + tc.end_of_archive() + GOOD,
        ArchiveError,
        ["after the end-of-archive"],
        None,
    ),
    "truncated header": (GOOD + tc.header(NAME)[:300], ArchiveError, ["inside a header"], None),
    "truncated data": (
        tc.header(NAME, size=1000) + b"x" * 999,
        ArchiveError,
        ["cut short"],
        NAME,
    ),
    "truncated padding": (
        tc.header(NAME, size=1000) + b"x" * 1000,
        ArchiveError,
        ["cut short"],
        NAME,
    ),
    "truncated PAX data": (
        tc.pax_header([("path", "a" * 600)])[:1000],
        ArchiveError,
        ["cut short"],
        None,
    ),
    "truncated data of a skipped entry": (
        tc.header("dir/x", size=1000, typeflag=b"7") + b"x" * 600,
        ArchiveError,
        ["cut short"],
        "dir/x",
    ),
}


@pytest.mark.parametrize("case", TAR_REJECTIONS, ids=str)
def test_tar_rejections(case: str) -> None:
    blob, kind, fragments, path = TAR_REJECTIONS[case]
    error = expect_error(tc.gzip_member(blob), kind, *fragments)
    assert error.path == path


# Limits: raised before the oversized data is read.
SMALL = Limits(
    max_entry_size=1000,
    max_entries=3,
    max_total_size=20_000,
    max_path_length=50,
    max_pax_size=700,
)
LIMIT_CASES: dict[str, tuple[bytes, str, str | None]] = {
    "entry size": (tc.tar(tc.entry("a.json", b"x" * 1001)), "max_entry_size=1000", "a.json"),
    "entry size of a skipped entry": (
        tc.tar(tc.entry("a.json", b"x" * 1001, typeflag=b"7")),
        "max_entry_size=1000",
        "a.json",
    ),
    "entry size from PAX": (
        tc.tar(tc.pax_header([("size", "1001")]), tc.entry("a.json", b"x" * 1001, size=0)),
        "max_entry_size=1000",
        "a.json",
    ),
    "entry count": (tc.tar(*[tc.entry(f"{i}.json") for i in range(4)]), "max_entries=3", "3.json"),
    "entry count of problem entries": (
        tc.tar(*[tc.entry(f"d{i}/", typeflag=b"5") for i in range(4)]),
        "max_entries=3",
        "d3/",
    ),
    "total size": (
        tc.tar(*[tc.entry(f"{i}.json", b"x" * 900) for i in range(3)]) + bytes(20_000),
        "max_total_size=20000",
        None,
    ),
    "path length": (tc.tar(tc.entry("a" * 51)), "max_path_length=50", "a" * 51),
    "path length from PAX": (
        tc.tar(tc.pax_header([("path", "b" * 51)]), GOOD),
        "max_path_length=50",
        "b" * 51,
    ),
    "PAX size": (tc.tar(tc.pax_header([("path", "c" * 700)]), GOOD), "max_pax_size=700", None),
    "GNU long name size": (tc.tar(tc.gnu_long_name("c" * 700), GOOD), "max_pax_size=700", None),
}


def test_meta_header_over_go_maximum() -> None:
    """Go refuses PAX / GNU long-name data over 1 MiB, so a raised max_pax_size does not help."""
    blob = tc.tar(tc.pax_header([("path", "p" * (1 << 20))]), GOOD)
    limits = Limits(max_pax_size=2 << 20, max_path_length=2 << 20)
    expect_error(tc.gzip_member(blob), ArchiveError, "refuses more than 1048576", limits=limits)


@pytest.mark.parametrize("case", LIMIT_CASES, ids=str)
def test_limits(case: str) -> None:
    blob, fragment, path = LIMIT_CASES[case]
    error = expect_error(tc.gzip_member(blob), LimitExceeded, fragment, limits=SMALL)
    assert error.path == path


def test_limits_are_inclusive() -> None:
    blob = tc.tar(
        tc.pax_header([("path", "p" * 50)]),
        tc.entry("ignored", b"x" * 1000),
        tc.entry("b.json"),
        tc.entry("c.json"),
    )
    assert read_all(tc.gzip_member(blob), SMALL)[0] == Entry("p" * 50, b"x" * 1000)


# -- per-entry problems ---------------------------------------------------------------------------

PROBLEM_TYPES = {
    b"1": "hard link entries are not allowed",
    b"2": "symlink entries are not allowed",
    b"3": "character device entries are not allowed",
    b"4": "block device entries are not allowed",
    b"5": "directory entries are not allowed",
    b"6": "fifo entries are not allowed",
    b"7": "contiguous file entries are not allowed",
    b"X": "entries of unknown type 'X' are not allowed",
    b"\xfe": "entries of unknown type '0xfe' are not allowed",
}


@pytest.mark.parametrize("typeflag", PROBLEM_TYPES, ids=short_id)
def test_non_regular_types_are_problems(typeflag: bytes) -> None:
    data = b"payload" * 100
    # Go ignores the size of header-only types (1-6): no data follows them.
    body = b"" if typeflag in headers.HEADER_ONLY_TYPES else tc.pad(data)
    blob = tc.tar(
        tc.header("things/t", size=len(data), typeflag=typeflag, linkname=b"x") + body, GOOD
    )
    entries = read_all(tc.gzip_member(blob))
    assert entries == [Entry("things/t", b"", PROBLEM_TYPES[typeflag]), Entry(*GOOD_PAIR)]


def test_legacy_regular_type() -> None:
    blob = tc.tar(tc.entry("a.json", b"{}", typeflag=b"\x00"))
    assert read_pairs(tc.gzip_member(blob)) == [("a.json", b"{}")]


def test_legacy_type_with_slash_is_a_directory() -> None:
    # Go turns '\0' + "name/" into a directory, and then ignores its size: no data follows.
    blob = tc.tar(tc.header("dir/", size=700, typeflag=b"\x00"), GOOD)
    assert read_all(tc.gzip_member(blob)) == [
        Entry("dir/", b"", "directory entries are not allowed"),
        Entry(*GOOD_PAIR),
    ]


NOT_UTF8 = "path is not valid UTF-8 (no Kubernetes name is: Velero never wrote it)"
PROBLEM_PATHS: dict[str, tuple[bytes, str]] = {
    "absolute": (b"/etc/passwd", "path is absolute"),
    "dot-dot": (b"resources/../../etc/x.json", "path has a '..' segment"),
    "only dot-dot": (b"..", "path has a '..' segment"),
    "trailing dot-dot": (b"a/..", "path has a '..' segment"),
    "dot": (b"resources/./x.json", "path has a '.' segment"),
    "leading dot": (b"./x.json", "path has a '.' segment"),
    "empty segment": (b"a//b.json", "path has an empty segment"),
    "trailing slash": (b"a/b/", "path has an empty segment"),
    "invalid UTF-8": (b"caf\xe9.json", NOT_UTF8),
    "overlong UTF-8": (b"\xc0\xaf.json", NOT_UTF8),
    "surrogate UTF-8": (b"\xed\xa0\x80.json", NOT_UTF8),
    "empty": (b"", "path is empty"),
}


# Each unsafe path as a header name, a PAX path and a GNU long name (an empty PAX path or long
# name is a fatal error instead, tested above).
UNSAFE_PATH_CASES = [
    (via, case)
    for via in ("header", "pax", "gnu")
    for case in PROBLEM_PATHS
    if via == "header" or PROBLEM_PATHS[case][0]
]


@pytest.mark.parametrize(("via", "case"), UNSAFE_PATH_CASES, ids="-".join)
def test_unsafe_paths_are_problems(via: str, case: str) -> None:
    name, problem = PROBLEM_PATHS[case]
    data = b"secret" * 100
    if via == "header":
        first = tc.entry(name, data)
    elif via == "pax":
        first = tc.pax_header([(b"path", name)]) + tc.entry("ignored", data)
    else:
        first = tc.gnu_long_name(name) + tc.entry("ignored", data, magic=tc.GNU)
    entries = read_all(tc.gzip_member(tc.tar(first, GOOD)))
    expected_path = name.decode("utf-8", "backslashreplace")
    assert entries == [Entry(expected_path, b"", problem), Entry(*GOOD_PAIR)]


def test_safe_paths_pass() -> None:
    # Backslashes and control characters are ordinary characters in Kubernetes RBAC names and on
    # Linux, where Velero restores (docs/format.md §2 rule 6); only NUL is refused.
    names = ["a", ".hidden", "a..b", "...", "a/.b/c..", "system:controller:x.json", "caf\u00e9",
             "a\\..\\b.json", "a\nb.json", "a\tb.json", "a\x7fb.json", "\x1b[2K\rx", "a\u0085b"]
    blob = tc.tar(*[tc.entry(n.encode(), n.encode()) for n in names])
    assert read_pairs(tc.gzip_member(blob)) == [(n, n.encode()) for n in names]


# -- accepted constructions -----------------------------------------------------------------------


def test_ustar_prefix_is_joined() -> None:
    blob = tc.tar(tc.entry("p.json", b"{}", prefix="resources/pods/namespaces/ns"))
    assert read_pairs(tc.gzip_member(blob)) == [("resources/pods/namespaces/ns/p.json", b"{}")]


def test_full_width_prefix_and_name() -> None:
    """155 + 100 bytes, neither NUL-terminated: Go's parseString takes the whole fields."""
    prefix, name = "p" * 155, "n" * 100
    blob = tc.tar(tc.entry(name, b"x", prefix=prefix))
    limits = Limits(max_path_length=256)
    assert [(e.path, e.data) for e in read_all(tc.gzip_member(blob), limits)] == [
        (f"{prefix}/{name}", b"x")
    ]


def test_name_and_prefix_cut_at_first_nul() -> None:
    """Bytes after the first NUL of a field are ignored, as Go's parseString does."""
    blob = tc.tar(
        tc.entry(b"p.json\x00junk", b"x", prefix=b"dir\x00junk"),
    )
    assert read_pairs(tc.gzip_member(blob)) == [("dir/p.json", b"x")]


def test_pax_path_overrides_name_and_prefix() -> None:
    long = "resources/services/namespaces/ns/" + "s" * 200 + ".json"
    blob = tc.tar(
        tc.pax_header(
            [
                ("path", long),
                ("mtime", "1732780800.123"),
                ("atime", "-5"),
                ("ctime", ""),
                ("uid", "0"),
                ("gid", "-1"),
                ("uname", "root"),
                ("gname", ""),
            ]
        ),
        tc.entry("truncated-name", b"{}", prefix="other"),
        GOOD,
    )
    assert read_pairs(tc.gzip_member(blob)) == [(long, b"{}"), GOOD_PAIR]


def test_pax_size_overrides_header_size() -> None:
    data = b"0123456789" * 70
    blob = tc.tar(tc.pax_header([("size", str(len(data)))]), tc.entry("a.json", data, size=3), GOOD)
    assert read_pairs(tc.gzip_member(blob)) == [("a.json", data), GOOD_PAIR]


def test_pax_applies_to_one_entry_only() -> None:
    blob = tc.tar(tc.pax_header([("path", "first")]), tc.entry("x"), tc.entry("second"))
    assert [e.path for e in read_all(tc.gzip_member(blob))] == ["first", "second"]


def test_gnu_long_name() -> None:
    long = "resources/configmaps/namespaces/ns/" + "c" * 150
    blob = tc.tar(
        tc.gnu_long_name(long),
        tc.entry("short", b"{}", magic=tc.GNU),
        tc.gnu_long_name(long + "2", nul=False),
        tc.entry("short", b"[]"),
        GOOD,
    )
    assert read_pairs(tc.gzip_member(blob)) == [(long, b"{}"), (long + "2", b"[]"), GOOD_PAIR]


def test_gnu_header_ignores_prefix_area() -> None:
    """GNU headers have atime/ctime where USTAR has the prefix: never joined to the name."""
    fields = _gnu_time_fields(b"00000000000\x00" + b"14722021400\x00")
    blob = tc.tar(tc.entry("a.json", b"x", magic=tc.GNU, fields=fields))
    assert read_pairs(tc.gzip_member(blob)) == [("a.json", b"x")]


def test_loose_numeric_fields() -> None:
    """Space- and NUL-padded octal (old writers) goes the slow path and reads as Go reads it."""
    blob = tc.tar(
        tc.entry(
            "a.json",
            b"abc",
            fields={
                "mode": b"   755 \x00",
                "uid": b"\x00" * 8,
                "gid": b"       \x00",
                "size": b"         3 \x00",
                "mtime": b"14722021400 ",
                "devmajor": b"\x00" * 8,
            },
        )
    )
    assert read_pairs(tc.gzip_member(blob)) == [("a.json", b"abc")]


@pytest.mark.parametrize(
    "size",
    [0, 1, 511, 512, 513, inflate.MAX_OUTPUT - 600, inflate.MAX_OUTPUT + 1, 3 * inflate.MAX_OUTPUT],
)
def test_data_sizes_and_buffer_boundaries(size: int) -> None:
    data = os.urandom(size)
    blob = tc.tar(GOOD, tc.entry("big.bin", data), GOOD)
    assert read_pairs(tc.gzip_member(blob)) == [GOOD_PAIR, ("big.bin", data), GOOD_PAIR]


def test_headers_across_buffer_boundaries() -> None:
    """Entries of odd sizes make headers and padding straddle every decompressed piece edge."""
    items = [(f"f{i}.bin", os.urandom(997 * i % 5000)) for i in range(6000)]
    blob = tc.tar(*[tc.entry(n, d) for n, d in items])
    assert len(blob) > 2 * inflate.MAX_OUTPUT
    assert read_pairs(tc.gzip_member(blob)) == items


def test_zero_padding_after_the_end_marker() -> None:
    blob = tc.tar(GOOD)
    padded = blob + bytes(-len(blob) % 10240)
    assert len(padded) == 10240
    assert read_pairs(tc.gzip_member(padded)) == [GOOD_PAIR]


def test_empty_archive() -> None:
    reader = ArchiveReader(io.BytesIO(tc.targz()))
    assert list(reader) == []
    assert reader.archive_size == len(tc.targz())


def test_single_use_and_digest_only_when_done() -> None:
    reader = ArchiveReader(io.BytesIO(tc.targz(GOOD, GOOD)))
    it = iter(reader)
    next(it)
    with pytest.raises(RuntimeError):
        _ = reader.archive_digest
    with pytest.raises(RuntimeError):
        iter(reader)
    assert list(it) == [Entry(*GOOD_PAIR)]
    assert reader.archive_digest == blake3.blake3(tc.targz(GOOD, GOOD)).digest()


def test_digest_unset_after_an_error() -> None:
    reader = ArchiveReader(io.BytesIO(GZ + b"x"))
    with pytest.raises(ArchiveError):
        list(reader)
    with pytest.raises(RuntimeError):
        _ = reader.archive_digest


def test_go_agrees_on_accepted_constructions(go_bin: Path, tmp_path: Path) -> None:
    """Each odd-but-accepted construction above, read by Go's archive/tar too."""
    fields = _gnu_time_fields(b"00000000000\x00")
    blobs = [
        tc.tar(tc.entry("p.json", b"{}", prefix="resources/pods/namespaces/ns")),
        tc.tar(tc.entry("n" * 100, b"x", prefix="p" * 155)),
        tc.tar(tc.entry(b"p.json\x00junk", b"x", prefix=b"dir\x00junk")),
        tc.tar(
            tc.pax_header([("path", "a" * 300), ("mtime", "1.5"), ("ctime", ""), ("uname", "u")]),
            tc.entry("b", b"x", prefix="c"),
        ),
        tc.tar(tc.pax_header([("size", "700")]), tc.entry("a.json", b"z" * 700, size=3)),
        tc.tar(tc.gnu_long_name("l" * 150), tc.entry("short", b"{}", magic=tc.GNU)),
        tc.tar(tc.gnu_long_name("m" * 150, nul=False), tc.entry("short", b"{}")),
        tc.tar(tc.entry("a.json", b"x", magic=tc.GNU, fields=fields)),
        tc.tar(tc.entry("a.json", b"x", typeflag=b"\x00")),
        tc.tar(tc.header("dir/", size=700, typeflag=b"\x00"), GOOD),
        tc.tar(tc.header("l", size=700, typeflag=b"2", linkname=b"/etc"), GOOD),
        tc.tar(tc.entry("c", b"q" * 700, typeflag=b"7"), GOOD),
        tc.tar(
            tc.entry(
                "a.json", b"abc", fields={"mode": b"   755 \x00", "size": b" 3 \x00" + bytes(8)}
            )
        ),
        tc.tar(tc.entry("../x", b"abc"), tc.entry("/abs", b"abc"), GOOD),
        tc.tar(GOOD) + bytes(9000),
    ]
    for blob in blobs:
        entries = read_all(tc.gzip_member(blob), Limits(max_path_length=4096))
        assert_go_agrees(go_bin, tmp_path, tc.gzip_member(blob), entries)


# -- bombs ----------------------------------------------------------------------------------------

GIB = 1 << 30


def _compress_stream(pieces: Iterator[bytes]) -> bytes:
    co = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    out = [co.compress(p) for p in pieces]
    out.append(co.flush())
    return bytes(b"".join(out))


@pytest.fixture(scope="module")
def zero_entry_bomb() -> bytes:
    """A 1 GiB entry of zeros, about 1 MiB compressed."""
    chunk = bytes(1 << 20)

    def pieces() -> Iterator[bytes]:
        yield tc.header("resources/bomb.json", size=GIB)
        for _ in range(GIB // len(chunk)):
            yield chunk
        yield tc.end_of_archive()

    return _compress_stream(pieces())


def test_gzip_bomb_entry_refused_before_reading(zero_entry_bomb: bytes) -> None:
    reader = ArchiveReader(io.BytesIO(zero_entry_bomb), Limits(max_entry_size=1 << 20))
    with pytest.raises(LimitExceeded, match="max_entry_size=1048576") as info:
        list(reader)
    assert info.value.path == "resources/bomb.json"
    assert reader.archive_size <= inflate.READ_SIZE  # one read, not the whole file


# Peak memory of one archive read, measured in a fresh process (VmHWM, as the exhaustion tests
# do): tracemalloc in the test process would count every thread's allocations (the reader's
# inflater, and any other thread of the session) and miss the C libraries' own.
_READ_PEAK = r"""
import json, sys
from merkle_backup.archive import ArchiveReader, Limits
from merkle_backup.errors import ArchiveError

def hwm_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

limits = Limits(**json.loads(sys.argv[2]))
base = hwm_kib()
error = None
with open(sys.argv[1], "rb") as f:
    reader = ArchiveReader(f, limits)
    try:
        for _ in reader:
            pass
    except ArchiveError as e:
        error = str(e)
print(json.dumps({"error": error, "growth_kib": hwm_kib() - base, "read": reader.archive_size}))
"""


def _read_in_a_child(tmp_path: Path, blob: bytes, **limits: int) -> dict:
    path = tmp_path / "archive.tar.gz"
    path.write_bytes(blob)
    proc = subprocess.run([sys.executable, "-c", _READ_PEAK, str(path), json.dumps(limits)],
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout)


def test_gzip_bomb_total_size_bounded_memory(zero_entry_bomb: bytes, tmp_path: Path) -> None:
    result = _read_in_a_child(tmp_path, zero_entry_bomb, max_entry_size=2 * GIB,
                              max_total_size=64 << 20)
    assert "max_total_size" in result["error"]
    # Refused up front: never near 1 GiB, nor the 64 MiB cap. (Resident memory, so the
    # inflater's and the C libraries' buffers count too: about 20 MiB here.)
    assert result["growth_kib"] < 48 << 10


def test_zero_padding_bomb_bounded_memory(tmp_path: Path) -> None:
    """1 GiB of zero padding after the end marker: refused at 1 MiB, in bounded memory."""
    chunk = bytes(1 << 20)

    def pieces() -> Iterator[bytes]:
        yield tc.tar(GOOD)
        for _ in range(1024):
            yield chunk

    blob = _compress_stream(pieces())
    result = _read_in_a_child(tmp_path, blob, max_total_size=32 << 20)
    assert "more than 1048576 bytes of zero padding" in result["error"]
    assert result["growth_kib"] < 48 << 10  # resident memory: never near the 1 GiB inflated
    assert result["read"] < len(blob)


def test_zero_padding_up_to_a_mebibyte_is_accepted() -> None:
    """tar(1) pads to its record size; 1 MiB of zeros after the marker is still an archive."""
    blob = _compress_stream(iter([tc.tar(GOOD), bytes((1 << 20) - 1024)]))
    assert [e.path for e in ArchiveReader(io.BytesIO(blob))] == ["resources/pods/namespaces/ns/p.json"]


def test_a_million_empty_entries() -> None:
    block = tc.header("resources/e.json") * 2048  # 1 MiB of empty entries

    def pieces() -> Iterator[bytes]:
        for _ in range(1_000_000 // 2048 + 1):
            yield block
        yield tc.end_of_archive()

    blob = _compress_stream(pieces())
    reader = ArchiveReader(io.BytesIO(blob), Limits(max_entries=1000))
    seen = 0
    with pytest.raises(LimitExceeded, match="max_entries=1000"):
        for _ in reader:
            seen += 1
    assert seen == 1000
    assert reader.archive_size < len(blob)


# -- properties -----------------------------------------------------------------------------------

SAMPLE_PARTS = [  # each part starts with one header
    tc.entry("metadata/version", b"1.1.0\n"),
    tc.pax_header([("path", "resources/svc/namespaces/ns/" + "s" * 110 + ".json")]),
    tc.entry("resources/svc/namespaces/ns/sss", b'{"a":"b"}' * 40),
    tc.entry("p.json", b"{}", prefix="resources/pods/namespaces/ns"),
    tc.gnu_long_name("resources/cm/namespaces/ns/" + "c" * 100),
    tc.entry("c", b"[1,2,3]", magic=tc.GNU),
    tc.header("dir/", typeflag=b"5"),
    tc.entry("resources/x.json", b"x" * 700),
]
SAMPLE_TAR = tc.tar(*SAMPLE_PARTS)
SAMPLE_HEADERS = [sum(map(len, SAMPLE_PARTS[:i])) for i in range(len(SAMPLE_PARTS))]
SAMPLE_GZ = tc.gzip_member(SAMPLE_TAR)


def test_sample_reads() -> None:
    assert [e.problem for e in read_all(SAMPLE_GZ)] == [None] * 4 + [
        "directory entries are not allowed",
        None,
    ]


mutations = st.lists(
    st.tuples(st.integers(min_value=0, max_value=len(SAMPLE_TAR) - 1), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


def _mutate(base: bytes, changes: list[tuple[int, int]], cut: int | None) -> bytes:
    blob = bytearray(base)
    for pos, value in changes:
        blob[pos % len(blob)] = value
    return bytes(blob[:cut] if cut is not None else blob)


def _read_or_archive_error(blob: bytes) -> list[Entry] | None:
    try:
        return read_all(blob, Limits(max_entry_size=1 << 16, max_total_size=1 << 20))
    except ArchiveError:
        return None


@settings(max_examples=400, deadline=None)
@given(changes=mutations, cut=st.none() | st.integers(0, len(SAMPLE_GZ)))
def test_compressed_mutations_only_raise_archive_error(
    changes: list[tuple[int, int]], cut: int | None
) -> None:
    _read_or_archive_error(_mutate(SAMPLE_GZ, changes, cut))


@settings(max_examples=400, deadline=None)
@given(changes=mutations, cut=st.none() | st.integers(0, len(SAMPLE_TAR)))
def test_tar_mutations_only_raise_archive_error(
    changes: list[tuple[int, int]], cut: int | None
) -> None:
    """Mutations inside the tar (then gzipped) reach the header and PAX parsers."""
    _read_or_archive_error(tc.gzip_member(_mutate(SAMPLE_TAR, changes, cut)))


# Header-aimed mutations: bytes likely to matter in a header ('/', '.', digits, NUL, space,
# typeflags, high bytes), in one of the sample's headers, whose checksum is then recomputed so
# that most examples get past it and reach the field parsers.
INTERESTING_OFFSETS = [
    *range(4),
    99,
    100,
    *range(124, 136),
    156,
    *range(257, 265),
    345,
    346,
    499,
    508,
]
header_mutations = st.tuples(
    st.sampled_from(SAMPLE_HEADERS),
    st.lists(
        st.tuples(
            st.integers(0, 511) | st.sampled_from(INTERESTING_OFFSETS),
            st.sampled_from(
                [0, 0x20, 0x2F, 0x2E, 0x30, 0x35, 0x37, 0x38, 0x78, 0x4C, 0x5C, 0x80, 0xFF]
            ),
        ),
        min_size=1,
        max_size=3,
    ),
    st.booleans(),
)


def _mutate_header(mutation: tuple[int, list[tuple[int, int]], bool]) -> bytes:
    start, changes, reseal = mutation
    blob = bytearray(SAMPLE_TAR)
    for pos, value in changes:
        blob[start + pos] = value
    if reseal:
        blob[start + 148 : start + 156] = b"%06o\x00 " % tc.checksum(
            bytes(blob[start : start + 512])
        )
    return tc.gzip_member(bytes(blob))


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutation=header_mutations)
def test_go_agrees_whenever_we_accept(
    go_bin: Path, tmp_path: Path, mutation: tuple[int, list[tuple[int, int]], bool]
) -> None:
    """Differential: any mutated archive this reader accepts, Go reads identically."""
    blob = _mutate_header(mutation)
    entries = _read_or_archive_error(blob)
    if entries is not None:
        assert_go_agrees(go_bin, tmp_path, blob, entries)


@settings(max_examples=300, deadline=None)
@given(mutation=header_mutations)
def test_fast_and_slow_header_paths_agree(
    mutation: tuple[int, list[tuple[int, int]], bool],
) -> None:
    blob = _mutate_header(mutation)
    assert _outcome(blob) == _outcome(blob, fast_path=False)


def _outcome(blob: bytes, *, fast_path: bool = True) -> object:
    try:
        return read_all(blob, fast_path=fast_path)
    except ArchiveError as e:
        return (type(e), str(e))
