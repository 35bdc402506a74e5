"""T10-T12 of docs/threat-model.md: the wrong key, a weak key, a signature made for another
context."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from merkle_backup.formats.seal import SealFile, decode_seal, encode_seal
from merkle_backup.signing import LOW_ORDER_KEYS, load_private_key, sign
from tests.attacks import gotar
from tests.attacks.helpers import (
    EXIT_CANNOT_CHECK,
    EXIT_NOT_AUTHENTIC,
    expect_refusal,
    run,
    seal,
    seal_path,
    tarball,
)
from tests.tamper import add_sidecar

SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")  # SubjectPublicKeyInfo prefix, RFC 8410


def _pem(raw: bytes) -> bytes:
    return (b"-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(SPKI_ED25519 + raw)
            + b"\n-----END PUBLIC KEY-----\n")


def test_t10_resealed_with_the_attackers_key(sealed: Path, keypair, other_keypair) -> None:
    """T10: the attacker tampers with the tarball and seals it again with a key of their own;
    the verifier trusts only the key its user names."""
    members = gotar.load(tarball(sealed))
    name = "resources/deployments.apps/namespaces/monitoring-000/frontend.json"
    for i, m in enumerate(members):
        if m.name in (name, name.replace("/namespaces/", "/v1-preferredversion/namespaces/", 1)):
            members[i] = m.with_data(add_sidecar(m.data))
    gotar.store(tarball(sealed), members)
    seal(sealed, other_keypair[0], "--replace")
    expect_refusal(EXIT_NOT_AUTHENTIC, "verify", sealed, "--trust", keypair[1],
                   says=("not authentic", "not signed by any trusted key", str(keypair[1])))
    # Trusting the attacker's key too is the user's decision; the right key alone never passes.
    assert run("verify", sealed, "--trust", other_keypair[1]).code == 0


WEAK_KEYS = sorted(LOW_ORDER_KEYS) + [
    (2**255 - 19 + 3).to_bytes(32, "little"),  # y = p + 3: non-canonical encoding of y = 3
    (2**255 - 1).to_bytes(32, "little"),  # y = 2^255 - 1 >= p, sign bit clear
]


@pytest.mark.parametrize("raw", WEAK_KEYS, ids=lambda raw: raw.hex()[:8] + "-" + raw.hex()[-2:])
def test_t11_weak_key_given_as_trusted_is_refused(sealed: Path, tmp_path: Path, raw: bytes) -> None:
    """T11: each of the 14 low-order encodings (C2SP CCTV) and non-canonical encodings, as a
    PEM public key file given to --trust, refused when loaded, before any seal is read."""
    weak = tmp_path / "weak.pub"
    weak.write_bytes(_pem(raw))
    line = expect_refusal(EXIT_CANNOT_CHECK, "verify", sealed, "--trust", weak,
                          says=(str(weak), "weak key"))
    assert ("low-order" in line) == (raw in LOW_ORDER_KEYS)


def _c2sp_note_body(root: bytes) -> bytes:
    # A transparency-log checkpoint (C2SP tlog-checkpoint), as another tool of ours might sign.
    return b"example.com/velero-log\n42\n" + base64.b64encode(root) + b"\n"


OTHER_CONTEXTS = {
    # The checkpoint's own lines under another context line (a future or another format; v3,
    # several keys, is a real version since issue 22: its own test is in tests/signers).
    "other-first-line": lambda cp: cp.replace(b"merkle-backup/checkpoint/v2\n",
                                              b"merkle-backup/checkpoint/v9\n", 1),
    # Version 2's eleven lines under version 1's context line (format.md §5.3: each version
    # has its own lines; a parser takes a text only in the form its context line fixes).
    "v2-lines-as-v1": lambda cp: cp.replace(b"merkle-backup/checkpoint/v2\n",
                                            b"merkle-backup/checkpoint/v1\n", 1),
    "other-tool": lambda cp: cp.replace(b"merkle-backup/checkpoint/v2\n",
                                        b"other-tool/manifest-digest/v1\n", 1),
    "c2sp-tlog-checkpoint": lambda cp: _c2sp_note_body(hashlib.sha256(cp).digest()),
    "c2sp-signed-note": lambda cp: cp + b"\n\xe2\x80\x94 example.com/velero AAAA\n",
    "no-final-newline": lambda cp: cp[:-1],
}


@pytest.mark.parametrize("context", list(OTHER_CONTEXTS))
def test_t12_signature_made_for_another_context(sealed: Path, keypair, context: str) -> None:
    """T12: the trusted key (reused by the operator elsewhere) signed a text that is not a
    merkle-backup checkpoint; the attacker puts that text and its valid signature in the seal.
    The signature verifies, the text is not a checkpoint: refused."""
    path = seal_path(sealed)
    original = decode_seal(path.read_bytes())
    text = OTHER_CONTEXTS[context](original.checkpoint)
    assert text != original.checkpoint
    signature = sign(load_private_key(keypair[0]), text)
    path.write_bytes(encode_seal(SealFile(text, signature, original.leaves)))
    expect_refusal(EXIT_CANNOT_CHECK, "verify", sealed, "--trust", keypair[1],
                   says=("error", "signed checkpoint is malformed"))
