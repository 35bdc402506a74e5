"""Attacker-controlled text never reaches a terminal raw (docs/threat-model.md T30).

``display.shown`` itself, then the real CLI: in a real pseudo-terminal (pty.openpty, the CLI in
a subprocess) on a sealed backup whose tarball gained an entry, and whose bucket folder gained
an object, named with ESC sequences that would erase the verdict line and print a forged
"VERIFIED", and a newline; then the error funnel, the audit table and --json.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from merkle_backup.display import shown
from tests import tamper
from tests.attacks.helpers import run, seal, tarball
from tests.conftest import copy_backup

FORGED = "\x1b[1A\x1b[2K VERIFIED: backup demo-small, whole backup\n"
EVIL_TAR_PATH = f"resources/configmaps/namespaces/payments-001/{FORGED}x.json"
EVIL_OBJECT = f"{FORGED}\r\x1b]0;owned\x07\u202eevil.json"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


# -- shown ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, escaped", [
    ("plain/path-1.json", "plain/path-1.json"),
    ("a\\b", "a\\\\b"),
    ("\x1b[2K", "\\x1b[2K"),
    ("a\nb\rc\td", "a\\nb\\rc\\td"),
    ("\x00\x07\x7f", "\\x00\\x07\\x7f"),
    ("\x85\x9b\x9f", "\\x85\\x9b\\x9f"),                 # C1 controls (NEL, CSI)
    ("bad\udcffbyte", "bad\\xffbyte"),                    # surrogateescape'd byte 0xff
    ("\ud800", "\\ud800"),                                # another lone surrogate
    ("\u202eexe.json", "\\u202eexe.json"),                # right-to-left override
    ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("caf\u00e9 \u6771\u4eac", "caf\u00e9 \u6771\u4eac"),  # printable Unicode stays
    ("\U000e0001tag", "\\U000e0001tag"),                  # a format character outside the BMP
])
def test_shown_escapes_visibly(raw: str, escaped: str) -> None:
    assert shown(raw) == escaped


def test_shown_escapes_every_bidi_control() -> None:
    assert shown(BIDI) == "".join(f"\\u{ord(c):04x}" for c in BIDI)


def test_shown_of_a_non_string() -> None:
    assert shown(Path("a\nb")) == "a\\nb"
    assert shown(3) == "3"


_DANGEROUS = {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)} | set(BIDI)


@given(st.text(alphabet=st.characters(), max_size=40))
@example("\\x1b")  # a literal backslash-x: must not read back as ESC
@example("\udcff\\xff")
def test_shown_is_safe_and_unambiguous(text: str) -> None:
    out = shown(text)
    assert not (set(out) & _DANGEROUS)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in out)
    out.encode("utf-8")  # always encodable: nothing for a terminal to choke on
    # Unambiguous: the escaping is injective (a different input never looks the same).
    assert shown(text + "\\") != shown(text + "\\\\")
    if "\\" not in text and not (set(text) & _DANGEROUS):
        assert out == text or any(ord(c) > 0x7E for c in text)


# -- a crafted backup through a real terminal ------------------------------------------------------

@pytest.fixture
def crafted(tmp_path: Path, keypair: tuple[Path, Path]) -> Path:
    """demo-small sealed, then given a tar entry and a bucket object with hostile names."""
    folder = copy_backup("demo-small", tmp_path)
    seal(folder, keypair[0])
    tamper.rewrite(tarball(folder), lambda entries: entries + [(EVIL_TAR_PATH, b"{}")])
    (folder / EVIL_OBJECT).write_bytes(b"{}")
    return folder


def _through_pty(args: list[str], timeout: float = 60, *, stream: str = "stdout") -> tuple[int, bytes]:
    """Run the CLI with ``stream`` (stdout or stderr) on a pty, the other one on /dev/null:
    every byte the terminal received."""
    master, slave = pty.openpty()
    tty = {"stdout": slave, "stderr": subprocess.DEVNULL}
    if stream == "stderr":
        tty = {"stdout": subprocess.DEVNULL, "stderr": slave}
    proc = subprocess.Popen([sys.executable, "-m", "merkle_backup.cli", *args],
                            stdin=slave, close_fds=True, **tty)
    os.close(slave)
    captured = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                captured += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:  # pragma: no cover - only when the test fails
            proc.kill()
    return code, captured


def _assert_terminal_safe(captured: bytes) -> list[bytes]:
    assert b"\x1b" not in captured, captured
    decoded = captured.decode("utf-8", "replace")
    assert not any(ord(c) < 0x20 and c not in "\r\n" or 0x7F <= ord(c) <= 0x9F for c in decoded)
    text = captured.replace(b"\r\n", b"\n")  # the pty's own line ending (onlcr)
    assert b"\r" not in text, captured
    assert "\u202e".encode() not in captured
    lines = text.split(b"\n")
    # The forged verdict never starts a line; it is shown inside the failure's path, escaped.
    assert not any(line.lstrip().startswith(b"VERIFIED") for line in lines), captured
    return lines


def test_report_in_a_real_terminal_shows_hostile_names_escaped(
        crafted: Path, keypair: tuple[Path, Path]) -> None:
    code, captured = _through_pty(["verify", str(crafted), "--trust", str(keypair[1])])
    assert code == 1, captured
    lines = _assert_terminal_safe(captured)
    assert lines[0].startswith(b"NOT AUTHENTIC: backup demo-small"), captured
    assert shown(EVIL_TAR_PATH).encode() in captured
    assert shown(EVIL_OBJECT).encode() in captured
    assert b"\\x1b[1A\\x1b[2K VERIFIED" in captured  # visible, harmless
    assert b"Traceback" not in captured


def test_error_line_in_a_real_terminal_is_escaped(crafted: Path, keypair: tuple[Path, Path]) -> None:
    """The funnel's one line on a terminal (stderr, where seal also draws its progress bar: our
    own escape sequences): e.diagnostics() names the attacker's entry, which the sealer
    refuses."""
    code, captured = _through_pty(["seal", str(crafted), "--key", str(keypair[0]), "--replace"],
                                  stream="stderr")
    assert code == 3, captured
    for raw in (b"\x1b[1A", b"\x1b[2K", b"\x1b]0;", b"\x07", "\u202e".encode()):
        assert raw not in captured, captured
    last = captured.replace(b"\r\n", b"\n").rstrip(b"\n").rsplit(b"\n", 1)[-1]
    line = last.rsplit(b"\r", 1)[-1].split(b"\x1b[?25h")[-1]  # past the bar's last redraw
    assert line.startswith(b"merkle-backup: error: "), captured
    assert b"x1b[1A" in line and b"VERIFIED: backup demo-small" in line, line  # shown, inert


def test_json_stays_exact(crafted: Path, keypair: tuple[Path, Path]) -> None:
    outcome = run("verify", crafted, "--trust", keypair[1], "--json")
    assert outcome.code == 1
    report = json.loads(outcome.out)
    paths = {f["path"] for f in report["failures"]}
    assert EVIL_OBJECT in paths  # exactly the attacker's name, not an escaped form
    assert any(FORGED in p for p in paths)
    assert "\x1b" not in outcome.out  # json.dumps escaped it


def test_audit_table_escapes_names_and_details(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    """A folder under backups/ is the bucket's too: its name and the row's detail are escaped."""
    folder = copy_backup("demo-small", tmp_path)
    seal(folder, keypair[0])
    tamper.rewrite(tarball(folder), lambda entries: entries + [(EVIL_TAR_PATH, b"{}")])
    (folder.parent / "x\x1b[2K\nVERIFIED").mkdir()
    outcome = run("audit", folder.parent.parent, "--trust", keypair[1])
    assert outcome.code == 1
    assert "\x1b" not in outcome.out and "\x1b" not in outcome.err
    assert not any(line.startswith("VERIFIED") for line in outcome.out.splitlines())
    assert "x\\x1b[2K\\nVERIFIED" in outcome.out
    assert shown(EVIL_TAR_PATH) in outcome.out


def test_inspect_escapes_what_an_unverified_seal_claims(tmp_path: Path) -> None:
    """inspect prints a seal nobody verified: its namespaces come from leaf records the
    attacker wrote (here a forged seal signed by the attacker's own key)."""
    from datetime import datetime, timezone

    from merkle_backup.builder import seal_backup
    from merkle_backup.signing import generate_keypair, load_private_key
    from merkle_backup.storage.local import LocalBackup

    folder = copy_backup("demo-small", tmp_path)
    key, _ = generate_keypair(tmp_path / "attacker.key")
    evil = "resources/configmaps/namespaces/a\u202eb/x.json"
    tamper.rewrite(tarball(folder), lambda entries: entries + [(evil, b"{}")])
    try:
        seal_backup(LocalBackup(folder), load_private_key(key),
                    created_at=datetime.now(timezone.utc), force=True)
    except Exception as e:  # the sealer refuses such a namespace: then there is nothing to show
        pytest.skip(f"the sealer refuses the name: {e}")
    outcome = run("inspect", folder / "demo-small-merkle.seal")
    assert "\u202e" not in outcome.out and "a\\u202eb" in outcome.out
