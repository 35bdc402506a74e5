"""Progress as a new user sees it (issue 15): on stderr, only on a terminal, a bar or a line for
every pass that takes time, each with its own total (merkle_backup/progress.py), and a running
count for audit and seal-all. The CLI runs in a subprocess with stderr on a real pty
(tests/test_hostile_terminal.py's helper); off a terminal nothing is drawn at all."""

from __future__ import annotations

import gzip
import re
from datetime import datetime, timezone
from pathlib import Path

from merkle_backup.progress import listens, phase
from tests.attacks.helpers import run, seal, tarball
from tests.test_hostile_terminal import _through_pty


def terminal_text(captured: bytes) -> str:
    return captured.decode("utf-8", "replace").replace("\r\n", "\n")


def labels(text: str, command: str) -> list[str]:
    """The passes shown, in order (each bar redraws its label; a line of unknown length once)."""
    found: list[str] = []
    for m in re.finditer(rf"{command}: ([a-z][a-z ,()0-9]*?)(?:  | \.\.\.|\s*\[)", text):
        if not found or found[-1] != m[1]:
            found.append(m[1])
    return found


def test_seal_shows_every_pass_on_a_terminal(backup: Path, keypair) -> None:
    code, captured = _through_pty(["seal", str(backup), "--key", str(keypair[0])], stream="stderr")
    assert code == 0, captured
    text = terminal_text(captured)
    size = (backup / "demo-small-merkle.seal").stat().st_size
    assert labels(text, "seal") == ["reading and hashing the tarball",
                                    "sorting, hashing and signing 330 leaves",
                                    f"writing the seal ({size} bytes)"]
    assert "100%" in text  # the tarball's bar ends at its true total
    assert re.search(r"sorting, hashing and signing 330 leaves \.\.\. \d+\.\d s\n", text)
    assert re.search(r"writing the seal \(\d+ bytes\) \.\.\. \d+\.\d s\n", text)


def test_verify_of_a_recompressed_archive_shows_both_passes(backup: Path, keypair) -> None:
    seal(backup, keypair[0])
    raw = gzip.decompress(tarball(backup).read_bytes())
    tarball(backup).write_bytes(gzip.compress(raw, compresslevel=1))  # same entries, new bytes
    code, captured = _through_pty(["verify", str(backup), "--trust", str(keypair[1])],
                                  stream="stderr")
    assert code == 0, captured
    text = terminal_text(captured)
    assert labels(text, "verify") == ["hashing the tarball",
                                      "reading the seal, checking its table",
                                      "checking entry by entry"]
    assert text.count("100%") >= 2  # the two passes over the tarball reach their own totals
    assert re.search(r"reading the seal, checking its table \.\.\. \d+\.\d s\n", text)


def test_audit_shows_a_running_count_on_a_terminal(backup: Path, keypair) -> None:
    seal(backup, keypair[0])
    bucket = backup.parent.parent
    code, captured = _through_pty(["audit", str(bucket), "--trust", str(keypair[1])],
                                  stream="stderr")
    assert code == 0, captured
    assert "audit: 1/1 backups (1 verified); last: demo-small" in terminal_text(captured)


def test_seal_all_shows_a_running_count_on_a_terminal(backup: Path, keypair) -> None:
    bucket = backup.parent.parent
    code, captured = _through_pty(["seal-all", str(bucket), "--key", str(keypair[0]),
                                   "--backfill"],  # the fixture completed days ago (T70)
                                  stream="stderr")
    assert code == 0, captured
    assert "seal-all: 1/1 backups (1 sealed); last: demo-small" in terminal_text(captured)


def test_nothing_is_drawn_off_a_terminal(backup: Path, keypair) -> None:
    done = run("seal", backup, "--key", keypair[0], "--max-age", "1e6")  # the fixture is old: no warning
    assert done.code == 0 and done.err == ""
    done = run("verify", backup, "--trust", keypair[1])
    assert done.code == 0 and done.err == ""
    done = run("audit", backup.parent.parent, "--trust", keypair[1])
    assert done.code == 0 and done.err == ""


def test_a_plain_callable_is_told_only_of_the_tarball(backup: Path, keypair) -> None:
    """The protocol's default is unchanged: a function without ``phase`` counts the tarball's
    bytes once, as before; one with ``phase`` is told of every pass, with its total."""
    from merkle_backup.builder import seal_backup
    from merkle_backup.signing import load_private_key, load_public_key
    from merkle_backup.storage.local import LocalBackup
    from merkle_backup.verifier import verify_backup

    size = tarball(backup).stat().st_size
    plain: list[int] = []
    seal_backup(LocalBackup(backup), load_private_key(keypair[0]),
                created_at=datetime.now(timezone.utc), progress=plain.append)
    assert sum(plain) == size

    class Phases:
        def __init__(self) -> None:
            self.passes: list[tuple[str, int | None, int]] = []

        def __call__(self, n: int) -> None:
            name, total, done = self.passes[-1]
            self.passes[-1] = (name, total, done + n)

        def phase(self, name: str, total: int | None) -> None:
            self.passes.append((name, total, 0))

    tarball(backup).write_bytes(gzip.compress(gzip.decompress(tarball(backup).read_bytes()), 1))
    watched = Phases()
    assert listens(watched) and not listens(plain.append)
    report = verify_backup(LocalBackup(backup), [load_public_key(keypair[1])], progress=watched)
    assert report.verified
    names = [p[0] for p in watched.passes]
    assert names == ["hashing the tarball", "reading the seal, checking its table",
                     "checking entry by entry"]
    hashing, table_check, entries = watched.passes
    # The table's pass has no byte total (its leaf section is read once, twice or only hashed)
    # and counts nothing; each pass over the tarball counts exactly its bytes.
    assert table_check[1:] == (None, 0)
    for name, total, done in (hashing, entries):
        assert total is not None and done == total, (name, total, done)


def test_phase_with_no_listener_is_a_no_op() -> None:
    assert not listens(None) and not listens(print)
    assert phase(None, "nothing listens", 1) is None  # a no-op, never an error
