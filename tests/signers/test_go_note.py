"""Go's golang.org/x/mod/sumdb/note, an independent reader, verifies the seals each signer made
(docs/format.md §6 compatibility note: a checkpoint and its signature lines are a C2SP signed
note), and a seal signed by two keys of two different backends (overlap rotation). The signed
bytes are the same whatever the backend: pure Ed25519 over the checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from merkle_backup.formats.seal import decode_seal
from merkle_backup.signing import load_public_key
from merkle_backup.tlog import note as notes
from merkle_backup.tlog.entries import NOTE_NAME
from tests.cli import run
from tests.signers.conftest import kms_key
from tests.signers.transit import TOKEN, TransitStandIn

TOOL = Path(__file__).parent.parent / "tools" / "notecheck"
SEAL = "demo-small-merkle.seal"


@pytest.fixture(scope="module")
def notecheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("go") is None or not Path("/usr/share/gocode/src/golang.org/x/mod/sumdb/note").is_dir():
        pytest.skip("needs go and golang-golang-x-mod-dev")
    out = tmp_path_factory.mktemp("go") / "notecheck"
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", CGO_ENABLED="0",
               GOCACHE=str(out.parent / "cache"), GOPROXY="off")
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=TOOL, env=env, check=True)
    return out


def seal_note(backup: Path, refs: list[str], tmp_path: Path) -> tuple[Path, list[str]]:
    """Seal with ``refs``; the seal as a signed note, and each key's vkey (from `pubkey`)."""
    args = [a for ref in refs for a in ("--key", ref)]
    code, _, err = run("seal", backup, *args, "--max-age", "1e6", "--replace")
    assert code == 0, err
    seal = decode_seal((backup / SEAL).read_bytes())
    vkeys = []
    lines = []
    for ref, signature in zip(refs, seal.signatures, strict=True):
        code, out, err = run("pubkey", ref, "--vkey", NOTE_NAME)
        assert code == 0, err
        vkeys.append(out.strip())
        pub = tmp_path / f"k{len(vkeys)}.pub"
        assert run("pubkey", ref, "-o", pub)[0] == 0
        lines.append(notes.Signature(NOTE_NAME, notes.key_hash(
            NOTE_NAME, notes.ALG_ED25519, load_public_key(pub).raw), signature))
    path = tmp_path / "seal.note"
    path.write_bytes(notes.Note(seal.checkpoint, tuple(lines)).encode())
    return path, vkeys


def go_opens(notecheck: Path, note: Path, vkeys: list[str]) -> dict:
    done = subprocess.run([notecheck, note, *vkeys], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check_one(notecheck: Path, backup: Path, ref: str, tmp_path: Path) -> None:
    note, vkeys = seal_note(backup, [ref], tmp_path)
    out = go_opens(notecheck, note, vkeys)
    assert out["text"].startswith("merkle-backup/checkpoint/v2\n")
    assert len(out["verified"]) == 1
    # A flipped byte of the checkpoint: Go refuses it.
    data = note.read_bytes()
    note.write_bytes(data.replace(b"tree-size ", b"tree-size 1", 1))
    assert subprocess.run([notecheck, note, *vkeys], capture_output=True).returncode == 1


def test_go_file_key(notecheck, backup, keypair, tmp_path) -> None:
    check_one(notecheck, backup, str(keypair[0]), tmp_path)


def test_go_ssh_agent(notecheck, backup, ssh_agent, tmp_path) -> None:
    check_one(notecheck, backup, ssh_agent.ref, tmp_path)


def test_go_pkcs11(notecheck, backup, softhsm, tmp_path) -> None:
    check_one(notecheck, backup, softhsm.ref(), tmp_path)


def test_go_awskms(notecheck, backup, kms_env, tmp_path) -> None:
    kms_key(kms_env, "mb-go")
    check_one(notecheck, backup, "awskms:///alias/mb-go", tmp_path)


def test_go_vault_transit_stand_in(notecheck, backup, tmp_path, monkeypatch) -> None:
    server = TransitStandIn()
    try:
        monkeypatch.setenv("VAULT_ADDR", server.addr)
        monkeypatch.setenv("VAULT_TOKEN", TOKEN)
        check_one(notecheck, backup, "hashivault://seal", tmp_path)
    finally:
        server.close()


def test_go_openbao(notecheck, backup, openbao, tmp_path, monkeypatch) -> None:
    openbao.run("write", "-f", "transit/keys/mb-go", "type=ed25519")
    monkeypatch.setenv("BAO_ADDR", openbao.addr)
    monkeypatch.setenv("BAO_TOKEN", openbao.token)
    check_one(notecheck, backup, "openbao://mb-go", tmp_path)


def test_go_two_keys_of_two_backends(notecheck, backup, keypair, ssh_agent, tmp_path) -> None:
    """Overlap rotation from a key file to an agent-held key: Go verifies both signature lines,
    and the note opens with either key alone (a verifier that knows one of them)."""
    note, vkeys = seal_note(backup, [str(keypair[0]), ssh_agent.ref], tmp_path)
    out = go_opens(notecheck, note, vkeys)
    assert out["text"].startswith("merkle-backup/checkpoint/v3\n")
    assert len(out["verified"]) == 2
    for one in vkeys:
        assert len(go_opens(notecheck, note, [one])["verified"]) == 1
