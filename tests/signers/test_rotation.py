"""Overlap rotation (docs/format.md §5.4, §6.3, §7.5, §11.1; docs/threat-model.md S4, S5):
`seal --key A --key B` writes a version-3 seal that either key verifies, a verifier names the
key that did, a trust file bounds a retired key, and old verifiers refuse version 3 cleanly."""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone
from pathlib import Path

import msgpack
import pytest

from merkle_backup.core.checkpoint import CheckpointError, parse_checkpoint
from merkle_backup.errors import FormatError, KeyFileError, NotAuthentic
from merkle_backup.formats.seal import (
    SEAL_MAGIC,
    SealFile,
    check_envelope,
    decode_seal,
    encode_seal,
    read_seal_head,
)
from merkle_backup.signing import generate_keypair, load_private_key, load_public_key, sign
from merkle_backup.tlog import note as notes
from merkle_backup.tlog.log import Log, LogState
from merkle_backup.tlog.store import LocalLogStore
from merkle_backup.trustfile import HEADER, load_trusted, parse_trust_file
from tests.cli import run

SEAL = "demo-small-merkle.seal"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("rotation")
    return {n: generate_keypair(folder / f"{n}.key") for n in ("old", "new", "attacker")}


def vkey(pub: Path, name: str) -> str:
    return notes.vkey(name, load_public_key(pub).raw)


def trust_file(path: Path, *lines: str) -> Path:
    path.write_text("\n".join([HEADER, "# test", *lines]) + "\n")
    return path


def sealed_twice(backup: Path, keys) -> Path:
    code, out, err = run("seal", backup, "--key", keys["old"][0], "--key", keys["new"][0],
                         "--max-age", "1e6")
    assert code == 0, err
    return backup / SEAL


def test_two_keys_make_a_version_3_seal_either_key_verifies(backup: Path, keys) -> None:
    seal = decode_seal(sealed_twice(backup, keys).read_bytes())
    cp = parse_checkpoint(seal.checkpoint)
    assert cp.version == 3 and seal.checkpoint.startswith(b"merkle-backup/checkpoint/v3\n")
    old, new = load_public_key(keys["old"][1]), load_public_key(keys["new"][1])
    assert cp.key_ids == (old.key_id, new.key_id)
    assert seal.checkpoint.count(b"\nkey ") == 2
    old.verify(seal.signatures[0], seal.checkpoint)
    new.verify(seal.signatures[1], seal.checkpoint)
    for pub in (keys["old"][1], keys["new"][1]):
        code, out, err = run("verify", backup, "--trust", pub)
        assert code == 0, err
        assert f"signed by key {load_public_key(pub).key_id.hex()[:16]}" in out
    code, _, _ = run("verify", backup, "--trust", keys["attacker"][1])
    assert code == 1


def test_one_key_still_writes_version_2(backup: Path, keys) -> None:
    code, _, err = run("seal", backup, "--key", keys["old"][0], "--max-age", "1e6")
    assert code == 0, err
    head = read_seal_head(io.BytesIO((backup / SEAL).read_bytes()))
    assert head.version == 2 and head.co_signatures == ()


def test_old_verifiers_refuse_version_3_cleanly(backup: Path, keys) -> None:
    """A reader of versions 1 and 2 (every release before this one) meets "version 3 is not
    supported": a could-not-check, never a wrong verdict."""
    obj = msgpack.unpackb(sealed_twice(backup, keys).read_bytes())
    with pytest.raises(FormatError, match=r"version 3 is not supported \(this tool reads 1 and 2\)"):
        check_envelope(obj, what="seal file", magic=SEAL_MAGIC, version=(1, 2),
                       keys=frozenset({"magic", "version", "checkpoint", "signature", "leaves"}))


def test_s5_signatures_swapped_dropped_or_replaced(backup: Path, keys) -> None:
    """Each signature belongs to the key line at its place: swapped signatures name another
    key (exit 1); a version-3 seal with one signature, or a signature by a key the checkpoint
    does not name in its place, is refused."""
    path = sealed_twice(backup, keys)
    seal = decode_seal(path.read_bytes())
    swapped = SealFile(seal.checkpoint, seal.co_signatures[0], seal.leaves,
                       co_signatures=(seal.signature,))
    path.write_bytes(encode_seal(swapped))
    code, _, err = run("verify", backup, "--trust", keys["new"][1])
    assert code == 1 and "names another key" in err, err
    obj = msgpack.unpackb(encode_seal(seal))
    obj["signatures"] = obj["signatures"][:1]
    path.write_bytes(msgpack.packb(obj))
    code, _, err = run("verify", backup, "--trust", keys["old"][1])
    assert code == 3 and "signatures must be a list of 2 to 8" in err, err
    # The attacker signs the very checkpoint and puts its signature in the new key's place.
    forged = sign(load_private_key(keys["attacker"][0]), seal.checkpoint)
    path.write_bytes(encode_seal(SealFile(seal.checkpoint, seal.signature, seal.leaves,
                                          co_signatures=(forged,))))
    code, _, err = run("verify", backup, "--trust", keys["attacker"][1])
    assert code == 1 and "names another key" in err, err
    code, _, err = run("verify", backup, "--trust", keys["old"][1])  # the old key's still holds
    assert code == 0, err


def test_checkpoint_version_3_parses_exactly(backup: Path, keys) -> None:
    text = decode_seal(sealed_twice(backup, keys).read_bytes()).checkpoint
    lines = text.split(b"\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(b"key "))
    for bad in (b"\n".join(lines[:at] + lines[at + 1:]),                 # one key line in v3
                b"\n".join(lines[:at] + [lines[at]] * 2 + lines[at + 2:]),  # a key twice
                b"\n".join(lines[:at] + [lines[at]] * 9 + lines[at + 2:]),  # nine keys
                text.replace(b"/v3\n", b"/v2\n", 1)):                      # v3 lines as v2
        with pytest.raises(CheckpointError):
            parse_checkpoint(bad)


def test_s4_trust_file_bounds_a_retired_key(backup: Path, keys, tmp_path: Path) -> None:
    sealed_twice(backup, keys)
    created = parse_checkpoint(decode_seal((backup / SEAL).read_bytes()).checkpoint).created
    retired = trust_file(tmp_path / "retired", f"{vkey(keys['old'][1], 'old')} not-after "
                         "2026-01-01T00:00:00Z")
    assert created > datetime(2026, 1, 1, tzinfo=timezone.utc)
    code, _, err = run("verify", backup, "--trust", retired)
    assert code == 1 and "signed only by keys retired before it" in err, err
    assert "not after 2026-01-01T00:00:00Z" in err
    both = trust_file(tmp_path / "both", f"{vkey(keys['old'][1], 'old')} not-after "
                      "2026-01-01T00:00:00Z", vkey(keys["new"][1], "new"))
    code, out, err = run("verify", backup, "--trust", both)
    assert code == 0, err
    in_bound = trust_file(tmp_path / "in-bound", f"{vkey(keys['old'][1], 'old')} not-after "
                          "9999-12-31T23:59:59Z")
    assert run("verify", backup, "--trust", in_bound)[0] == 0


@pytest.mark.parametrize(("line", "says"), [
    ("nonsense", "not a key NAME+HASH+BASE64"),
    ("{old} not-after", "needs a value"),
    ("{old} not-after 2026-13-01T00:00:00Z", "not-after 2026-13-01T00:00:00Z"),
    ("{old} not-after yesterday", "expected not-after"),
    ("{old} not-after-size -1", "expected not-after"),
    ("{old} colour red", "expected not-after"),
    ("{old}\n{old}", "listed twice"),
    ("{bad_hash}", "does not match its name and key"),
])
def test_trust_file_refusals(keys, tmp_path: Path, line: str, says: str) -> None:
    old = vkey(keys["old"][1], "old")
    bad_hash = "old+00000000+" + old.split("+", 2)[2]
    path = trust_file(tmp_path / "t", line.format(old=old, bad_hash=bad_hash))
    with pytest.raises(KeyFileError, match=re.escape(says)):
        load_trusted(path)


def test_trust_file_header_and_pem_fallback(keys) -> None:
    with pytest.raises(KeyFileError, match="starts with the line"):
        parse_trust_file(b"merkle-backup-trust v2\n", "t")
    with pytest.raises(KeyFileError, match="lists no key"):
        parse_trust_file(HEADER.encode() + b"\n# nothing\n", "t")
    assert load_trusted(keys["old"][1]) == [load_public_key(keys["old"][1])]


def test_s4_log_key_retired_at_a_tree_size(keys, tmp_path: Path) -> None:
    """A log key bounded by not-after-size N signs no head larger than N."""
    from merkle_backup.tlog.entries import tombstone_entry

    private = load_private_key(keys["old"][0])
    pub = load_public_key(keys["old"][1])
    log = Log(LocalLogStore(tmp_path / "log"), [pub], LogState(tmp_path / "s.json"))
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    for i in range(3):
        log.append(private, [tombstone_entry(private, f"b{i}", "-", bytes(32), now, pub.key_id)])
    bounded = trust_file(tmp_path / "t", f"{vkey(keys['old'][1], 'old')} not-after-size 2")
    reader = Log(LocalLogStore(tmp_path / "log"), load_trusted(bounded), None)
    with pytest.raises(NotAuthentic, match="head of 3 entries is signed by .*retired after 2"):
        reader.head()
    ok = trust_file(tmp_path / "ok", f"{vkey(keys['old'][1], 'old')} not-after-size 3")
    assert Log(LocalLogStore(tmp_path / "log"), load_trusted(ok), None).head().size == 3


def test_proof_of_a_two_key_seal_verifies_with_either(backup: Path, keys, tmp_path) -> None:
    sealed_twice(backup, keys)
    proof = tmp_path / "p.proof"
    code, _, err = run("prove", backup, "--namespace", "production", "-o", proof)
    assert code == 0, err
    assert msgpack.unpackb(proof.read_bytes())["version"] == 3
    for pub in (keys["old"][1], keys["new"][1]):
        code, out, err = run("verify-proof", proof, "--trust", pub)
        assert code == 0, err
    assert run("verify-proof", proof, "--trust", keys["attacker"][1])[0] == 1


def test_several_keys_with_the_log_are_refused(backup: Path, keys, tmp_path) -> None:
    code, _, err = run("seal-all", backup.parent.parent, "--key", keys["old"][0], "--key",
                       keys["new"][0], "--log", tmp_path / "log")
    assert code == 2 and "signs with one --key" in err, err


def test_seal_all_with_two_keys(backup: Path, keys) -> None:
    code, out, err = run("seal-all", backup.parent.parent, "--key", keys["old"][0], "--key",
                         keys["new"][0], "--max-age", "1e6")
    assert code == 0, err
    assert parse_checkpoint(decode_seal((backup / SEAL).read_bytes()).checkpoint).version == 3
    assert run("audit", backup.parent.parent, "--trust", keys["new"][1])[0] == 0
