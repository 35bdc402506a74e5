"""Issue 11: hostile local input never hangs, crashes, leaks or lies (docs/threat-model.md T21-T24).

Everything runs the real CLI (click's CliRunner through tests/attacks/helpers.run, which holds
every failure to one line on stderr and no traceback; or a subprocess where a kill, a resource
limit or a fresh process's memory is the point) on real files, links, FIFOs, devices and tiny
tmpfs mounts. Each test also checks that nothing was written or left behind.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from merkle_backup.formats.seal import MAX_LEAVES, MAX_SEAL_BYTES, SEAL_MAGIC, SEAL_VERSION
from merkle_backup.storage.files import MAX_PROOF_FILE_BYTES
from tests.attacks.helpers import (
    EXIT_CANNOT_CHECK,
    EXIT_NOT_AUTHENTIC,
    EXIT_OK,
    expect_refusal,
    failures,
    run,
    seal,
    seal_path,
    tarball,
    verify,
)
from tests.conftest import copy_backup, tiny_tmpfs

SIDECAR = "demo-small-logs.gz"
LINK = "is a symbolic link, not a regular file"
FIFO = "is a FIFO, not a regular file"


@pytest.fixture(autouse=True)
def never_hang() -> Iterator[None]:
    """A test that blocks (on a FIFO, say) fails after 60 s instead of hanging the suite."""
    def expired(*_: object) -> None:
        raise TimeoutError("the command hung")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def put(folder: Path, name: str, kind: str, key: Path | None = None) -> None:
    """Replace (or add) ``folder/name`` with a non-regular file of ``kind``."""
    path = folder / name
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    if kind == "link-to-key":
        path.symlink_to(key)
    elif kind == "link-to-zero":
        path.symlink_to("/dev/zero")
    elif kind == "link-to-copy":  # a link to a regular file holding the very bytes sealed
        copy = folder.parent / f"copy-of-{name}"
        path.symlink_to(copy)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:  # pragma: no cover
        raise ValueError(kind)


WHAT = {"link-to-key": LINK, "link-to-zero": LINK, "link-to-copy": LINK, "fifo": FIFO,
        "directory": "is a directory, not a regular file"}


# --- T21: objects of a backup folder are opened, never followed ----------------------------------

@pytest.mark.parametrize("kind",
                         ["link-to-key", "link-to-zero", "link-to-copy", "fifo", "directory"])
@pytest.mark.parametrize("name", [SIDECAR, "velero-backup.json"])
def test_t21_sealed_object_replaced_by_a_non_regular_file_is_tampering(
        backup, keypair, kind, name) -> None:
    seal(backup, keypair[0])
    shutil.copy(backup / name, backup.parent / f"copy-of-{name}")
    put(backup, name, kind, keypair[0])
    code, report = verify(backup, keypair[1])
    assert code == EXIT_NOT_AUTHENTIC, report
    assert (name, "modified") in failures(report)
    assert next(f["detail"] for f in report["failures"] if f["path"] == name) == WHAT[kind]
    human = run("verify", backup, "--trust", keypair[1])
    assert human.code == EXIT_NOT_AUTHENTIC and f"modified   {name}" in human.out


@pytest.mark.parametrize("kind", ["link-to-copy", "link-to-zero", "fifo", "directory"])
def test_t21_sealed_tarball_replaced_by_a_non_regular_file_is_tampering(
        backup, keypair, kind) -> None:
    seal(backup, keypair[0])
    name = tarball(backup).name
    shutil.copy(tarball(backup), backup.parent / f"copy-of-{name}")
    put(backup, name, kind)
    code, report = verify(backup, keypair[1])
    assert code == EXIT_NOT_AUTHENTIC, report
    assert (str(tarball(backup)), "modified") in failures(report)
    assert report["failures"][0]["detail"] == WHAT[kind]


@pytest.mark.parametrize("kind", ["link-to-key", "link-to-zero", "fifo", "directory"])
def test_t21_unsealed_non_regular_entry_is_unexpected(backup, keypair, kind) -> None:
    seal(backup, keypair[0])
    put(backup, "extra.json", kind, keypair[0])
    code, report = verify(backup, keypair[1])
    assert code == EXIT_NOT_AUTHENTIC, report
    assert failures(report) == {("extra.json", "unexpected")}
    assert report["failures"][0]["detail"].startswith(WHAT[kind])


@pytest.mark.parametrize("kind", ["link-to-key", "link-to-zero", "fifo", "directory"])
@pytest.mark.parametrize("name", [SIDECAR, "velero-backup.json", "extra.json", "TARBALL"])
def test_t21_seal_refuses_a_non_regular_object(backup, keypair, kind, name) -> None:
    name = tarball(backup).name if name == "TARBALL" else name
    put(backup, name, kind, keypair[0])
    before = listing(backup)
    line = expect_refusal(EXIT_CANNOT_CHECK, "seal", backup, "--key", keypair[0],
                          says=(str(backup / name), WHAT[kind]))
    assert "PRIVATE KEY" not in line
    assert listing(backup) == before  # no seal, no temporary


def test_t21_prove_with_content_never_embeds_a_link_to_the_private_key(
        backup, keypair, tmp_path) -> None:
    seal(backup, keypair[0])
    put(backup, SIDECAR, "link-to-key", keypair[0])
    out = tmp_path / "p.proof"
    expect_refusal(EXIT_NOT_AUTHENTIC, "prove", backup, "--resource", SIDECAR, "--with-content",
                   "--trust", keypair[1], "-o", out, says=(str(backup / SIDECAR), LINK, "refusing"))
    assert not out.exists()
    assert listing(tmp_path) == ["bucket"]


def test_t21_the_folder_the_user_names_may_be_a_link(backup, keypair, tmp_path) -> None:
    link = tmp_path / "link-to-backup"
    link.symlink_to(backup)
    seal(link, keypair[0])
    assert seal_path(backup).is_file()
    code, report = verify(link, keypair[1])
    assert code == EXIT_OK, report
    # A bare tarball named through a link of the user's, too.
    bare = tmp_path / "bare.tar.gz"
    bare.symlink_to(tarball(backup))
    seal(bare, keypair[0])
    assert verify(bare, keypair[1])[0] == EXIT_OK


def test_t21_a_backup_argument_that_is_a_fifo_is_refused(tmp_path, keypair) -> None:
    fifo = tmp_path / "x.tar.gz"
    os.mkfifo(fifo)
    expect_refusal(EXIT_CANNOT_CHECK, "verify", fifo, "--trust", keypair[1],
                   says=(str(fifo), "is a FIFO, not a backup folder or tarball"))


@pytest.mark.parametrize("kind", ["link-to-copy", "fifo"])
def test_t21_default_seal_that_is_not_a_regular_file_is_refused(backup, keypair, kind) -> None:
    seal(backup, keypair[0])
    name = seal_path(backup).name
    shutil.copy(seal_path(backup), backup.parent / f"copy-of-{name}")
    put(backup, name, kind)
    expect_refusal(EXIT_CANNOT_CHECK, "verify", backup, "--trust", keypair[1],
                   says=(str(seal_path(backup)), WHAT[kind]))
    # The user's own --seal may be a link: it is followed.
    assert verify(backup, keypair[1], "--seal", backup / name)[0] == (
        EXIT_OK if kind == "link-to-copy" else EXIT_CANNOT_CHECK)


# --- T22: files named on the command line: regular, bounded, never waited on ---------------------

def _command_lines(backup: Path, keypair: tuple[Path, Path], bad: Path, proof: Path) -> dict:
    return {
        "inspect": ("inspect", bad),
        "verify-proof": ("verify-proof", bad, "--trust", keypair[1]),
        "--content": ("verify-proof", proof, "--trust", keypair[1], "--content", bad),
        "--trust": ("verify", backup, "--trust", bad),
        "--key": ("seal", backup, "--key", bad, "--replace"),
        "--seal": ("verify", backup, "--trust", keypair[1], "--seal", bad),
        "--bsl": ("verify", "demo-small", "--trust", keypair[1], "--bsl", bad),
        "--sse-c-key": ("verify", "s3://bucket/backups/demo-small", "--trust", keypair[1],
                        "--sse-c-key", bad, "--endpoint-url", "http://127.0.0.1:9"),
        "--ca-bundle": ("verify", "s3://bucket/backups/demo-small", "--trust", keypair[1],
                        "--ca-bundle", bad, "--endpoint-url", "https://127.0.0.1:9"),
    }


@pytest.mark.parametrize("which", ["inspect", "verify-proof", "--content", "--trust", "--key",
                                   "--seal", "--bsl", "--sse-c-key", "--ca-bundle"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_t22_command_line_files_must_be_regular(backup, keypair, tmp_path, which, kind) -> None:
    seal(backup, keypair[0])
    proof = tmp_path / "p.proof"
    assert run("prove", backup, "--resource", SIDECAR, "--with-content", "-o", proof).code == 0
    bad = tmp_path / "bad"
    if kind == "fifo":
        os.mkfifo(bad)
        what = FIFO
    elif kind == "dev-zero":
        bad.symlink_to("/dev/zero")  # the user's link is followed: to a device, refused
        what = "is a character device, not a regular file"
    else:
        bad.mkdir()
        what = "is a directory, not a regular file"
    before = listing(backup)
    start = time.monotonic()
    expect_refusal(EXIT_CANNOT_CHECK, *_command_lines(backup, keypair, bad, proof)[which],
                   says=(str(bad), what))
    assert time.monotonic() - start < 30
    assert listing(backup) == before


@pytest.mark.parametrize("which,cap", [("--trust", 64 * 1024), ("--key", 64 * 1024),
                                       ("verify-proof", MAX_PROOF_FILE_BYTES)])
def test_t22_command_line_files_are_capped(backup, keypair, tmp_path, which, cap) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(cap + 1)  # sparse: costs no disk
    expect_refusal(EXIT_CANNOT_CHECK, *_command_lines(backup, keypair, big, big)[which],
                   says=(str(big), "larger than"))


def _crafted_seal(path: Path, size: int) -> None:
    """A seal head claiming MAX_LEAVES leaves, then zeros (sparse) up to ``size`` bytes."""
    packer = msgpack.Packer(use_bin_type=True)
    head = packer.pack_map_header(5)
    for key, value in (("magic", SEAL_MAGIC), ("version", SEAL_VERSION),
                       ("checkpoint", b"x" * 200), ("signature", bytes(64))):
        head += packer.pack(key) + packer.pack(value)
    head += packer.pack("leaves") + packer.pack_array_header(MAX_LEAVES)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)


@pytest.mark.parametrize("size,says", [(MAX_SEAL_BYTES, "trailing bytes"),
                                       (MAX_SEAL_BYTES + 1, "over the")])
def test_t22_inspect_of_a_crafted_2_gib_seal_stays_small(tmp_path, size, says) -> None:
    crafted = tmp_path / "crafted.seal"
    _crafted_seal(crafted, size)
    # The peak of this process's own memory (VmHWM: ru_maxrss would count the forking parent's).
    probe = (
        "import re, sys\n"
        "from click.testing import CliRunner\n"
        "from merkle_backup.cli import main\n"
        "r = CliRunner().invoke(main, ['inspect', sys.argv[1]], catch_exceptions=False)\n"
        "sys.stderr.write(r.stderr)\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())\n"
        "print(r.exit_code, int(hwm.group(1)) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(crafted)], capture_output=True,
                          text=True, timeout=120)
    code, peak_mib = map(int, done.stdout.split())
    assert code == EXIT_CANNOT_CHECK, done.stderr
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert peak_mib < 150, f"inspect peaked at {peak_mib} MiB"


# --- T23: temporary and disk errors are "could not check", in one line ---------------------------

def test_t23_seal_with_a_full_temporary_folder(backup, keypair, tmp_path, monkeypatch) -> None:
    with tiny_tmpfs(tmp_path / "tmp", "16k") as tmp:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        before = listing(backup)
        expect_refusal(EXIT_CANNOT_CHECK, "seal", backup, "--key", keypair[0],
                       says=(f"temporary file in {tmp}", "No space left on device"))
        assert listing(backup) == before and listing(tmp) == []


def test_t23_seal_with_no_temporary_folder(backup, keypair, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    before = listing(backup)
    expect_refusal(EXIT_CANNOT_CHECK, "seal", backup, "--key", keypair[0],
                   says=(f"temporary file for the seal in {tmp_path / 'gone'}",
                         "No such file or directory"))
    assert listing(backup) == before


@pytest.mark.parametrize("no_tmpfile", [False, True], ids=["o_tmpfile", "named-temporary"])
def test_t23_seal_into_a_full_backup_folder(tmp_path, keypair, monkeypatch, no_tmpfile) -> None:
    if no_tmpfile:
        monkeypatch.setenv("MERKLE_BACKUP_TEST_NO_O_TMPFILE", "1")
    with tiny_tmpfs(tmp_path / "disk", "420k") as disk:
        folder = copy_backup("demo-small", disk)
        before = listing(folder)
        expect_refusal(EXIT_CANNOT_CHECK, "seal", folder, "--key", keypair[0],
                       says=(f"cannot write {seal_path(folder)}", "No space left on device"))
        assert listing(folder) == before  # no seal, no temporary


def _subprocess_cli(*args: object, fsize: int | None = None, env: dict | None = None,
                    **kwargs) -> subprocess.Popen:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.Popen([sys.executable, "-m", "merkle_backup.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit, env={**os.environ, **(env or {})}, **kwargs)


def test_t23_prove_output_over_the_file_size_limit(backup, keypair, tmp_path) -> None:
    seal(backup, keypair[0])
    out = tmp_path / "out"
    out.mkdir()
    child = _subprocess_cli("prove", backup, "--namespace", "monitoring-000", "--with-content",
                            "-o", out / "p.proof", fsize=4096)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == EXIT_CANNOT_CHECK, stderr
    assert stderr.strip() == f"merkle-backup: error: cannot write {out / 'p.proof'}: File too large"
    assert listing(out) == []


# --- T24: writes are create-only and leave nothing behind ---------------------------------------

def test_t24_prove_refuses_an_existing_file_unless_forced(backup, keypair, tmp_path) -> None:
    seal(backup, keypair[0])
    out = tmp_path / "p.proof"
    out.write_bytes(b"mine")
    expect_refusal(EXIT_CANNOT_CHECK, "prove", backup, "--resource", SIDECAR, "-o", out,
                   says=(str(out), "already exists (use --force"))
    assert out.read_bytes() == b"mine"
    assert run("prove", backup, "--resource", SIDECAR, "-o", out, "--force").code == EXIT_OK
    assert run("verify-proof", out, "--trust", keypair[1]).code == EXIT_OK
    assert sorted(os.listdir(tmp_path)) == ["bucket", "p.proof"]


def test_t24_prove_never_writes_over_a_seal(backup, keypair, tmp_path) -> None:
    seal(backup, keypair[0])
    sealed = seal_path(backup).read_bytes()
    other = tmp_path / "other.seal"
    other.write_bytes(sealed)
    link = tmp_path / "link"
    link.symlink_to(seal_path(backup))
    prove = ("prove", backup, "--resource", SIDECAR, "-o")
    for force in ((), ("--force",)):
        for target in (seal_path(backup), link):  # the seal, or a link to it: never
            expect_refusal(EXIT_CANNOT_CHECK, *prove, target, *force,
                           says=(str(target), "is the backup's seal: refusing"))
    expect_refusal(EXIT_CANNOT_CHECK, *prove, other, says=(str(other), "already exists"))
    expect_refusal(EXIT_CANNOT_CHECK, *prove, other, "--force",
                   says=(str(other), "is a seal: refusing"))
    assert seal_path(backup).read_bytes() == sealed and other.read_bytes() == sealed
    # A file named .seal that is not a seal may be overwritten with --force.
    junk = tmp_path / "junk.seal"
    junk.write_bytes(b"not a seal")
    assert run("prove", backup, "--resource", SIDECAR, "-o", junk, "--force").code == EXIT_OK


@pytest.mark.parametrize("mode", ["o_tmpfile", "named-temporary", "replace"])
def test_t24_a_seal_killed_before_it_is_in_place_leaves_nothing(
        backup, keypair, tmp_path, mode) -> None:
    if mode == "replace":
        seal(backup, keypair[0])
    before = listing(backup)
    ready = tmp_path / "ready"
    env = {"MERKLE_BACKUP_TEST_PAUSE_WRITE": str(ready)}
    if mode == "named-temporary":
        env["MERKLE_BACKUP_TEST_NO_O_TMPFILE"] = "1"
    extra = ("--replace",) if mode == "replace" else ()
    child = _subprocess_cli("seal", backup, "--key", keypair[0], *extra, env=env)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the writer never reached the pause"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    left = listing(backup)
    if mode == "named-temporary":
        # The one case with a named temporary: a dot file, counted by no listing, and removed
        # by the next write in the folder.
        strays = [n for n in left if n not in before]
        assert len(strays) == 1 and strays[0].startswith(".") and strays[0].endswith(".merkle-tmp")
        assert run("verify", backup, "--trust", keypair[1]).code == EXIT_CANNOT_CHECK  # no seal
        seal(backup, keypair[0])
        assert listing(backup) == sorted(before + [seal_path(backup).name])
    else:
        assert left == before
        if mode == "o_tmpfile":
            assert run("verify", backup, "--trust", keypair[1]).code == EXIT_CANNOT_CHECK
            seal(backup, keypair[0])
    assert verify(backup, keypair[1])[0] == EXIT_OK


def test_t24_a_killed_writer_never_leaves_a_partial_seal(backup, keypair, tmp_path) -> None:
    """Killed at random moments of a real seal: afterwards the folder holds either no seal or
    a complete one, and never a temporary."""
    before = listing(backup)
    for delay in (0.05, 0.2, 0.4, 0.6, 0.8, 1.0):
        child = _subprocess_cli("seal", backup, "--key", keypair[0], "--replace")
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        left = listing(backup)
        assert left in (before, sorted(before + [seal_path(backup).name])), left
        if seal_path(backup).exists():
            assert verify(backup, keypair[1])[0] == EXIT_OK


def test_t24_keygen_is_create_only(tmp_path) -> None:
    key = tmp_path / "k"
    assert run("keygen", key).code == EXIT_OK
    pem = key.read_bytes()
    expect_refusal(EXIT_CANNOT_CHECK, "keygen", key, says=(str(key), "already exists"))
    assert key.read_bytes() == pem and sorted(os.listdir(tmp_path)) == ["k", "k.pub"]


# --- T25: seal-all decodes an existing seal before calling a backup sealed -----------------------

@pytest.mark.parametrize("broken", ["empty", "garbage", "truncated", "link", "fifo"])
def test_t25_seal_all_reports_a_seal_that_does_not_decode(tmp_path, keypair, broken) -> None:
    folder = copy_backup("demo-small", tmp_path)
    location = tmp_path / "bucket"
    # --backfill: the fixture completed days ago (seal-all leaves old backups unsealed, T70)
    assert run("seal-all", location, "--key", keypair[0], "--backfill").code == EXIT_OK
    target = seal_path(folder)
    good = target.read_bytes()
    target.unlink()
    if broken == "empty":
        target.write_bytes(b"")
    elif broken == "garbage":
        target.write_bytes(b"\x00" * 100)
    elif broken == "truncated":
        target.write_bytes(good[: len(good) // 2])
    elif broken == "link":
        (tmp_path / "elsewhere.seal").write_bytes(good)
        target.symlink_to(tmp_path / "elsewhere.seal")
    else:
        os.mkfifo(target)
    outcome = run("seal-all", location, "--key", keypair[0], "--json")
    assert outcome.code == EXIT_NOT_AUTHENTIC, outcome
    row = outcome.json()["backups"][0]
    assert row["status"] == "tampered" and "existing seal is not a seal" in row["detail"]
    assert outcome.json()["summary"]["tampered"] == 1
    human = run("seal-all", location, "--key", keypair[0])
    assert human.code == EXIT_NOT_AUTHENTIC
    assert human.err.strip() == ("merkle-backup: not authentic: 1 backup(s) have a seal that "
                                 "does not decode")


def test_t25_seal_all_and_audit_report_a_link_under_backups(tmp_path, keypair) -> None:
    copy_backup("demo-small", tmp_path)
    location = tmp_path / "bucket"
    elsewhere = copy_backup("demo-small", tmp_path / "outside")
    (location / "backups" / "planted").symlink_to(elsewhere)
    outcome = run("seal-all", location, "--key", keypair[0], "--json", "--backfill")
    rows = {r["name"]: r for r in outcome.json()["backups"]}
    assert rows["demo-small"]["status"] == "sealed"
    assert rows["planted"]["status"] == "error"
    assert "is a symbolic link, not a backup folder" in rows["planted"]["detail"]
    assert outcome.code == EXIT_CANNOT_CHECK
    assert not seal_path(elsewhere).exists()  # never followed, never sealed
    audit = run("audit", location, "--trust", keypair[1], "--json")
    rows = {r["name"]: r for r in audit.json()["backups"]}
    assert rows["demo-small"]["status"] == "verified"
    assert rows["planted"]["status"] == "error"
    assert "is a symbolic link, not a backup folder" in rows["planted"]["detail"]
    assert audit.code == EXIT_CANNOT_CHECK


def test_t25_a_seals_head_decodes_from_its_first_bytes(backup, keypair) -> None:
    """What seal-all reads of an S3 seal: one ranged GET of its first 8 KiB."""
    import io

    from merkle_backup.errors import FormatError
    from merkle_backup.formats.seal import SEAL_HEAD_PREFIX_BYTES, read_seal_head

    seal(backup, keypair[0])
    data = seal_path(backup).read_bytes()
    whole = read_seal_head(io.BytesIO(data))
    head = read_seal_head(io.BytesIO(data[:SEAL_HEAD_PREFIX_BYTES]), whole=False)
    assert (head.checkpoint, head.signature, head.leaf_count) == (
        whole.checkpoint, whole.signature, whole.leaf_count)
    with pytest.raises(FormatError):
        read_seal_head(io.BytesIO(data[:SEAL_HEAD_PREFIX_BYTES]))  # the whole file is checked
    for cut in (0, 1, 50, len(head.checkpoint)):
        with pytest.raises(FormatError):
            read_seal_head(io.BytesIO(data[:cut]), whole=False)
    leaves_first = msgpack.packb({"leaves": [], "magic": SEAL_MAGIC, "version": SEAL_VERSION,
                                  "checkpoint": head.checkpoint, "signature": head.signature})
    with pytest.raises(FormatError, match="not its last field"):  # version 2: leaves last (§7.1)
        read_seal_head(io.BytesIO(leaves_first))
    with pytest.raises(FormatError, match="not its last field"):
        read_seal_head(io.BytesIO(leaves_first), whole=False)
    # Version 1 allows any order of its keys for the whole file (the v1 fixture's checkpoint).
    v1 = read_seal_head(io.BytesIO((Path(__file__).parent / "fixtures" / "seals" /
                                    "demo-small-v1.seal").read_bytes()))
    v1_leaves_first = msgpack.packb({"leaves": [], "magic": SEAL_MAGIC, "version": 1,
                                     "checkpoint": v1.checkpoint, "signature": v1.signature})
    read_seal_head(io.BytesIO(v1_leaves_first))  # a valid (if unusual) order for the whole file
    with pytest.raises(FormatError, match="not its last field"):
        read_seal_head(io.BytesIO(v1_leaves_first), whole=False)
