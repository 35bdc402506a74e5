"""A signer that lies or fails is refused before anything is written (docs/threat-model.md
S1, S2): every signature is verified locally against the signer's public key (and a pinned key),
so another key, a prehash (Ed25519ph-style) signature, a stale version, an unstripped wrapper
or a truncated answer never becomes a seal; a signer that fails or times out is one line and
exit 3. The Vault transit stand-in (tests/signers/transit.py) and the AWS KMS stand-in
(tests/signers/kms.py, reached by a real boto3 client through AWS_ENDPOINT_URL_KMS, as the
product reaches any KMS) lie and fail on demand: other keys, prehash signatures, KMS's own
errors (throttling, access denied, a key of another spec), and answers no honest server gives
(tests/signers/lies.py: JSON 100,000 levels deep, text, nothing, HTML, 2 MiB, cut short, not
HTTP, never; fields missing or of the wrong type; terminal escapes in an error message). The
ssh-agent stand-in (tests/signers/agent.py) lies and breaks the agent protocol the same way."""

from __future__ import annotations

import base64
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from merkle_backup.errors import SignerError
from merkle_backup.signers import Checked, from_private_key, open_signer
from merkle_backup.signers.base import Overdue
from tests.cli import run
from tests.signers.agent import AgentStandIn
from tests.signers.kms import ALIAS, ARN, KMSStandIn
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


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[KMSStandIn]:
    """The KMS stand-in, reached through boto3's standard chain as in production."""
    server = KMSStandIn()
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stand-in")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stand-in")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_CA_BUNDLE",
                 "AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield server
    finally:
        server.close()


def refused(backup: Path, ref: str, says: str) -> str:
    """``seal --key ref``: exit 3, exactly one line on stderr saying ``says``, no traceback,
    no seal written."""
    code, out, err = run("seal", backup, "--key", ref, "--max-age", "1e6")
    assert code == 3, (code, out, err)
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert says in err and "Traceback" not in out + err, err
    assert not (backup / SEAL).exists()
    return err


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


# --- AWS KMS (the stand-in, tests/signers/kms.py) --------------------------------------------

KEYREF = f"awskms:///{ALIAS}"


def test_kms_signs_pure_ed25519_by_arn_and_checks_the_answer(backup: Path, kms,
                                                            tmp_path: Path) -> None:
    """The public key is asked for by the alias; every Sign is RAW + ED25519_SHA_512 with the
    key's ARN (an alias moved later cannot change the key behind a checked public key), over
    exactly the message; the seal verifies with the key the stand-in holds. An answer by
    another key is refused."""
    pub = tmp_path / "kms.pub"
    assert run("pubkey", KEYREF, "-o", pub)[0] == 0
    code, _, err = run("seal", backup, "--key", KEYREF, "--pub", pub, "--max-age", "1e6")
    assert code == 0, err
    assert run("verify", backup, "--trust", pub)[0] == 0
    assert kms.requests[0] == ("GetPublicKey", {"KeyId": ALIAS})
    assert kms.signs() and all(
        {k: v for k, v in body.items() if k != "Message"} ==
        {"KeyId": ARN, "MessageType": "RAW", "SigningAlgorithm": "ED25519_SHA_512"}
        for body in kms.signs())
    message = b"merkle-backup/checkpoint/v2\n"
    signer = open_signer(KEYREF)
    assert signer.sign(message) == kms.key.sign(message)
    assert kms.signs()[-1]["Message"] == base64.b64encode(message).decode()
    kms.mode = "other-key"
    with pytest.raises(SignerError, match="does not verify with its public key"):
        signer.sign(message)


@pytest.mark.parametrize(("mode", "says"), [
    ("other-key", "does not verify with its public key"),
    ("prehash", "does not verify with its public key"),
    ("algorithm", "KMS answered a ED25519_PH_SHA_512 signature, not ED25519_SHA_512"),
])
def test_s1_lying_kms_writes_nothing(backup: Path, kms, mode: str, says: str) -> None:
    kms.mode = mode
    refused(backup, KEYREF, says)


@pytest.mark.parametrize("mode", ["throttling", "denied", "invalid-state"])
def test_kms_throttling_and_access_denied_are_one_line(backup: Path, kms, mode: str) -> None:
    """KMS's own errors, as HTTP 400 with its JSON error body. Throttling is retried as the
    product configures boto3 (standard mode, total_max_attempts 3: the first call and 2
    retries, with a jittered backoff of at most 1 + 2 s); the others are not."""
    kms.mode = mode
    code = {"throttling": "ThrottlingException", "denied": "AccessDeniedException",
            "invalid-state": "KMSInvalidStateException"}[mode]
    started = time.monotonic()
    refused(backup, KEYREF, f"KMS refused: {code}: {code}!")
    assert time.monotonic() - started < 15
    assert len(kms.signs()) == (3 if mode == "throttling" else 1)


@pytest.mark.parametrize("mode", ["p256", "ph-only", "encrypt"])
def test_kms_wrong_key_spec_and_no_pure_ed25519(backup: Path, kms, mode: str) -> None:
    kms.mode, kms.lie_on = mode, "GetPublicKey"
    refused(backup, KEYREF, "not an ECC_NIST_EDWARDS25519 signing key with ED25519_SHA_512")
    assert not kms.signs()


def test_kms_refuses_a_message_over_4096_bytes_before_calling(kms) -> None:
    signer = open_signer(KEYREF)
    with pytest.raises(SignerError, match="at most 4096 bytes; this one is 4097"):
        signer.sign(b"x" * 4097)
    assert not kms.signs()
    assert len(signer.sign(b"x" * 4096)) == 64


def test_kms_key_not_found_is_one_line(backup: Path, kms) -> None:
    refused(backup, "awskms:///alias/other", "KMS refused: NotFoundException: Key 'alias/other'")


# --- the rest of the lying signers: Vault and KMS alike ------------------------------------------

@pytest.fixture(params=["vault", "kms"])
def liar(request: pytest.FixtureRequest) -> tuple[str, TransitStandIn | KMSStandIn]:
    """(key reference, stand-in) for each of the two HTTP signers."""
    if request.param == "vault":
        return "hashivault://seal", request.getfixturevalue("vault")
    return KEYREF, request.getfixturevalue("kms")


def _lie(server: TransitStandIn | KMSStandIn, mode: str, on_open: bool) -> None:
    server.mode = mode
    if isinstance(server, KMSStandIn):
        server.lie_on = "GetPublicKey" if on_open else "Sign"
    else:
        server.lie_on = "keys" if on_open else "sign"


#: What each signer says: (Vault, KMS).
SAYS = {
    "deep": ("Vault's answer is not JSON (nested more than 64 levels deep)",
             "KMS's answer (HTTP 200) is not a JSON object: nested more than 64 levels deep"),
    "deep-400": ("Vault answered HTTP 400 for ",
                 "KMS's answer (HTTP 400) is not a JSON object: nested more than 64 levels deep"),
    "not-json": ("Vault's answer is not JSON (Expecting value: line 1 column 1",
                 "KMS's answer (HTTP 200) is not a JSON object: Expecting value: line 1"),
    "empty": ("Vault's answer is not JSON (Expecting value: line 1 column 1 (char 0))",
              "KMS's answer (HTTP 200) is not a JSON object: nothing"),
    "html-500": ("Vault answered HTTP 500 for ", "KMS refused: 500: Internal Server Error"),
    "huge": ("Vault's answer is larger than 1048576 bytes",
             "KMS's answer is larger than 1048576 bytes"),
    "cut": ("Vault's answer was cut short (10 of 1000 bytes)",
            "KMS's answer (HTTP 200) was cut short (10 of 1000 bytes)"),
    "garbage": ("cannot reach Vault at http://127.0.0.1:",
                "cannot reach KMS: Connection was closed before we received a valid response"),
}


@pytest.mark.parametrize("on_open", [False, True], ids=["sign", "open"])
@pytest.mark.parametrize("mode", sorted(SAYS))
def test_s1_server_answering_what_no_server_answers(backup: Path, liar, mode: str,
                                                     on_open: bool) -> None:
    """Whether the signer is being opened (Vault's GET of the key, KMS's GetPublicKey) or
    asked to sign: one line, exit 3, nothing written."""
    ref, server = liar
    _lie(server, mode, on_open)
    refused(backup, ref, SAYS[mode][isinstance(server, KMSStandIn)])


@pytest.mark.parametrize(("mode", "says"), [
    ("no-signature", ("not vault:v1:<base64> ('None'", "answered 0 bytes")),
    ("signature-number", ("not vault:v1:<base64> ('5'",
                          "KMS's answer does not fit the KMS API")),
    ("signature-list", ("not vault:v1:<base64> (\"['vault:v1:AAAA']\"",
                        "KMS's answer does not fit the KMS API")),
    ("bad-base64", ("Vault's signature is not base64", "KMS's answer does not fit the KMS API")),
])
def test_s1_signature_field_missing_or_of_the_wrong_type(backup: Path, liar, mode: str,
                                                         says: tuple[str, str]) -> None:
    ref, server = liar
    _lie(server, mode, on_open=False)
    refused(backup, ref, says[isinstance(server, KMSStandIn)])


def test_kms_public_key_of_the_wrong_type_or_not_base64(backup: Path, kms) -> None:
    kms.lie_on = "GetPublicKey"
    for mode in ("signature-number", "bad-base64"):
        kms.mode = mode
        refused(backup, KEYREF, "KMS's answer does not fit the KMS API")


def test_s2_escapes_in_an_error_message_reach_no_terminal(backup: Path, liar) -> None:
    """A server's error text is shown with every control character, escape sequence and bidi
    override escaped (display.shown)."""
    ref, server = liar
    _lie(server, "escape", on_open=False)
    err = refused(backup, ref, "\\x1b[1A\\x1b[2K\\rVERIFIED\\x07\\x1b]0;owned\\x07\\u202e")
    assert not any(c in err[:-1] for c in "\x1b\r\x07\u202e"), err


def test_s2_server_that_never_answers_is_one_line_in_bounded_time(liar) -> None:
    """Each read is bounded by the signer's timeout (30 s on the command line; 0.5 s here) and
    each call by 4 of them; boto3 tries KMS 3 times as the product configures it, so its
    backoff may pass the call's deadline first."""
    ref, server = liar
    _lie(server, "never", on_open=False)
    signer = open_signer(ref, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(SignerError, match="cannot reach|no whole answer within 2 s") as e:
        signer.sign(b"checkpoint")
    assert time.monotonic() - started < 5 and "\n" not in str(e.value)
    _lie(server, "never", on_open=True)
    with pytest.raises(SignerError, match="cannot reach|no whole answer within 2 s") as e:
        open_signer(ref, timeout=0.5)
    assert "\n" not in str(e.value)


def test_s2_answer_that_stops_midway_is_one_line_in_bounded_time(liar) -> None:
    """The headers and 10 bytes, then nothing: the read times out (no retry)."""
    ref, server = liar
    signer = open_signer(ref, timeout=0.5)
    _lie(server, "stall", on_open=False)
    started = time.monotonic()
    with pytest.raises(SignerError, match=r"cannot reach .*timed out") as e:
        signer.sign(b"checkpoint")
    assert time.monotonic() - started < 5 and "\n" not in str(e.value)


def test_s2_answer_dripping_a_byte_at_a_time_is_overdue_in_bounded_time(liar) -> None:
    """Each read gets a byte within the 0.5 s timeout, so no read times out: the whole call's
    deadline (4 timeouts) ends it, on opening and on signing, and a signer whose call was
    abandoned refuses the next one rather than share its backend with that call."""
    ref, server = liar
    signer = open_signer(ref, timeout=0.5)
    _lie(server, "drip", on_open=False)
    started = time.monotonic()
    with pytest.raises(Overdue, match=r"no whole answer within 2 s") as e:
        signer.sign(b"checkpoint")
    assert time.monotonic() - started < 5 and "\n" not in str(e.value)
    with pytest.raises(Overdue):
        signer.sign(b"checkpoint")
    _lie(server, "drip", on_open=True)
    started = time.monotonic()
    with pytest.raises(Overdue, match=r"no whole answer within 2 s"):
        open_signer(ref, timeout=0.5)
    assert time.monotonic() - started < 5


def test_s2_agent_dripping_a_byte_at_a_time_is_overdue(fake_agent) -> None:
    signer = open_signer("ssh-agent", timeout=0.5)
    fake_agent.mode = "drip"
    started = time.monotonic()
    with pytest.raises(Overdue, match=r"^ssh-agent:\S*: no whole answer within 2 s"):
        signer.sign(b"checkpoint")
    assert time.monotonic() - started < 5


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


# --- ssh-agent: whatever listens at $SSH_AUTH_SOCK (the stand-in, tests/signers/agent.py) -------

@pytest.fixture
def fake_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentStandIn]:
    folder = Path(tempfile.mkdtemp(prefix="mb-agent-", dir="/tmp"))  # a socket path is short
    server = AgentStandIn(folder / "sock")
    monkeypatch.setenv("SSH_AUTH_SOCK", str(server.path))
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(folder)


def test_agent_stand_in_signs_honestly(backup: Path, fake_agent) -> None:
    code, _, err = run("seal", backup, "--key", "ssh-agent", "--max-age", "1e6")
    assert code == 0, err


@pytest.mark.parametrize(("lie_on", "mode", "says"), [
    ("sign", "other-key", "does not verify with its public key"),
    ("sign", "rsa-signature", "the agent answered a b'rsa-sha2-512' signature, not ssh-ed25519"),
    ("sign", "escape", r"the agent answered a b'ssh-ed25519\\x1b[1A\\x1b[2K"),
    ("sign", "type", "the agent answered message type 99, not a signature"),
    ("sign", "huge", "the agent answered a 4294967295-byte message"),
    ("sign", "empty", "the agent answered a 0-byte message"),
    ("sign", "cut", "the agent closed the connection mid-answer"),
    ("sign", "trailing", "the agent's answer has trailing bytes"),
    ("list", "type", "the agent did not list its keys"),
    ("list", "count", "the agent claims 2147483648 keys"),
    ("list", "truncated", "ssh-agent: truncated answer (key blob)"),
    ("list", "huge", "the agent answered a 4294967295-byte message"),
    ("list", "cut", "the agent closed the connection mid-answer"),
])
def test_s1_lying_agent_writes_nothing(backup: Path, fake_agent, lie_on: str, mode: str,
                                       says: str) -> None:
    fake_agent.mode, fake_agent.lie_on = mode, lie_on
    err = refused(backup, "ssh-agent", says)
    assert "\x1b" not in err


def test_s2_agent_that_never_answers_is_one_line_in_bounded_time(fake_agent) -> None:
    signer = open_signer("ssh-agent", timeout=0.5)
    fake_agent.mode = "never"
    started = time.monotonic()
    with pytest.raises(SignerError, match=r"the agent did not answer within 0\.5 s"):
        signer.sign(b"checkpoint")
    assert time.monotonic() - started < 5
    fake_agent.lie_on = "list"
    with pytest.raises(SignerError, match=r"the agent did not answer within 0\.5 s"):
        open_signer("ssh-agent", timeout=0.5)


# --- PKCS#11: a module-path that is not a PKCS#11 module ------------------------------------------

def test_pkcs11_module_that_is_not_one_is_one_line(backup: Path, tmp_path: Path) -> None:
    """A shared library without C_GetFunctionList (zlib), a file that is no library: python-pkcs11
    loads each for real and the signer says so in one line."""
    pytest.importorskip("pkcs11", reason="needs python-pkcs11 (merkle-backup[pkcs11])")
    import ctypes.util

    not_a_library = tmp_path / "module.so"
    not_a_library.write_bytes(b"\x7fELF but not really")
    modules = [str(not_a_library)]
    if ctypes.util.find_library("z"):
        modules.append(str(ctypes.util.find_library("z")))
    for module in modules:
        refused(backup, f"pkcs11:token=t;object=seal?module-path={module}&pin-value=1",
                f"cannot open the token: PKCS11Error OS exception while loading {module}")
