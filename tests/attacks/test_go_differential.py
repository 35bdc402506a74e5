"""The reader differential of docs/threat-model.md (T14k): our strict reader against Go's
archive/tar + compress/gzip, read exactly as Velero's restore reads (tests/tools/tarlist).

Rule (docs/format.md §2): wherever our reader accepts an archive, Go reads it to its end
without error and reports the same entries: for each regular file the same name and the same
bytes (SHA-256). Wherever Go fails, our reader fails too. Checked on both Go-written fixtures,
on every T14 construction, and on hypothesis-driven mutations: header bytes of the Go-written
fixture (with and without a repaired checksum), truncations, members appended after the
marker, in a second gzip member or as the last entry, and header-aimed mutations of a
tarcraft-built archive with PAX, GNU and non-regular entries. Run on both per-entry engines
(native and pure). Skipped without `go`.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merkle_backup.archive import ArchiveReader, Entry
from merkle_backup.errors import ArchiveError
from tests import tarcraft as tc
from tests.attacks import gotar
from tests.attacks.constructions import BINDING, CONSTRUCTIONS, DECOY, Construction
from tests.attacks.golist import GoListing, TarList, assert_go_agrees
from tests.conftest import FIXTURES

# Both per-entry engines (tests/conftest.py engine_path): the native one must agree with Go too.
pytestmark = pytest.mark.usefixtures("engine_path")

FIXTURE_TARBALLS = [FIXTURES / n / f"{n}.tar.gz" for n in ("demo-small", "demo-v153")]
GO_TAR = gotar.decompress(FIXTURE_TARBALLS[1])  # demo-v153: 85 entries, 6 with PAX headers


def ours(blob: bytes) -> list[Entry] | ArchiveError:
    try:
        return list(ArchiveReader(io.BytesIO(blob)))
    except ArchiveError as e:
        return e


def check(tarlist: TarList, blob: bytes) -> tuple[list[Entry] | ArchiveError, GoListing]:
    """Both readers on ``blob``; the differential rule holds."""
    result, go = ours(blob), tarlist.listing(blob)
    if not isinstance(result, ArchiveError):
        assert_go_agrees(go, result)
    if not go.ok:
        assert isinstance(result, ArchiveError), f"Go fails ({go.err}) where we accept"
    return result, go


@pytest.mark.parametrize("path", FIXTURE_TARBALLS, ids=lambda p: p.parent.name)
def test_t14k_go_reads_the_fixtures_as_we_do(tarlist: TarList, path: Path) -> None:
    result, go = check(tarlist, path.read_bytes())
    assert isinstance(result, list) and all(e.problem is None for e in result)
    assert go.ok and len(go.entries) == len(result) > 80


# What Go (Velero's restore) does with the ClusterRoleBinding each construction carries: True
# when it would restore it, False when it never sees it. Either way our reader names or refuses it.
GO_RESTORES_THE_BINDING = {
    "entry-after-end-marker": False,  # Go stops at the marker; `tar --ignore-zeros` would not
    "garbage-after-gzip-member": False,
    "appended-gzip-member": False,  # multistream, but the tar reader stopped at the marker
    "tar-split-across-members": True,  # multistream: the second member continues the stream
    "pax-path-differs": True,
    "pax-size-smuggles-an-entry": True,
    "gnu-long-name": True,
}


@pytest.mark.parametrize("c", CONSTRUCTIONS, ids=lambda c: c.id)
def test_t14k_go_on_every_t14_construction(tarlist: TarList, c: Construction) -> None:
    blob = c.build(gotar.decompress(FIXTURE_TARBALLS[0]))
    result, go = check(tarlist, blob)
    names = [e.name for e in go.entries]
    if c.id in GO_RESTORES_THE_BINDING:
        assert (BINDING.encode() in names) == GO_RESTORES_THE_BINDING[c.id], names[-3:]
    if c.id == "global-pax-header":
        # Go hands the 'g' header to its caller (Velero ignores it) and does not apply its path.
        assert go.ok and [e.type for e in go.entries[-2:]] == ["g", "0"]
        assert names[-1] == DECOY.encode()
    if c.problem == "unexpected":  # accepted: named as Go names it
        assert isinstance(result, list) and BINDING in [e.path for e in result]


def _header_offsets(tar: bytes) -> list[int]:
    offsets, pos = [], 0
    for member in gotar.read_members(tar):
        if member.meta:
            offsets.append(pos)
        offsets.append(pos + len(member.meta))
        pos += len(member.raw())
    return offsets


HEADERS = _header_offsets(GO_TAR)
INTERESTING_OFFSETS = [0, 1, 99, 100, *range(124, 136), 148, 155, 156, *range(257, 265), 345, 346,
                       499, 508, 512, 513, 520]
INTERESTING_BYTES = [0, 0x20, 0x2E, 0x2F, 0x30, 0x31, 0x37, 0x38, 0x0A, 0x3D, 0x4C, 0x53, 0x5C,
                     0x67, 0x78, 0x80, 0xFF]


def _reseal(tar: bytearray, start: int) -> None:
    tar[start + 148 : start + 156] = b"%06o\x00 " % (tc.checksum(bytes(tar[start : start + 512]))
                                                      & 0o777777)


def _flip_header(draw: st.DrawFn, archive: bytes, headers: list[int]) -> bytearray:
    """1-3 bytes of one header (or the block after it) set to interesting values, and its
    checksum fixed half of the time (so the change reaches past the checksum check)."""
    tar = bytearray(archive)
    start = draw(st.sampled_from(headers))
    for _ in range(draw(st.integers(1, 3))):
        pos = start + draw(st.sampled_from(INTERESTING_OFFSETS) | st.integers(0, 1023))
        if pos < len(tar):
            tar[pos] = draw(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255))
    if draw(st.booleans()):
        _reseal(tar, start)
    return tar


@st.composite
def header_flips(draw: st.DrawFn) -> bytes:
    return tc.gzip_member(bytes(_flip_header(draw, GO_TAR, HEADERS)))


@st.composite
def truncations(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(a cut archive, whether the cut kept everything)."""
    if draw(st.booleans()):  # the tar stream cut, then gzipped whole
        cut = draw(st.integers(0, len(GO_TAR)))
        return tc.gzip_member(GO_TAR[:cut]), cut == len(GO_TAR)
    blob = FIXTURE_TARBALLS[1].read_bytes()  # the compressed file cut
    cut = draw(st.integers(0, len(blob)))
    return blob[:cut], cut == len(blob)


EXTRA_MEMBERS = [
    gotar.go_member(BINDING, b'{"kind":"ClusterRoleBinding"}').raw(),
    gotar.go_member("resources/pods/namespaces/x/" + "p" * 120 + ".json", b"{}").raw(),
    tc.pax_header([("path", BINDING)]) + tc.entry(DECOY, b"{}"),
    tc.pax_header([("size", "0")]) + tc.header(DECOY, size=1024) + tc.entry(BINDING, b"{}"),
    tc.gnu_long_name(BINDING) + tc.entry("b.json", b"{}", magic=tc.GNU),
    tc.pax_header([("path", BINDING)], typeflag=b"g") + tc.entry(DECOY, b"{}"),
    tc.header("link", typeflag=b"1", linkname=b"metadata/version"),
    tc.header("sym", typeflag=b"2", linkname=b"/etc/passwd"),
    tc.header("dir/", typeflag=b"5"),
    tc.entry("a.json", b"x", typeflag=b"\x00"),
    tc.entry("../../x.json", b"x"),
    tc.entry("sparse", b"x", typeflag=b"S", magic=tc.GNU),
    tc.pax_header([("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0")]) + tc.entry("s", b"x"),
    tc.pax_header([("mtime", "1.5"), ("uid", "-1"), ("uname", "root")]) + tc.entry(DECOY, b"{}"),
    tc.pax_header(b"10 path=\n") + tc.entry(DECOY, b"{}"),
]


@st.composite
def appended_members(draw: st.DrawFn) -> bytes:
    extra = draw(st.lists(st.sampled_from(EXTRA_MEMBERS), min_size=1, max_size=3))
    body = GO_TAR[: -2 * tc.BLOCK]
    where = draw(st.sampled_from(["last-entry", "after-marker", "second-member", "split"]))
    if where == "last-entry":
        return tc.gzip_member(body + b"".join(extra) + tc.end_of_archive())
    if where == "after-marker":
        return tc.gzip_member(GO_TAR + b"".join(extra) + tc.end_of_archive())
    if where == "second-member":
        return tc.gzip_member(GO_TAR) + tc.gzip_member(b"".join(extra) + tc.end_of_archive())
    return tc.gzip_member(body) + tc.gzip_member(b"".join(extra) + tc.end_of_archive())


# A tarcraft-built archive with every kind of header our reader accepts or reports.
CRAFTED_PARTS = [
    tc.entry("metadata/version", b"1.1.0\n"),
    tc.pax_header([("path", "resources/svc/namespaces/ns/" + "s" * 110 + ".json")]),
    tc.entry("resources/svc/namespaces/ns/sss", b'{"a":"b"}' * 40),
    tc.entry("p.json", b"{}", prefix="resources/pods/namespaces/ns"),
    tc.gnu_long_name("resources/cm/namespaces/ns/" + "c" * 100),
    tc.entry("c", b"[1,2,3]", magic=tc.GNU),
    tc.pax_header([("size", "700")]),
    tc.entry("resources/big.json", b"z" * 700, size=3),
    tc.header("dir/", typeflag=b"5"),
    tc.header("l", typeflag=b"2", linkname=b"/etc"),
    tc.entry("resources/x.json", b"x" * 700),
]
CRAFTED = tc.tar(*CRAFTED_PARTS)
CRAFTED_HEADERS = [sum(map(len, CRAFTED_PARTS[:i])) for i in range(len(CRAFTED_PARTS))]


@st.composite
def crafted_mutations(draw: st.DrawFn) -> bytes:
    tar = _flip_header(draw, CRAFTED, CRAFTED_HEADERS)
    cut = draw(st.none() | st.integers(0, len(tar)))
    return tc.gzip_member(bytes(tar[:cut] if cut is not None else tar))


DIFF = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@DIFF
@given(blob=header_flips())
def test_t14k_header_flips_of_the_go_fixture(tarlist: TarList, blob: bytes) -> None:
    check(tarlist, blob)


@DIFF
@given(cut=truncations())
def test_t14k_truncations_of_the_go_fixture(tarlist: TarList, cut: tuple[bytes, bool]) -> None:
    """Go accepts a tar stream cut at an entry boundary (no end marker: io.EOF) and never
    reads the gzip trailer; we refuse every cut."""
    blob, complete = cut
    result, _ = check(tarlist, blob)
    assert isinstance(result, ArchiveError) != complete


@DIFF
@given(blob=appended_members())
def test_t14k_appended_members(tarlist: TarList, blob: bytes) -> None:
    check(tarlist, blob)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blob=crafted_mutations())
def test_t14k_mutations_of_a_crafted_archive(tarlist: TarList, blob: bytes) -> None:
    check(tarlist, blob)
