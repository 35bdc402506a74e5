"""The mistakes of a new user's first ten minutes, and what the CLI answers (issue 15): every
refusal names its file and, where a common mistake explains it, says so (cli/hints.py); and
verify-proof's report puts the verdict, what is proven and the --content result first."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from tests.attacks.helpers import (
    EXIT_CANNOT_CHECK,
    EXIT_OK,
    NS_B,
    run,
    seal,
    seal_path,
    tarball,
)


@pytest.fixture
def sealed(backup: Path, keypair: tuple[Path, Path]) -> Path:
    seal(backup, keypair[0])
    return backup


@pytest.fixture
def proof(sealed: Path, keypair: tuple[Path, Path], tmp_path: Path) -> Path:
    out = tmp_path / "payments.proof"
    done = run("prove", sealed, "--namespace", NS_B, "--with-content", "--trust", keypair[1],
               "-o", out)
    assert done.code == EXIT_OK, done.err
    return out


def refusal(*args: str | Path) -> str:
    outcome = run(*args)
    assert outcome.code == EXIT_CANNOT_CHECK, outcome
    assert outcome.out == ""
    return outcome.err


def test_an_uncompressed_tar_is_named_and_explained(backup: Path, keypair, tmp_path: Path) -> None:
    plain = tmp_path / "nightly.tar.gz"
    plain.write_bytes(gzip.decompress(tarball(backup).read_bytes()))
    err = refusal("seal", plain, "--key", keypair[0])
    assert err.startswith(f"merkle-backup: error: {plain}: not a gzip stream")
    assert "uncompressed tar archive" in err and not plain.with_name("nightly.tar.gz.seal").exists()
    # Inside a backup folder, the tarball's own path is named.
    tarball(backup).write_bytes(plain.read_bytes())
    err = refusal("seal", backup, "--key", keypair[0])
    assert f"{tarball(backup)}: not a gzip stream" in err and "uncompressed tar" in err


def _tar_gz(entries: dict[str, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("entries, says", [
    ({"rnd/": None, "rnd/a": b"x"}, "rnd/: directory entries are not allowed"),
    ({"notes.txt": b"x"}, "notes.txt: path is outside Velero's layout"),
], ids=["folder-archived-with-tar", "file-outside-the-layout"])
def test_an_archive_not_in_veleros_layout_is_named_and_explained(
        keypair, tmp_path: Path, entries: dict[str, bytes | None], says: str) -> None:
    made = tmp_path / "made.tar.gz"
    made.write_bytes(_tar_gz(entries))
    err = refusal("seal", made, "--key", keypair[0])
    assert f"{made}: {says}" in err and "not in Velero's layout" in err


def test_a_proof_given_as_a_seal(sealed: Path, proof: Path, keypair) -> None:
    for args in (("inspect", proof), ("verify", sealed, "--seal", proof, "--trust", keypair[1])):
        err = refusal(*args)
        assert f"{proof}: not a seal but a proof file" in err, err
        assert "msgpack" not in err and "verify-proof" in err


def test_a_seal_given_as_a_proof(sealed: Path, keypair) -> None:
    err = refusal("verify-proof", seal_path(sealed), "--trust", keypair[1])
    assert f"{seal_path(sealed)}: not a proof file but a seal" in err
    assert "merkle-backup verify BACKUP" in err


def test_a_garbage_seal_is_named(sealed: Path, keypair, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.seal"
    garbage.write_bytes(bytes(range(256)) * 2)
    for args in (("inspect", garbage),
                 ("verify", sealed, "--seal", garbage, "--trust", keypair[1])):
        err = refusal(*args)
        assert err.startswith(f"merkle-backup: error: {garbage}: ") and "hint: not a seal" in err
    seal_path(sealed).write_bytes(b"\x00" * 100)
    err = refusal("verify", sealed, "--trust", keypair[1])
    assert f"{seal_path(sealed)}: " in err and "hint: not a seal" in err


def test_a_garbage_seal_in_json_is_named_too(sealed: Path, keypair, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.seal"
    garbage.write_bytes(b"\x93" * 10)
    outcome = run("verify", sealed, "--seal", garbage, "--trust", keypair[1], "--json")
    assert outcome.code == EXIT_CANNOT_CHECK
    assert outcome.json()["error"].startswith(f"{garbage}: ")


def test_keys_swapped(sealed: Path, keypair) -> None:
    private, public = keypair
    err = refusal("verify", sealed, "--trust", private)
    assert err.startswith(f"merkle-backup: error: {private}: ")
    assert f"hint: that is a private key: --trust takes the public key, {private}.pub" in err
    err = refusal("seal", sealed, "--key", public, "--replace")
    assert err.startswith(f"merkle-backup: error: {public}: ")
    assert f"--key takes the private key, {private.name} (without .pub)" in err


# -- verify-proof's report --------------------------------------------------------------------

def test_verify_proof_of_a_namespace_is_a_few_lines(sealed: Path, proof: Path, keypair,
                                                    tmp_path: Path) -> None:
    held = tmp_path / "api.json"
    with tarfile.open(tarball(sealed)) as tar:
        path = next(n for n in tar.getnames()
                    if n.startswith(f"resources/deployments.apps/namespaces/{NS_B}/"))
        held.write_bytes(tar.extractfile(path).read())  # type: ignore[union-attr]
    outcome = run("verify-proof", proof, "--trust", keypair[1], "--content", held)
    assert outcome.code == EXIT_OK
    lines = outcome.out.splitlines()
    assert lines[0].startswith("VERIFIED: proof for backup demo-small")
    assert lines[1].startswith(f"  namespace {NS_B}: complete, ")
    assert lines[1].endswith("entries exactly as sealed, manifests included")
    assert lines[2].startswith(f"  content {held}: byte for byte the sealed resources/")
    assert lines[3].startswith("  root ")
    assert "--verbose" in lines[4] and len(lines) == 5
    verbose = run("verify-proof", proof, "--trust", keypair[1], "--content", held, "--verbose")
    assert verbose.code == EXIT_OK and verbose.out.startswith("\n".join(lines[:4]))
    assert f"  in {NS_B}: {path}" in verbose.out.splitlines()
    assert len(verbose.out.splitlines()) > 100


def test_verify_proof_of_single_resources(sealed: Path, keypair, tmp_path: Path) -> None:
    out = tmp_path / "one.proof"
    assert run("prove", sealed, "--resource", "velero-backup.json", "-o", out).code == EXIT_OK
    outcome = run("verify-proof", out, "--trust", keypair[1])
    assert outcome.code == EXIT_OK
    assert outcome.out.splitlines()[1] == ("  1 single resource(s) proven as sealed: "
                                           "velero-backup.json")
    assert "--verbose" not in outcome.out


# -- the demo ---------------------------------------------------------------------------------

DEMO_STEPS = [
    ("keygen keys/demo.key", 0),
    ("seal bucket/backups/demo-small --key keys/demo.key", 0),
    ("verify bucket/backups/demo-small --trust keys/demo.key.pub", 0),
    ("verify bucket/backups/demo-small --trust keys/demo.key.pub --namespace monitoring-000", 0),
    ("verify bucket/backups/demo-small --trust keys/demo.key.pub", 1),
    ("verify bucket/backups/demo-small --trust keys/demo.key.pub --namespace payments-001", 0),
    ("verify bucket/backups/demo-small --trust keys/demo.key.pub", 0),
]


def demo_steps(out: str) -> list[tuple[str, int]]:
    """Each '$ merkle-backup ...' line of the demo with the '-> exit N' that closes it."""
    steps, command = [], None
    for line in out.splitlines():
        if line.startswith("   $ merkle-backup "):
            assert command is None, line
            command = line.removeprefix("   $ merkle-backup ")
        elif line.startswith("   -> exit "):
            assert command is not None, line
            steps.append((command, int(line.split()[2])))
            command = None
    return steps


def test_demo_shows_each_command_with_its_exit_code_and_keeps_its_folder(tmp_path: Path) -> None:
    kept = tmp_path / "demo"
    outcome = run("demo", "--keep", kept)
    assert outcome.code == EXIT_OK, outcome.out
    assert demo_steps(outcome.out) == DEMO_STEPS
    text = " ".join(outcome.out.split())
    assert f"The demo runs in {kept} (kept: --keep)" in text
    assert "The signature proves that this seal" in text and "the key you trust" in text
    # The counts explained: the namespace's leaves as inspect counts them, and the rest.
    assert ("173 leaves in scope: the 125 entries of monitoring-000 (what `inspect` counts for "
            "it) and 48 of the 52 that belong to no namespace") in text
    assert "\ndemo finished: tampering was caught" in outcome.out  # not indented as a remark
    # In and out of scope, worded so that VERIFIED cannot be read against the line below it.
    assert ("outside this scope: 1 problem(s) in entries the selection does not read; they do "
            "not change this verdict") in text
    assert "demo finished: tampering was caught and named" in text
    assert f"Kept in {kept}: the sealed backup" in text
    # What was kept is the sealed backup, as it was, and the keys: README goes on from there.
    backup = kept / "bucket" / "backups" / "demo-small"
    assert run("verify", backup, "--trust", kept / "keys" / "demo.key.pub").code == EXIT_OK
    assert (kept / "keys" / "demo.key").stat().st_mode & 0o777 == 0o600


def test_demo_without_keep_leaves_nothing(tmp_path: Path) -> None:
    outcome = run("demo")
    assert outcome.code == EXIT_OK
    first = " ".join(outcome.out.split("\n\n", 1)[0].split())
    assert "in a temporary folder" in first
    assert "removed at the end (keep it with --keep DIR)" in first
    temporary = first.split("in a temporary folder, ", 1)[1].split(", removed", 1)[0]
    assert not Path(temporary).exists()


def test_demo_keep_refuses_a_folder_in_use(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    outcome = run("demo", "--keep", tmp_path)
    assert outcome.code == 2 and f"--keep {tmp_path}: the folder is not empty" in outcome.err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_keygen_creates_the_missing_folder(tmp_path: Path) -> None:
    key = tmp_path / "home" / ".config" / "merkle-backup" / "signer.key"
    outcome = run("keygen", key)
    assert outcome.code == EXIT_OK, outcome.err
    assert key.exists() and key.with_name("signer.key.pub").exists()
    assert key.parent.stat().st_mode & 0o777 == 0o700
