"""A signer that lies or fails is refused before anything is written (docs/threat-model.md
S1, S2): every signature is verified locally against the signer's public key (and a pinned key),
so another key, a prehash (Ed25519ph-style) signature, a stale version, an unstripped wrapper
or a truncated answer never becomes a seal; a signer that fails or times out is one line and
exit 3. The Vault stand-in (tests/signers/transit.py) lies on demand; KMS errors come from
botocore's Stubber (the error paths a real KMS gives: throttling, access denied, a wrong key
spec), and the local check is exercised on a Stubber answer with another key's signature."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from merkle_backup.errors import SignerError
from merkle_backup.signers import Checked, from_private_key, open_signer
from merkle_backup.signers.awskms import KMSBackend
from tests.cli import run
from tests.signers.transit import TOKEN, TransitStandIn

SEAL = "demo-small-merkle.seal"


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch) -> Iterator[TransitStandIn]:
    server = TransitStandIn()
    monkeypatch.setenv("VAULT_ADDR", server.addr)
    monkeypatch.setenv("VAULT_TOKEN", TOKEN)
    monkeypatch.delenv("TRANSIT_SECRET_ENGINE_PATH", raising=False)
    try:
        yield server
    finally:
        server.close()


def test_honest_stand_in_signs_and_names_the_version(backup: Path, vault, tmp_path) -> None:
    code, _, err = run("seal", backup, "--key", "hashivault://seal", "--max-age", "1e6")
    assert code == 0, err
    signs = [r for r in vault.requests if r[0] == "POST"]
    assert signs and all(body["key_version"] == 1 for _, _, body in signs)


@pytest.mark.parametrize(("mode", "says"), [
    ("other-key", "does not verify with its public key"),
    ("prehash", "does not verify with its public key"),
    ("unstripped", "answered 73 bytes, not a 64-byte Ed25519 signature"),
    ("stale-version", "not vault:v1:<base64>"),
    ("short", "answered 32 bytes"),
])
def test_s1_lying_transit_server_writes_nothing(backup: Path, vault, mode: str,
                                                 says: str) -> None:
    vault.mode = mode
    code, out, err = run("seal", backup, "--key", "hashivault://seal", "--max-age", "1e6")
    assert code == 3, (out, err)
    assert len(err.strip().splitlines()) == 1 and says in err, err
    assert not (backup / SEAL).exists()


def test_s1_timeout_is_one_line(vault) -> None:
    vault.mode = "slow"
    signer = open_signer("hashivault://seal", timeout=0.5)
    with pytest.raises(SignerError, match="cannot reach Vault"):
        signer.sign(b"x")


def test_transit_refuses_a_wrong_token(vault, monkeypatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "wrong")
    with pytest.raises(SignerError, match="HTTP 403 .*permission denied"):
        open_signer("hashivault://seal")


def test_checked_refuses_another_keys_signature_and_a_pin() -> None:
    """The wrapper every backend goes through: another key's signature, a pin that differs."""
    mine = Ed25519PrivateKey.from_private_bytes(bytes(32))
    theirs = Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)

    class Liar:
        name = "liar"
        public_key = from_private_key(mine).public_key

        def raw_sign(self, message: bytes) -> bytes:
            return theirs.sign(message)

        def close(self) -> None:
            pass

    with pytest.raises(SignerError, match="liar: the signer's signature does not verify"):
        Checked(Liar()).sign(b"m")
    other = from_private_key(theirs).public_key
    with pytest.raises(SignerError, match="is not the pinned key"):
        Checked(Liar(), pin=other)


# --- AWS KMS error paths (botocore Stubber on a real botocore client) ---------------------------

def _stubbed(responses: list[tuple[str, dict | None, str | None]]):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("kms", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    stub = Stubber(client)
    for method, response, error in responses:
        if error:
            stub.add_client_error(method, service_error_code=error, service_message=f"{error}!")
        else:
            stub.add_response(method, response)
    stub.activate()
    return client


KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
DER = KEY.public_key().public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
ARN = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PUBLIC = {"KeyId": ARN, "PublicKey": DER, "KeySpec": "ECC_NIST_EDWARDS25519",
          "KeyUsage": "SIGN_VERIFY", "SigningAlgorithms": ["ED25519_SHA_512", "ED25519_PH_SHA_512"]}


def test_kms_throttling_and_access_denied_are_one_line() -> None:
    for code in ("ThrottlingException", "AccessDeniedException", "KMSInvalidStateException"):
        client = _stubbed([("get_public_key", PUBLIC, None), ("sign", None, code)])
        signer = Checked(KMSBackend.open("awskms:///alias/seal", timeout=5, client=client))
        with pytest.raises(SignerError, match=f"KMS refused: {code}: {code}!"):
            signer.sign(b"checkpoint")


def test_kms_wrong_key_spec_and_no_pure_ed25519() -> None:
    for public in ({**PUBLIC, "KeySpec": "ECC_NIST_P256"},
                   {**PUBLIC, "SigningAlgorithms": ["ED25519_PH_SHA_512"]},
                   {**PUBLIC, "KeyUsage": "ENCRYPT_DECRYPT"}):
        client = _stubbed([("get_public_key", public, None)])
        with pytest.raises(SignerError, match="not an ECC_NIST_EDWARDS25519 signing key"):
            KMSBackend.open("awskms:///alias/seal", timeout=5, client=client)


def test_kms_signs_pure_ed25519_by_arn_and_checks_the_answer() -> None:
    """The request is RAW + ED25519_SHA_512 with the key's ARN (an alias moved later cannot
    change the key behind a checked public key); an answer by another key is refused."""
    message = b"merkle-backup/checkpoint/v2\n"
    expected = {"KeyId": ARN, "Message": message, "MessageType": "RAW",
                "SigningAlgorithm": "ED25519_SHA_512"}
    other = Ed25519PrivateKey.generate().sign(message)
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("kms", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_response("get_public_key", PUBLIC, {"KeyId": "alias/seal"})
    stub.add_response("sign", {"KeyId": ARN, "Signature": KEY.sign(message),
                               "SigningAlgorithm": "ED25519_SHA_512"}, expected)
    stub.add_response("sign", {"KeyId": ARN, "Signature": other,
                               "SigningAlgorithm": "ED25519_SHA_512"}, expected)
    stub.activate()
    signer = Checked(KMSBackend.open("awskms:///alias/seal", timeout=5, client=client))
    assert signer.sign(message) == KEY.sign(message)
    with pytest.raises(SignerError, match="does not verify with its public key"):
        signer.sign(message)
    stub.assert_no_pending_responses()


def test_kms_refuses_a_message_over_4096_bytes_before_calling() -> None:
    client = _stubbed([("get_public_key", PUBLIC, None)])
    signer = Checked(KMSBackend.open("awskms:///alias/seal", timeout=5, client=client))
    with pytest.raises(SignerError, match="at most 4096 bytes; this one is 4097"):
        signer.sign(b"x" * 4097)


# --- nothing half-made ----------------------------------------------------------------------------

def test_second_key_lying_leaves_no_seal(backup: Path, vault, keypair) -> None:
    """Two keys, the second lies: every signature is made before the seal's first byte."""
    vault.mode = "other-key"
    code, _, err = run("seal", backup, "--key", keypair[0], "--key", "hashivault://seal",
                       "--max-age", "1e6")
    assert code == 3 and "does not verify with its public key" in err, err
    assert not (backup / SEAL).exists()


def test_log_head_signer_failing_writes_no_log_object(tmp_path: Path) -> None:
    """The log's new head is signed before its claim, tiles or entries are written: a signer
    that fails there leaves the log folder as it was (no pending claim for another writer to
    roll forward)."""
    from datetime import datetime, timezone

    from merkle_backup.tlog.entries import tombstone_entry
    from merkle_backup.tlog.log import Log, LogState
    from merkle_backup.tlog.store import LocalLogStore

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))

    class FailsAfter:
        """A backend that signs ``budget`` messages, then refuses (a KMS that starts throttling)."""

        def __init__(self, budget: int) -> None:
            self.name, self.budget = "flaky", budget
            self.public_key = from_private_key(key).public_key

        def raw_sign(self, message: bytes) -> bytes:
            self.budget -= 1
            if self.budget < 0:
                raise SignerError("flaky: KMS refused: ThrottlingException: slow down")
            return key.sign(message)

        def close(self) -> None:
            pass

    backend = FailsAfter(100)
    signer = Checked(backend)
    pub = signer.public_key
    log = Log(LocalLogStore(tmp_path / "log"), [pub], LogState(tmp_path / "s.json"))
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    log.append(signer, [tombstone_entry(signer, "b0", "-", bytes(32), now, pub.key_id)])
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "log").rglob("*"))
    raw = tombstone_entry(key, "b1", "-", bytes(32), now, pub.key_id)  # the entry is fine
    for budget in (1, 0):  # the claim is signed, then the head fails; or the claim fails
        backend.budget = budget
        with pytest.raises(SignerError, match="ThrottlingException"):
            log.append(signer, [raw])
        assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "log").rglob("*")) == before
    assert log.head().size == 1
