"""docs/format.md §11.6: the log inclusion proof inside a proof file (`prove --log`,
`verify-proof --log-key --witness`), through the CLI, in a local folder and on the moto S3
server (the forgeries, offline checks of a file, in a local folder only); forged parts of it,
written as an attacker would (decode, change, encode); Go's
golang.org/x/mod/sumdb/tlog and note checking the embedded proof (docs/threat-model.md T63-T67).
"""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from merkle_backup.formats.proof import LogInclusion, decode_proof, encode_proof
from merkle_backup.signing import generate_keypair, load_private_key, load_public_key
from merkle_backup.tlog import note as notes
from merkle_backup.tlog.tiles import leaf_hash
from tests.tlog.helpers import one_line, run
from tests.tlog.test_log_attacks import (  # noqa: F401 (fixtures)
    _aws_test_env,
    keys,
    moto_server,
    seal_all,
    site,
)
from tests.tlog.test_log_interop import tlogcheck  # noqa: F401 (fixture)

RESOURCE = "velero-backup.json"


def prove(site, pub, name, out: Path, *extra, state="prover-state.json"):
    return run("prove", site.folder(name), "--resource", RESOURCE, "--trust", pub, "--log", site.log,
               "--log-state", site.tmp / state, "-o", out, *site.opts, *extra)


def verify_proof(path: Path, pub, *extra):
    return run("verify-proof", path, "--trust", pub, *extra)


def forge(path: Path, out: Path, **log_changes) -> Path:
    proof = decode_proof(path.read_bytes())
    assert proof.log is not None
    out.write_bytes(encode_proof(replace(proof, log=replace(proof.log, **log_changes))))
    return out


@pytest.fixture
def proven(site, keys):
    """Three backups sealed and logged (6 entries: seal and expiry each), a proof of the
    second with its log inclusion proof."""
    key, pub = keys
    for name in ("nightly-a", "nightly-b", "nightly-c"):
        site.add(name, f"uid-{name}")
    assert seal_all(site, key, "--jobs", "1")[0] == 0
    out = site.tmp / "b.proof"
    code, stdout, err = prove(site, pub, "nightly-b", out)
    assert code == 0, err
    assert "log: entry 2" in stdout
    return out


def test_proof_with_log_verifies_offline(site, keys, proven):
    _, pub = keys
    code, out, err = verify_proof(proven, pub, "--log-key", pub)
    assert code == 0, err
    assert "log       entry 2 of 6 of merkle-backup.log/" in out
    doc = json.loads(verify_proof(proven, pub, "--log-key", pub, "--json")[1])
    assert doc["verified"] is True and doc["log"]["checked"] is True
    assert (doc["log"]["index"], doc["log"]["size"], doc["log"]["witnessed_by"]) == (2, 6, [])
    # Without --log-key the rest still verifies, and it says the log part was not checked.
    code, out, _ = verify_proof(proven, pub)
    assert code == 0 and "not checked (give --log-key)" in out
    assert json.loads(verify_proof(proven, pub, "--json")[1])["log"] == {"checked": False}
    # The file is version 2; one written without --log stays version 1 and has no log part.
    assert decode_proof(proven.read_bytes()).log is not None
    old = site.tmp / "old.proof"
    code, _, err = run("prove", site.folder("nightly-b"), "--resource", RESOURCE, "-o", old, *site.opts)
    assert code == 0, err
    assert old.read_bytes()[:40].find(b"version\x01") > 0
    assert verify_proof(old, pub)[0] == 0
    assert "log" not in json.loads(verify_proof(old, pub, "--json")[1])
    code, _, err = verify_proof(old, pub, "--log-key", pub)
    assert code == 1 and "holds no log inclusion proof" in one_line(err)


@pytest.mark.parametrize("site", ["local"], indirect=True)  # offline: the file is the same from S3
def test_t63_forged_index_proof_and_entry(site, keys, proven):
    _, pub = keys
    proof = decode_proof(proven.read_bytes()).log
    assert proof is not None
    t = site.tmp
    flipped = [bytes([proof.proof[0][0] ^ 1]) + proof.proof[0][1:], *proof.proof[1:]]
    # Another logged entry of the same log, with its own valid inclusion proof: nightly-c's.
    other = t / "c.proof"
    assert prove(site, pub, "nightly-c", other)[0] == 0
    c_log = decode_proof(other.read_bytes()).log
    assert c_log is not None
    cases = {
        "index + 1": forge(proven, t / "f1", index=proof.index + 1),
        "index outside": forge(proven, t / "f2", index=6),
        "hash flipped": forge(proven, t / "f3", proof=flipped),
        "hash dropped": forge(proven, t / "f4", proof=proof.proof[:-1]),
        "hash added": forge(proven, t / "f5", proof=[*proof.proof, bytes(32)]),
        "entry of another backup": forge(proven, t / "f6", index=c_log.index, entry=c_log.entry,
                                         proof=c_log.proof),
        "entry byte changed": forge(proven, t / "f7", entry=proof.entry.replace(b"uid-", b"uid_", 1)),
    }
    for what, path in cases.items():
        code, _, err = verify_proof(path, pub, "--log-key", pub)
        assert code == 1, (what, err)
        line = one_line(err)
        assert "not authentic" in line, (what, line)
    assert "not this backup's sealed checkpoint" in one_line(verify_proof(cases["entry of another backup"], pub,
                                                                          "--log-key", pub)[2])
    assert "does not lead to the signed log root" in one_line(verify_proof(cases["hash flipped"], pub,
                                                                           "--log-key", pub)[2])


@pytest.mark.parametrize("site", ["local"], indirect=True)  # offline: the file is the same from S3
def test_t64_forged_head_and_a_head_from_another_log(site, keys, proven, tmp_path):
    key, pub = keys
    log = decode_proof(proven.read_bytes()).log
    assert log is not None
    note = notes.parse_note(log.checkpoint)
    cp = notes.parse_log_checkpoint(note.text)
    grown = notes.LogCheckpoint(cp.origin, cp.size + 1, cp.root).body()
    other_key, other_pub = generate_keypair(tmp_path / "other.key")
    other = load_private_key(other_key)
    # A head signed by another log's key, for the very tree (its own origin, or ours).
    theirs = notes.sign_log_checkpoint(other, cp.size, cp.root)
    ours_by_them = notes.Note(cp.body(), (notes.sign_line(other, cp.origin, cp.body()),)).encode()
    cases = {
        "size edited": notes.Note(grown, note.signatures).encode(),
        "root edited": notes.Note(notes.LogCheckpoint(cp.origin, cp.size, bytes(32)).body(),
                                  note.signatures).encode(),
        "another log's head": theirs,
        "our origin, their key": ours_by_them,
        "malformed": log.checkpoint.replace(b"\n\n", b"\n"),
        "signature dropped": note.text + b"\n",
    }
    for what, data in cases.items():
        path = forge(proven, tmp_path / "forged.proof", checkpoint=data)
        code, _, err = verify_proof(path, pub, "--log-key", pub)
        assert code == 1, (what, err)
        assert "log checkpoint in the proof file" in one_line(err), (what, err)
    # The other log's key as --log-key does not accept our head either.
    code, _, err = verify_proof(proven, pub, "--log-key", other_pub)
    assert code == 1 and "not signed by a --log-key" in one_line(err)
    # A real second log: the same backup sealed into it by another sealer; its proof file does
    # not verify against our log key, and ours not against theirs.
    site2_log = site.log + "-second"
    code, _, err = run("prove", site.folder("nightly-b"), "--resource", RESOURCE, "--trust", pub,
                       "--log", site2_log, "--log-state", tmp_path / "x.json", "-o", tmp_path / "y",
                       *site.opts)
    assert code == 1 and "unlogged seal" in one_line(err)  # not in that (empty) log: no proof
    assert not (tmp_path / "y").exists()
    del key


def test_t65_witness_cosignature_required_offline(site, keys, proven, tmp_path):
    _, pub = keys
    wkey, wpub = generate_keypair(tmp_path / "witness.key")
    w2key, w2pub = generate_keypair(tmp_path / "witness2.key")
    code, _, err = verify_proof(proven, pub, "--log-key", pub, "--witness", wpub)
    assert code == 1 and "not cosigned by witness" in one_line(err)
    # prove --witness needs a cosignature in the log.
    code, _, err = prove(site, pub, "nightly-b", tmp_path / "w.proof", "--witness", wpub)
    assert code == 1 and "no cosignature by witness" in one_line(err)
    for k in (wkey, w2key):
        code, _, err = run("witness", "--log", site.log, "--trust", pub, "--key", k,
                           "--state", tmp_path / f"{Path(k).name}-state.json", *site.opts)
        assert code == 0, err
    out = tmp_path / "w.proof"
    code, _, err = prove(site, pub, "nightly-b", out, "--witness", wpub, "--witness", w2pub)
    assert code == 0, err
    code, stdout, err = verify_proof(out, pub, "--log-key", pub, "--witness", wpub, "--witness", w2pub)
    assert code == 0, err
    assert f"cosigned by {wpub}" in stdout and f"cosigned by {w2pub}" in stdout
    doc = json.loads(verify_proof(out, pub, "--log-key", pub, "--witness", wpub, "--json")[1])
    assert [w["witness"] for w in doc["log"]["witnessed_by"]] == [str(wpub)]
    # A cosignature line stripped, or replaced by the log key's own "cosignature".
    log = decode_proof(out.read_bytes()).log
    assert log is not None
    note = notes.parse_note(log.checkpoint)
    assert len(note.signatures) == 3
    stripped = forge(out, tmp_path / "s.proof", checkpoint=notes.Note(note.text, note.signatures[:2]).encode())
    code, _, err = verify_proof(stripped, pub, "--log-key", pub, "--witness", wpub, "--witness", w2pub)
    assert code == 1 and f"not cosigned by witness {w2pub}" in one_line(err)
    code, _, err = verify_proof(out, pub, "--log-key", pub, "--witness", pub)
    assert code == 1 and "not cosigned by witness" in one_line(err)
    # A cosignature over another checkpoint (the log grew, one witness ran again): prove says so.
    site.add("nightly-d", "uid-d")
    assert seal_all(site, keys[0])[0] == 0
    assert run("witness", "--log", site.log, "--trust", pub, "--key", wkey,
               "--state", tmp_path / "witness.key-state.json", *site.opts)[0] == 0
    code, _, err = prove(site, pub, "nightly-b", tmp_path / "w2.proof", "--witness", wpub,
                         "--witness", w2pub)
    assert code == 1 and "cosigned another log checkpoint" in one_line(err)
    # Usage: --witness without --log-key / --log.
    assert verify_proof(out, pub, "--witness", wpub)[0] == 2
    assert run("prove", site.folder("nightly-b"), "--resource", RESOURCE, "--witness", wpub,
               "-o", tmp_path / "u", *site.opts)[0] == 2


def test_t66_prove_refuses_a_backup_the_log_does_not_vouch_for(site, keys, tmp_path):
    key, pub = keys
    site.add("nightly-a", "uid-a")
    assert seal_all(site, key)[0] == 0
    site.add("nightly-x", "uid-x")
    assert run("seal", site.folder("nightly-x"), "--key", key, *site.opts)[0] == 0  # outside the log
    code, _, err = prove(site, pub, "nightly-x", tmp_path / "x.proof")
    assert code == 1 and "unlogged seal" in one_line(err)
    assert not (tmp_path / "x.proof").exists()
    # --log without --trust is a usage error (the log is signed by the sealer's key).
    code, _, err = run("prove", site.folder("nightly-a"), "--resource", RESOURCE, "--log", site.log,
                       "-o", tmp_path / "a.proof", *site.opts)
    assert code == 2 and "--log needs --trust" in one_line(err)


@pytest.mark.parametrize("site", ["local"], indirect=True)  # offline: the file is the same from S3
def test_t67_malformed_log_part_is_refused(site, keys, proven, tmp_path):
    """A version 2 file whose ``log`` map is not exactly four well-typed keys: exit 3."""
    import msgpack

    _, pub = keys
    obj = msgpack.unpackb(proven.read_bytes(), raw=False)
    bad = [
        {**obj, "log": {k: v for k, v in obj["log"].items() if k != "entry"}},
        {**obj, "log": {**obj["log"], "index": -1}},
        {**obj, "log": {**obj["log"], "proof": [b"short"]}},
        {**obj, "log": {**obj["log"], "extra": 1}},
        {k: v for k, v in obj.items() if k != "log"},     # version 2 without log
        {**obj, "version": 1},                           # version 1 with log
        {**obj, "version": 3},
    ]
    for i, o in enumerate(bad):
        path = tmp_path / f"bad{i}.proof"
        path.write_bytes(msgpack.packb(o, use_bin_type=True))
        code, _, err = verify_proof(path, pub, "--log-key", pub)
        assert code == 3, (i, err)
        one_line(err)


@pytest.mark.parametrize("site", ["local"], indirect=True)  # offline: the file is the same from S3
def test_go_checks_the_embedded_inclusion_proof(tlogcheck, site, keys, proven, tmp_path):  # noqa: F811
    _, pub = keys
    log = decode_proof(proven.read_bytes()).log
    assert isinstance(log, LogInclusion)
    note = notes.parse_note(log.checkpoint)
    cp = notes.parse_log_checkpoint(note.text)
    (tmp_path / "note").write_bytes(log.checkpoint)
    b64 = lambda h: base64.b64encode(h).decode()  # noqa: E731

    def go(index: int, proof: list[bytes]) -> subprocess.CompletedProcess:
        (tmp_path / "p.json").write_text(json.dumps({"inclusion": [{
            "index": index, "size": cp.size, "root": b64(cp.root), "leaf": b64(leaf_hash(log.entry)),
            "proof": [b64(h) for h in proof]}]}))
        return subprocess.run([tlogcheck, "-note", tmp_path / "note",
                               notes.vkey(cp.origin, load_public_key(pub).raw), tmp_path / "p.json"],
                              capture_output=True, text=True, timeout=60)

    r = go(log.index, log.proof)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"size": cp.size, "checked": 1}
    assert go(log.index + 1, log.proof).returncode == 1  # Go refuses the forgeries too
    assert go(log.index, log.proof[:-1]).returncode == 1
