"""docs/threat-model.md T76, through the CLI: key files hold exactly one PEM key (two keys, as
during a rotation, were read as the first alone), keygen never writes a private key under a
.pub name, an OpenSSH or DER key gets a hint; a DSSE signature that does not decode does not
decide verify-attestation's verdict; audit-merge refuses statuses it does not know and a
backup listed twice in one result."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.cli import run
from tests.conftest import FIXTURES
from tests.storage.server import clone_backup


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def location(tmp_path, keypair):
    clone_backup(FIXTURES / "demo-small", tmp_path / "bucket" / "backups", "nightly-1")
    clone_backup(FIXTURES / "demo-small", tmp_path / "bucket" / "backups", "nightly-2")
    assert run("seal-all", tmp_path / "bucket", "--key", keypair[0])[0] == 0
    return tmp_path / "bucket"


def test_t76_a_key_file_holding_two_keys_is_refused(location, keypair, tmp_path):
    other_private, other_public = tmp_path / "other.key", tmp_path / "other.key.pub"
    assert run("keygen", other_private)[0] == 0
    both_pub = tmp_path / "both.pub"
    both_pub.write_bytes(Path(keypair[1]).read_bytes() + other_public.read_bytes())
    code, out, err = run("audit", location, "--trust", both_pub)
    assert code in (2, 3) and "holds 2 PEM blocks" in one_line(err), out + err
    assert "its own --trust" in err
    both_key = tmp_path / "both.key"
    both_key.write_bytes(Path(keypair[0]).read_bytes() + other_private.read_bytes())
    backup = location / "backups" / "nightly-1"
    code, out, err = run("seal", backup, "--key", both_key, "--replace")
    assert code in (2, 3) and "holds 2 PEM blocks" in one_line(err), out + err
    # Each key alone, each with its own --trust: fine.
    assert run("audit", location, "--trust", keypair[1], "--trust", other_public)[0] == 0


def test_t76_keygen_never_writes_a_private_key_under_a_pub_name(tmp_path):
    code, out, err = run("keygen", tmp_path / "mykey.pub")
    assert code == 2 and "give mykey, not mykey.pub" in one_line(err), out + err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("form, said", [
    ("openssh-private", "ssh-keygen -p -m PKCS8"),
    ("openssh-public", "ssh-keygen -e -m PKCS8"),
    ("der-private", "openssl pkey -inform DER"),
    ("der-public", "openssl pkey -pubin -inform DER"),
])
def test_t76_openssh_and_der_keys_get_a_hint(form, said, location, tmp_path):
    private = Ed25519PrivateKey.generate()
    data = {
        "openssh-private": lambda: private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption()),
        "openssh-public": lambda: private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
        "der-private": lambda: private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
        "der-public": lambda: private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    }[form]()
    key = tmp_path / "key"
    key.write_bytes(data)
    if form.endswith("private"):
        code, out, err = run("seal", location / "backups" / "nightly-1", "--key", key,
                             "--replace")
    else:
        code, out, err = run("audit", location, "--trust", key)
    assert code in (2, 3) and said in one_line(err), out + err


def test_t76_an_undecodable_dsse_signature_does_not_decide(location, keypair, tmp_path):
    auditor, auditor_pub = tmp_path / "auditor.key", tmp_path / "auditor.key.pub"
    assert run("keygen", auditor)[0] == 0
    attestation = tmp_path / "audit.intoto.json"
    code, out, err = run("audit", location, "--trust", keypair[1], "--attest", attestation,
                         "--key", auditor)
    assert code == 0, out + err
    envelope = json.loads(attestation.read_text())
    assert run("verify-attestation", attestation, "--trust", auditor_pub)[0] == 0
    for junk in ({"keyid": "", "sig": "!!not base64!!"}, {"sig": 7}, "a string",
                 {"sig": base64.b64encode(b"\x00" * 64).decode()}):
        changed = tmp_path / "changed.json"
        changed.write_text(json.dumps({**envelope,
                                       "signatures": [junk, *envelope["signatures"]]}))
        code, out, err = run("verify-attestation", changed, "--trust", auditor_pub)
        assert code == 0, (junk, out, err)
        alone = tmp_path / "alone.json"
        alone.write_text(json.dumps({**envelope, "signatures": [junk]}))
        code, out, err = run("verify-attestation", alone, "--trust", auditor_pub)
        assert code == 1 and "not signed by any trusted key" in one_line(err), (junk, out, err)


def test_t76_audit_merge_refuses_unknown_statuses_and_a_backup_twice(location, keypair,
                                                                     tmp_path):
    url = tmp_path / "results"
    assert run("audit", location, "--trust", keypair[1], "--results", url, "--shard", "0/1",
               "--run-id", "r")[0] == 0
    assert run("audit-merge", url)[0] == 0
    result = url / "shard-0-of-1.json"
    obj = json.loads(result.read_text())
    rows = obj["report"]["backups"]
    for backups, said in (([{**rows[0], "status": "ok"}, *rows[1:]], "has status 'ok'"),
                          ([rows[0], *rows], "is listed twice")):
        result.write_text(json.dumps({**obj, "report": {**obj["report"], "backups": backups}}))
        code, out, err = run("audit-merge", url)
        assert code == 3 and said in one_line(err), out + err
