"""T14 of docs/threat-model.md: malformed and tricky archives, each built byte-exactly from the
sealed Go-written tarball (tests/attacks/constructions.py). A construction the strict reader
refuses is `malformed` for verify (exit 1) and a refusal for seal (exit 3, nothing written); an
accepted one (PAX path, PAX size, GNU long name) is named by the path Go's reader sees, the
path Velero would restore."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attacks import gotar
from tests.attacks.constructions import BINDING, MALFORMED, Construction, of
from tests.attacks.helpers import (
    EXIT_CANNOT_CHECK,
    EXIT_NOT_AUTHENTIC,
    EXIT_OK,
    detail,
    expect_not_authentic,
    expect_refusal,
    run,
    seal,
    seal_path,
    tarball,
    verify,
)
from tests.conftest import copy_backup


def _fresh(tmp_path: Path, blob: bytes) -> Path:
    folder = copy_backup("demo-small", tmp_path / "fresh")
    tarball(folder).write_bytes(blob)
    return folder


def check(sealed: Path, tmp_path: Path, keypair, c: Construction) -> dict:
    """verify names the construction; seal refuses it (or, if accepted, seals Go's names)."""
    blob = c.build(gotar.decompress(tarball(sealed)))
    tarball(sealed).write_bytes(blob)
    path = c.entry if c.entry is not None else str(sealed)
    report = expect_not_authentic(sealed, keypair[1], (path, c.problem))
    for fragment in c.says:
        assert fragment in detail(report, path), report["failures"]

    fresh = _fresh(tmp_path, blob)
    if c.problem == MALFORMED:
        expect_refusal(EXIT_CANNOT_CHECK, "seal", fresh, "--key", keypair[0],
                       says=("error", *c.says, *([c.entry] if c.entry else [])))
        assert not seal_path(fresh).exists()
        assert [p.name for p in fresh.iterdir() if p.name.startswith(".")] == []
    else:
        # Accepted: the seal's leaf is the path Go's reader reports, and it verifies. (--force:
        # the decoy of T14g is empty, not a manifest, which seal refuses by default: T17.)
        seal(fresh, keypair[0], "--force")
        code, proven = verify(fresh, keypair[1], "--resource", c.entry)
        # The resource, and velero-backup.json (the backup's identity, in every scope).
        assert code == EXIT_OK and proven["checked"] == 2
    return report


def _offsets(size: int) -> list[int]:
    spread = [size * i // 40 for i in range(40)]
    return sorted({*spread, 1, 9, 10, size - 9, size - 8, size - 4, size - 1})


def test_t14a_truncated_at_many_offsets(sealed: Path, tmp_path: Path, keypair) -> None:
    """T14a: the tarball cut at 40 offsets spread over the file plus the gzip header and
    trailer edges: never verified, always `malformed` for the archive as a whole."""
    whole = tarball(sealed).read_bytes()
    for offset in _offsets(len(whole)):
        tarball(sealed).write_bytes(whole[:offset])
        code, report = verify(sealed, keypair[1])
        assert code == EXIT_NOT_AUTHENTIC, offset
        malformed = [f for f in report["failures"] if f["problem"] == "malformed"]
        assert [f["path"] for f in malformed] == [str(sealed)], (offset, malformed)
        words = ("truncated", "not a gzip", "corrupt")
        assert any(word in malformed[0]["detail"] for word in words), malformed[0]["detail"]
    for offset in _offsets(len(whole))[::10]:
        fresh = _fresh(tmp_path / str(offset), whole[:offset])
        expect_refusal(EXIT_CANNOT_CHECK, "seal", fresh, "--key", keypair[0], says=("error",))


@pytest.mark.parametrize("c", of("T14b"), ids=lambda c: c.id)
def test_t14b_data_after_the_end_of_archive_marker(sealed: Path, tmp_path: Path, keypair,
                                                   c: Construction) -> None:
    """T14b: a whole entry after the two zero blocks (Go stops at them; `tar --ignore-zeros`
    would extract it), or bytes after the gzip member."""
    check(sealed, tmp_path, keypair, c)


def test_t14b_zero_padding_after_the_end_marker_is_fine(sealed: Path, keypair) -> None:
    """T14b, the boundary: zero bytes after the marker (GNU tar pads to 10240-byte records)
    change no entry and verify."""
    tar = gotar.decompress(tarball(sealed))
    gotar.store(tarball(sealed), tar + bytes(-len(tar) % 10240 + 10240))
    code, report = verify(sealed, keypair[1])
    assert code == EXIT_OK, report["failures"]


@pytest.mark.parametrize("c", of("T14c"), ids=lambda c: c.id)
def test_t14c_second_gzip_member(sealed: Path, tmp_path: Path, keypair, c: Construction) -> None:
    """T14c: a second gzip member after the first, including the tar stream split across two
    members so that Go's multistream reader restores the entry in the second one."""
    check(sealed, tmp_path, keypair, c)


@pytest.mark.parametrize("c", of("T14d"), ids=lambda c: c.id)
def test_t14d_path_traversal(sealed: Path, tmp_path: Path, keypair, c: Construction) -> None:
    """T14d: `..` segments and absolute paths (Zip-Slip: Velero checks only since v1.18.1); a
    backslash is an ordinary character on Linux, so `resources\\..\\x.json` is one segment,
    outside Velero's layout."""
    check(sealed, tmp_path, keypair, c)


@pytest.mark.parametrize("c", of("T14e"), ids=lambda c: c.id)
def test_t14e_links_and_devices(sealed: Path, tmp_path: Path, keypair, c: Construction) -> None:
    """T14e: hard links (here to a sealed path), symlinks, devices, directories, FIFOs and other
    types: Velero writes none of them."""
    check(sealed, tmp_path, keypair, c)


def test_t14f_pax_path_differs_from_the_ustar_name(sealed: Path, tmp_path: Path, keypair) -> None:
    """T14f: a ClusterRoleBinding whose USTAR name is a sealed Deployment's path and whose PAX
    path is its own: named by the PAX path (what Go restores); the USTAR name is not a
    duplicate."""
    report = check(sealed, tmp_path, keypair, of("T14f")[0])
    assert [(f["path"], f["problem"]) for f in report["failures"]] == [(BINDING, "unexpected")]


def test_t14g_pax_size_smuggles_an_entry(sealed: Path, tmp_path: Path, keypair) -> None:
    """T14g: a header whose size field (1024) hides a whole ClusterRoleBinding entry from a
    reader that ignores PAX, and a PAX `size=0` that Go applies: both entries are named."""
    report = check(sealed, tmp_path, keypair, of("T14g")[0])
    assert {(f["path"], f["problem"]) for f in report["failures"]} == {
        (BINDING, "unexpected"),
        ("resources/configmaps/namespaces/monitoring-000/decoy.json", "unexpected"),
    }


def test_t14h_gnu_long_name(sealed: Path, tmp_path: Path, keypair) -> None:
    """T14h: a GNU 'L' long name over a short header name: named by the long name."""
    report = check(sealed, tmp_path, keypair, of("T14h")[0])
    assert [(f["path"], f["problem"]) for f in report["failures"]] == [(BINDING, "unexpected")]


def test_t14i_global_pax_header(sealed: Path, tmp_path: Path, keypair) -> None:
    """T14i: a global PAX header ('g') whose path Python's tarfile would apply to later entries
    and Go would not: refused."""
    check(sealed, tmp_path, keypair, of("T14i")[0])


@pytest.mark.parametrize("c", of("T14j"), ids=lambda c: c.id)
def test_t14j_sparse_entry(sealed: Path, tmp_path: Path, keypair, c: Construction) -> None:
    """T14j: an old GNU sparse header ('S') and a PAX 1.0 sparse file (GNU.sparse.* records):
    Go expands the holes, so the bytes restored are not the bytes stored. Refused."""
    check(sealed, tmp_path, keypair, c)


def test_t14_human_output_names_the_archive(sealed: Path, keypair) -> None:
    """The human report of a stream-level failure names the backup and the rule broken."""
    whole = tarball(sealed).read_bytes()
    tarball(sealed).write_bytes(whole[: len(whole) // 2])
    outcome = run("verify", sealed, "--trust", keypair[1])
    assert outcome.code == EXIT_NOT_AUTHENTIC
    assert f"malformed  {sealed}  (truncated gzip stream" in outcome.out
