"""Each signer backend, through the real command line: `pubkey KEYREF -o signer.pub` writes the
key verifiers pin, `seal --key KEYREF` seals with it, `verify --trust signer.pub` verifies. The
signers are real: an OpenSSH agent, a SoftHSM2 token, the ministack KMS emulator, an OpenBao
dev server (tests/signers/conftest.py); the Vault transit stand-in is tests/signers/transit.py.
docs/threat-model.md S1, S2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from merkle_backup.formats.seal import decode_seal
from merkle_backup.signers import open_signer
from merkle_backup.signing import load_public_key
from tests.cli import run
from tests.signers.conftest import kms_key

SEAL = "demo-small-merkle.seal"


def seal_and_verify(backup: Path, ref: str, tmp_path: Path) -> Path:
    """pubkey, seal and verify with ``ref``; the seal's signature checks with the pinned key."""
    pub = tmp_path / "signer.pub"
    code, out, err = run("pubkey", ref, "-o", pub)
    assert code == 0, err
    assert "written to" in out and pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    code, out, err = run("seal", backup, "--key", ref, "--pub", pub, "--max-age", "1e6")
    assert code == 0, err
    code, out, err = run("verify", backup, "--trust", pub)
    assert code == 0, (out, err)
    assert out.startswith("VERIFIED")
    seal = decode_seal((backup / SEAL).read_bytes())
    load_public_key(pub).verify(seal.signature, seal.checkpoint)  # independent of the CLI
    return pub


def refused(backup: Path, *args: object, says: str) -> str:
    """Signing refused: exit 3, one line on stderr, and no seal written."""
    code, out, err = run("seal", backup, *args, "--max-age", "1e6")
    assert code == 3, (code, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert says in err, err
    assert not (backup / SEAL).exists()
    return err


def test_file_key_is_a_signer(backup: Path, keypair, tmp_path: Path) -> None:
    pub = seal_and_verify(backup, str(keypair[0]), tmp_path)
    assert pub.read_bytes() == keypair[1].read_bytes()  # pubkey of a key file: the same PEM


# --- ssh-agent ---------------------------------------------------------------------------------

def test_ssh_agent_by_fingerprint_and_first_ed25519_key(backup: Path, ssh_agent, tmp_path) -> None:
    pub = seal_and_verify(backup, ssh_agent.ref, tmp_path)
    # The agent's first Ed25519 key (an RSA key comes first in the agent and is passed over).
    assert open_signer("ssh-agent").public_key.raw == load_public_key(pub).raw
    # The public key is the one ssh-keygen wrote.
    openssh = (ssh_agent.key.with_suffix(".pub")).read_text().split()[1]
    import base64

    assert base64.b64decode(openssh)[-32:] == load_public_key(pub).raw


def test_ssh_agent_refusals(backup: Path, ssh_agent, monkeypatch) -> None:
    refused(backup, "--key", "ssh-agent:SHA256:" + "A" * 43, says="holds no key SHA256:")
    refused(backup, "--key", "ssh-agent:MD5:00", says="ssh-agent:SHA256:<fingerprint>")
    subprocess.run(["ssh-add", "-D"], check=True, capture_output=True)  # the agent now empty
    refused(backup, "--key", "ssh-agent", says="holds no Ed25519 key")
    monkeypatch.delenv("SSH_AUTH_SOCK")
    refused(backup, "--key", "ssh-agent", says="SSH_AUTH_SOCK is not set")
    monkeypatch.setenv("SSH_AUTH_SOCK", str(ssh_agent.sock.parent / "nothing-here"))
    refused(backup, "--key", "ssh-agent", says="cannot talk to the agent")


def test_ssh_agent_locked_after_opening_signs_nothing(ssh_agent) -> None:
    """The agent refuses the sign request (locked between listing and signing): SignerError,
    never a signature."""
    from merkle_backup.errors import SignerError

    signer = open_signer(ssh_agent.ref)
    subprocess.run(["ssh-add", "-x"], input=b"pw\npw\n", check=False, capture_output=True)
    locked = subprocess.run(["ssh-add", "-l"], capture_output=True).returncode != 0
    if not locked:  # ssh-add -x needs a terminal for its passphrase on some builds
        subprocess.run(["ssh-add", "-D"], check=True, capture_output=True)
    with pytest.raises(SignerError, match="the agent refused to sign"):
        signer.sign(b"checkpoint")


# --- PKCS#11 (SoftHSM2) ------------------------------------------------------------------------

def test_pkcs11_softhsm2(backup: Path, softhsm, tmp_path: Path) -> None:
    seal_and_verify(backup, softhsm.ref(), tmp_path)


def test_pkcs11_pin_source_file(backup: Path, softhsm, tmp_path: Path) -> None:
    pin = tmp_path / "pin"
    pin.write_text(softhsm.pin + "\n")
    seal_and_verify(backup, softhsm.ref(pin=False) + f"&pin-source=file:{pin}", tmp_path)


def test_pkcs11_refusals(backup: Path, softhsm, tmp_path: Path) -> None:
    err = refused(backup, "--key", softhsm.ref(pin=False) + "&pin-value=0000",
                  says="cannot open the token")
    assert "0000" not in err  # the PIN is never shown
    refused(backup, "--key", softhsm.ref().replace("object=seal", "object=nope"),
            says="0 Ed25519 private key objects match")
    refused(backup, "--key", softhsm.ref().replace("token=", "token=other"), says="no such token")
    refused(backup, "--key", f"pkcs11:token={softhsm.label};object=seal;colour=red",
            says="unknown or repeated attribute 'colour'")
    refused(backup, "--key", f"pkcs11:token={softhsm.label};object=seal?pin-value=1",
            says="no module-path=")


# --- AWS KMS (ministack) -----------------------------------------------------------------------

def test_awskms_alias_id_and_arn(backup: Path, kms_env, tmp_path: Path) -> None:
    key = kms_key(kms_env, "mb-seal")
    pub = seal_and_verify(backup, "awskms:///alias/mb-seal", tmp_path)
    arn = kms_env.client().describe_key(KeyId=key)["KeyMetadata"]["Arn"]
    for ref in (f"awskms:///{key}", f"awskms:///{arn}"):
        assert open_signer(ref).public_key.raw == load_public_key(pub).raw


def test_awskms_refusals(backup: Path, kms_env) -> None:
    kms_key(kms_env, "mb-p256", spec="ECC_NIST_P256")
    refused(backup, "--key", "awskms:///alias/mb-p256",
            says="not an ECC_NIST_EDWARDS25519 signing key")
    refused(backup, "--key", "awskms:///alias/none", says="KMS refused: NotFoundException")
    refused(backup, "--key", "awskms://", says="an AWS KMS reference is")


# --- OpenBao (real dev server) -----------------------------------------------------------------

def test_openbao_transit(backup: Path, openbao, tmp_path: Path, monkeypatch) -> None:
    openbao.run("write", "-f", "transit/keys/mb-seal", "type=ed25519")
    monkeypatch.setenv("BAO_ADDR", openbao.addr)
    monkeypatch.setenv("BAO_TOKEN", openbao.token)
    pub = seal_and_verify(backup, "openbao://mb-seal", tmp_path)
    # A rotation in OpenBao is a new key version: a new public key, which the pin refuses.
    openbao.run("write", "-f", "transit/keys/mb-seal/rotate")
    (backup / SEAL).unlink()
    refused(backup, "--key", "openbao://mb-seal", "--pub", pub, says="is none of the pinned keys")
    assert open_signer("openbao://mb-seal").name == "openbao://mb-seal (version 2)"


def test_openbao_refusals(backup: Path, openbao, monkeypatch) -> None:
    openbao.run("write", "-f", "transit/keys/mb-rsa", "type=rsa-2048")
    monkeypatch.setenv("BAO_ADDR", openbao.addr)
    monkeypatch.setenv("BAO_TOKEN", openbao.token)
    refused(backup, "--key", "openbao://mb-rsa", says="of type rsa-2048, not ed25519")
    refused(backup, "--key", "openbao://mb-none", says="HTTP 404")
    monkeypatch.setenv("BAO_TOKEN", "not-a-token")
    refused(backup, "--key", "openbao://mb-rsa", says="HTTP 403")
    monkeypatch.setenv("BAO_ADDR", "http://192.0.2.1:8200")
    refused(backup, "--key", "openbao://mb-rsa", says="plain HTTP to 192.0.2.1")


def test_awskms_host_port_is_https_with_aws_ca_bundle(backup: Path, ministack, kms_over_tls,
                                                      tmp_path: Path, monkeypatch) -> None:
    """`awskms://HOST:PORT/KEY` reaches that endpoint over HTTPS, trusting AWS_CA_BUNDLE (here
    a TLS front for the emulator); without the CA the certificate is refused: one line."""
    kms_key(ministack, "mb-tls")
    seal_and_verify(backup, f"awskms://{kms_over_tls}/alias/mb-tls", tmp_path)
    (backup / SEAL).unlink()
    monkeypatch.delenv("AWS_CA_BUNDLE")
    refused(backup, "--key", f"awskms://{kms_over_tls}/alias/mb-tls", says="cannot reach KMS")
