"""SIGINT and closed pipes never change a verdict into another (docs/threat-model.md T31, T32).

Real subprocesses of the console entry point (``merkle_backup._entry``, what ``merkle-backup``
runs). SIGINT is sent at chosen moments: pending from exec (blocked by the launcher, so it lands
on the first line of our code, during the imports), at spread-out times after spawn, mid-verify
of a generated backup of 40,000 leaves (once the tarball is open), and mid-audit over many
backups. Every outcome is exit 130 with the one line ``merkle-backup: interrupted``, or the
command's own result when it had already finished; never a traceback.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.attacks.helpers import run, seal, tarball
from tests.conftest import copy_backup
from tests.storage.server import clone_backup

ENTRY = [sys.executable, "-c", "from merkle_backup._entry import main; main()"]
INTERRUPTED = "merkle-backup: interrupted\n"


def _spawn(args: list[str], *, block_sigint: bool = False, **kwargs) -> subprocess.Popen:
    def block() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    return subprocess.Popen([*ENTRY, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=block if block_sigint else None,
                            **kwargs)


def _assert_interrupted(proc: subprocess.Popen, timeout: float = 10) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert err.decode() == INTERRUPTED, err
    assert b"Traceback" not in out
    return out.decode(), err.decode()


def _wait_for_open(proc: subprocess.Popen, suffix: str, timeout: float = 30) -> None:
    """Until the process holds a file ending in ``suffix`` open (it is mid-pass)."""
    deadline = time.monotonic() + timeout
    fds = Path(f"/proc/{proc.pid}/fd")
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            for fd in fds.iterdir():
                try:
                    if os.readlink(fd).endswith(suffix):
                        return
                except OSError:
                    continue
        except OSError:
            pass
        time.sleep(0.002)
    pytest.fail(f"the process never opened a {suffix}")


@pytest.fixture(scope="session")
def big(tmp_path_factory: pytest.TempPathFactory, keypair: tuple[Path, Path]) -> Path:
    """A generated backup of 20,000 items (40,009 leaves), sealed: verify takes about a second."""
    from bench.generate import generate

    info = generate(20000, "small", cache=tmp_path_factory.mktemp("generated"))
    folder = Path(info["unchanged"])
    seal(folder, keypair[0])
    return folder


# -- SIGINT ------------------------------------------------------------------------------------

def test_sigint_pending_from_exec_lands_during_the_imports(keypair: tuple[Path, Path]) -> None:
    """The launcher blocks SIGINT and sends it before the interpreter even starts: it is
    delivered on the entry module's first line, before click and the rest are imported."""
    proc = _spawn(["verify", "/nonexistent", "--trust", keypair[1]], block_sigint=True)
    proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc)


@pytest.mark.parametrize("delay_ms", [0, 20, 50, 100, 200, 400])
def test_sigint_soon_after_spawn(keypair: tuple[Path, Path], tmp_path: Path, delay_ms: int) -> None:
    """At spread-out moments of start-up (imports, option parsing, the command). SIGINT is
    blocked across exec, as a launcher that wants no window does (the interpreter's own start
    is not ours: see _entry.py); from there on nothing is blocked."""
    folder = copy_backup("demo-small", tmp_path)
    proc = _spawn(["seal", folder, "--key", keypair[0], "--max-age", "1e6"], block_sigint=True)
    time.sleep(delay_ms / 1000)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err and b"Aborted" not in err, err
    if proc.returncode == 0:  # it had already sealed: its own verdict
        assert err == b"", err
        return
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.decode() == INTERRUPTED


def test_sigint_mid_verify(big: Path, keypair: tuple[Path, Path]) -> None:
    proc = _spawn(["verify", big, "--trust", keypair[1]])
    _wait_for_open(proc, ".tar.gz")
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, _ = _assert_interrupted(proc)
    assert time.monotonic() - started < 3
    assert "VERIFIED" not in out


def test_sigint_mid_seal_writes_no_seal(big: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    seal_file = tmp_path / "interrupted.seal"
    proc = _spawn(["seal", big, "--key", keypair[0], "--seal", seal_file])
    _wait_for_open(proc, ".tar.gz")
    proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc)
    assert not seal_file.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".interrupted")]


def test_a_second_sigint_exits_at_once(big: Path, keypair: tuple[Path, Path]) -> None:
    proc = _spawn(["verify", big, "--trust", keypair[1]])
    _wait_for_open(proc, ".tar.gz")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc)


@pytest.fixture(scope="session")
def many(tmp_path_factory: pytest.TempPathFactory, keypair: tuple[Path, Path]) -> Path:
    """A location with 24 sealed backups (clones of demo-small)."""
    from tests.conftest import FIXTURES

    root = tmp_path_factory.mktemp("many")
    for i in range(24):
        clone_backup(FIXTURES / "demo-small", root / "backups", f"nightly-{i:02d}")
    outcome = run("seal-all", root, "--key", keypair[0], "--jobs", "2")
    assert outcome.code == 0, outcome.err
    return root


@pytest.mark.parametrize("command", ["audit", "seal-all"])
def test_sigint_mid_audit_prints_the_rows_it_has(
        many: Path, keypair: tuple[Path, Path], tmp_path: Path, command: str) -> None:
    location = many
    if command == "seal-all":  # unsealed copies, so that there is sealing to interrupt
        location = tmp_path / "location"
        shutil.copytree(many, location)
        for seal_file in location.glob("backups/*/*-merkle.seal"):
            seal_file.unlink()
        args = [command, location, "--key", keypair[0], "--jobs", "2"]
    else:
        args = [command, location, "--trust", keypair[1], "--jobs", "2"]
    proc = _spawn(args)
    _wait_for_open(proc, ".tar.gz")
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, _ = _assert_interrupted(proc)
    assert time.monotonic() - started < 4  # the running ones finish or are abandoned
    lines = out.splitlines()
    assert lines[0].split() == ["BACKUP", "STATUS", "DETAIL"], out
    rows = [line for line in lines[1:] if line.startswith("nightly-")]
    status = "verified" if command == "audit" else "sealed"
    assert rows and all(line.split()[1] == status for line in rows), out
    note = [line for line in lines if line.startswith("note: interrupted: ")]
    assert note and f"of 24 backup(s) not done" in note[0], out
    assert int(note[0].split()[2]) == 24 - len(rows)


def test_fleet_interrupt_keeps_finished_rows_in_process(many: Path, keypair: tuple[Path, Path]) -> None:
    """The library: an interrupt (here KeyboardInterrupt from a job's caller) raises
    Interrupted with the rows done; pending backups are cancelled."""
    from merkle_backup.errors import Interrupted
    from merkle_backup.fleet import sweep as fleet
    from merkle_backup.signing import load_public_key
    from merkle_backup.storage.options import ConnectionOptions
    from merkle_backup.storage.resolve import open_location

    location = open_location(str(many), ConnectionOptions())
    calls: list[str] = []
    original = fleet._audit_one

    def audit_one(loc, name, trusted, limits):
        calls.append(name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return original(loc, name, trusted, limits)

    fleet._audit_one = audit_one
    try:
        with pytest.raises(Interrupted) as caught:
            fleet.audit(location, [load_public_key(keypair[1])], jobs=1)
    finally:
        fleet._audit_one = original
    report = caught.value.partial
    assert [row.name for row in report.backups] == [f"nightly-{i:02d}" for i in range(4)]
    assert report.notes == ("interrupted: 20 of 24 backup(s) not done",)


# -- closed pipes --------------------------------------------------------------------------------

@pytest.fixture
def proof(tmp_path: Path, keypair: tuple[Path, Path]) -> Path:
    folder = copy_backup("demo-small", tmp_path)
    seal(folder, keypair[0])
    out = tmp_path / "ns.proof"
    outcome = run("prove", folder, "--namespace", "payments-001", "--trust", keypair[1], "-o", out)
    assert outcome.code == 0, outcome.err
    return out


def _with_closed_stdout(args: list) -> tuple[int, bytes]:
    """The reader is gone before the first byte is written (as after ``| head -c0``)."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.Popen([*ENTRY, *map(str, args)], stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_closed_stdout_keeps_the_verdict(proof: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    code, err = _with_closed_stdout(["verify-proof", proof, "--trust", keypair[1]])
    assert (code, err) == (0, b"")
    folder = proof.parent / "bucket" / "backups" / "demo-small"
    assert _with_closed_stdout(["verify", folder, "--trust", keypair[1]]) == (0, b"")
    assert _with_closed_stdout(["verify", folder, "--trust", keypair[1], "--json"]) == (0, b"")
    tarball(folder).write_bytes(tarball(folder).read_bytes()[:-100])  # truncated: not authentic
    code, err = _with_closed_stdout(["verify", folder, "--trust", keypair[1]])
    assert code == 1 and b"Traceback" not in err and err.count(b"\n") <= 1, err


@pytest.mark.parametrize("consumer, expected", [
    ("head -c1 >/dev/null", 0),
    ("grep -q VERIFIED", 0),
    ("grep -q 'NOT AUTHENTIC'", 1),  # grep fails: pipefail reports grep's 1, as it should
])
def test_pipelines_under_pipefail(proof: Path, keypair: tuple[Path, Path], consumer: str,
                                  expected: int) -> None:
    bash = shutil.which("bash")
    if bash is None:  # pragma: no cover
        pytest.skip("no bash")
    entry = " ".join(f"'{part}'" for part in ENTRY)
    script = (f"set -o pipefail; {entry} verify-proof '{proof}' --trust '{keypair[1]}' | {consumer}")
    proc = subprocess.run([bash, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == expected, proc.stderr
    assert b"Traceback" not in proc.stderr and b"Broken pipe" not in proc.stderr, proc.stderr


def test_the_entry_point_exit_code_is_the_error_classes_one() -> None:
    """_entry writes 130 out (it imports nothing of ours before its handler is in place)."""
    from merkle_backup import _entry
    from merkle_backup.errors import ExitCode, Interrupted

    assert _entry.EXIT_INTERRUPTED == ExitCode.INTERRUPTED == Interrupted.exit_code


def test_interrupt_raised_where_python_ignores_it_is_delivered_again() -> None:
    """A first SIGINT that lands in a destructor or a callback (an import lock's weakref
    callback, seen once under load in test_sigint_soon_after_spawn) would be printed as
    "Exception ignored" with its traceback while the run went on: _entry's unraisable hook
    delivers it again at the next point where it can be raised."""
    code = (
        "import time\n"
        "from merkle_backup import _entry\n"
        "from merkle_backup.errors import Interrupted\n"
        "_entry._state['armed'] = True\n"
        "_entry._state['interrupts'] = 1  # as _on_sigint counted it before raising\n"
        "class Dropped:\n"
        "    def __del__(self):\n"
        "        raise Interrupted()\n"
        "try:\n"
        "    Dropped()\n"
        "    for _ in range(2000):\n"
        "        time.sleep(0.001)\n"
        "    print('went on')\n"
        "except Interrupted:\n"
        "    print('interrupted', _entry._state['interrupts'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stdout == b"interrupted 1\n", done.stdout + done.stderr
    assert b"Traceback" not in done.stderr and b"ignored" not in done.stderr, done.stderr
