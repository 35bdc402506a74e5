"""Ed25519 keys and signatures (docs/format.md §6), against external vectors.

Vectors (provenance in tests/vectors/SOURCES.md): RFC 8032 §7.1, Wycheproof ed25519_test.json,
C2SP CCTV ed25519vectors.json, and the C2SP signed-note example.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from merkle_backup import signing
from merkle_backup.core.checkpoint import Checkpoint
from merkle_backup.errors import (
    CannotCheck,
    KeyFileError,
    NotAuthentic,
    SignatureError,
    StorageError,
)
from merkle_backup.signing import (
    LOW_ORDER_KEYS,
    PublicKey,
    check_public_key,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    public_key_of,
    sign,
)

VECTORS = Path(__file__).resolve().parent / "vectors"
P = 2**255 - 19
# RFC 8410 DER prefixes: PKCS#8 v1 Ed25519 private key, SubjectPublicKeyInfo Ed25519 public key.
PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def load_json(name: str) -> object:
    return json.loads((VECTORS / name).read_text())


def y_is_non_canonical(raw: bytes) -> bool:
    """§6: the 255-bit y field is >= 2^255 - 19."""
    return int.from_bytes(raw, "little") & ((1 << 255) - 1) >= P


CCTV = load_json("cctv_ed25519vectors.json")
CCTV_LOW_ORDER_A = {bytes.fromhex(v["key"]) for v in CCTV if "low_order_A" in (v["flags"] or [])}
CCTV_NON_CANONICAL_A = {bytes.fromhex(v["key"]) for v in CCTV if "non_canonical_A" in (v["flags"] or [])}


def is_weak(raw: bytes) -> bool:
    return raw in CCTV_LOW_ORDER_A or raw in CCTV_NON_CANONICAL_A or y_is_non_canonical(raw)


def spki_pem(raw: bytes) -> bytes:
    der = SPKI_PREFIX + raw
    return b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END PUBLIC KEY-----\n"


# --- RFC 8032 -------------------------------------------------------------------------------------

RFC8032 = load_json("rfc8032_ed25519.json")["cases"]


@pytest.mark.parametrize("case", RFC8032, ids=[c["name"] for c in RFC8032])
def test_rfc8032(case: dict) -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(case["secret_key"]))
    message, expected = bytes.fromhex(case["message"]), bytes.fromhex(case["signature"])
    public = public_key_of(private)
    assert public.raw == bytes.fromhex(case["public_key"])
    assert sign(private, message) == expected
    public.verify(expected, message)
    check_public_key(public.raw, "rfc8032").verify(expected, message)
    tampered = bytes([expected[0] ^ 1]) + expected[1:]
    with pytest.raises(SignatureError):
        public.verify(tampered, message)
    with pytest.raises(SignatureError):
        public.verify(expected, message + b"\x00")


def test_key_id_is_sha256_of_raw_public_key() -> None:
    raw = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    # computed with `xxd -r -p | sha256sum`
    expected = bytes.fromhex("21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9")
    assert key_id(raw) == expected
    assert PublicKey(raw, "x").key_id == expected
    assert key_id(raw) == hashlib.sha256(raw).digest()


# --- Wycheproof -----------------------------------------------------------------------------------

WYCHEPROOF = load_json("wycheproof_ed25519_test.json")
WYCHEPROOF_CASES = [
    (bytes.fromhex(group["publicKey"]["pk"]), test)
    for group in WYCHEPROOF["testGroups"]
    for test in group["tests"]
]


def test_wycheproof_file_is_complete() -> None:
    assert WYCHEPROOF["algorithm"] == "EDDSA"
    assert len(WYCHEPROOF_CASES) == WYCHEPROOF["numberOfTests"] == 151


@pytest.mark.parametrize(("pk", "test"), WYCHEPROOF_CASES,
                         ids=[f"tc{t['tcId']}" for _, t in WYCHEPROOF_CASES])
def test_wycheproof(pk: bytes, test: dict) -> None:
    message, signature = bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
    try:
        public = check_public_key(pk, "wycheproof")
    except KeyFileError:
        # Refused keys must be exactly the weak ones; check the vector with cryptography itself.
        assert is_weak(pk)
        try:
            Ed25519PublicKey.from_public_bytes(pk).verify(signature, message)
            verified = True
        except (InvalidSignature, ValueError):
            verified = False
    else:
        assert not is_weak(pk)
        try:
            public.verify(signature, message)
            verified = True
        except SignatureError:
            verified = False
    if test["result"] == "valid":
        assert verified
    elif test["result"] == "invalid":
        assert not verified
    else:
        assert test["result"] == "acceptable"


# --- C2SP CCTV: weak public keys ------------------------------------------------------------------

def test_low_order_keys_are_exactly_the_cctv_ones() -> None:
    assert len(CCTV) == 914
    assert len(CCTV_LOW_ORDER_A) == 14
    assert LOW_ORDER_KEYS == CCTV_LOW_ORDER_A


@pytest.mark.parametrize("raw", sorted(CCTV_LOW_ORDER_A | CCTV_NON_CANONICAL_A), ids=bytes.hex)
def test_cctv_weak_keys_are_refused(raw: bytes) -> None:
    with pytest.raises(KeyFileError, match="weak key"):
        check_public_key(raw, "cctv")


def test_cctv_every_key_refused_iff_weak() -> None:
    keys = {bytes.fromhex(v["key"]) for v in CCTV}
    refused = set()
    for raw in keys:
        try:
            check_public_key(raw, "cctv")
        except KeyFileError:
            refused.add(raw)
    assert refused == CCTV_LOW_ORDER_A | CCTV_NON_CANONICAL_A
    assert len(keys - refused) == 8


def test_cctv_accepted_keys_verify_like_cryptography() -> None:
    """For every vector whose key is accepted, PublicKey.verify agrees with pyca/cryptography."""
    checked = 0
    for vector in CCTV:
        raw = bytes.fromhex(vector["key"])
        if raw in CCTV_LOW_ORDER_A | CCTV_NON_CANONICAL_A:
            continue
        message, signature = vector["msg"].encode(), bytes.fromhex(vector["sig"])
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
            expected = True
        except InvalidSignature:
            expected = False
        try:
            PublicKey(raw, "cctv").verify(signature, message)
            verified = True
        except SignatureError:
            verified = False
        assert verified == expected, vector["number"]
        checked += 1
    assert checked > 300


@pytest.mark.parametrize("y", range(P, 2**255), ids=lambda y: f"p+{y - P}")
@pytest.mark.parametrize("sign_bit", [0, 1])
def test_every_non_canonical_y_is_refused(y: int, sign_bit: int) -> None:
    raw = (y | (sign_bit << 255)).to_bytes(32, "little")
    assert y_is_non_canonical(raw)
    with pytest.raises(KeyFileError):
        check_public_key(raw, "non-canonical")


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_wrong_length_public_key_is_refused(length: int) -> None:
    with pytest.raises(KeyFileError):
        check_public_key(b"\x01" * length, "short")


def test_ordinary_keys_are_accepted() -> None:
    for _ in range(20):
        raw = public_key_of(Ed25519PrivateKey.generate()).raw
        assert check_public_key(raw, "fresh").raw == raw
    # p - 2 is a canonical y (not necessarily on the curve: only the two weak classes are refused)
    check_public_key((P - 2).to_bytes(32, "little"), "canonical")


def test_signature_of_wrong_length_is_signature_error() -> None:
    private = Ed25519PrivateKey.generate()
    public = public_key_of(private)
    good = sign(private, b"m")
    for bad in (b"", good[:63], good + b"\x00", good * 2):
        with pytest.raises(SignatureError):
            public.verify(bad, b"m")


def test_error_families() -> None:
    assert issubclass(SignatureError, NotAuthentic) and SignatureError("x").exit_code == 1
    assert issubclass(KeyFileError, CannotCheck) and KeyFileError("x").exit_code == 3


# --- Key files ------------------------------------------------------------------------------------

def _pem_body(pem: bytes) -> bytes:
    lines = pem.strip().split(b"\n")
    return base64.b64decode(b"".join(lines[1:-1]))


def test_keygen_writes_pkcs8_and_spki_pem(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        path, pub_path = generate_keypair(tmp_path / "seal.key")
    finally:
        os.umask(old_umask)
    assert path == tmp_path / "seal.key" and pub_path == tmp_path / "seal.key.pub"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seal.key", "seal.key.pub"]

    private_pem, public_pem = path.read_bytes(), pub_path.read_bytes()
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert private_pem.endswith(b"-----END PRIVATE KEY-----\n")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert public_pem.endswith(b"-----END PUBLIC KEY-----\n")
    private_der, public_der = _pem_body(private_pem), _pem_body(public_pem)
    assert private_der.startswith(PKCS8_PREFIX) and len(private_der) == len(PKCS8_PREFIX) + 32
    assert public_der.startswith(SPKI_PREFIX) and len(public_der) == len(SPKI_PREFIX) + 32

    private = load_private_key(path)
    public = load_public_key(pub_path)
    assert public.raw == public_der[len(SPKI_PREFIX):]
    assert public_key_of(private).raw == public.raw
    assert public.key_id == hashlib.sha256(public.raw).digest()
    assert public.source == str(pub_path)
    public.verify(sign(private, b"checkpoint"), b"checkpoint")


def test_keygen_makes_a_new_key_each_time(tmp_path: Path) -> None:
    _, a = generate_keypair(tmp_path / "a")
    _, b = generate_keypair(tmp_path / "b")
    assert load_public_key(a).raw != load_public_key(b).raw


@pytest.mark.parametrize("existing", ["seal.key", "seal.key.pub"])
def test_keygen_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_bytes(b"precious")
    with pytest.raises(StorageError):
        generate_keypair(tmp_path / "seal.key")
    assert (tmp_path / existing).read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == [existing]


def test_keygen_never_replaces_a_key_created_during_keygen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "seal.key"

    class RacingKey:
        """Another process writes the key file while this one generates its key."""

        @staticmethod
        def generate() -> Ed25519PrivateKey:
            path.write_bytes(b"the other process's key")
            return Ed25519PrivateKey.generate()

    monkeypatch.setattr(signing, "Ed25519PrivateKey", RacingKey)
    try:
        generate_keypair(path)
    except StorageError:
        pass
    assert path.read_bytes() == b"the other process's key"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not on PATH")
def test_openssl_reads_both_key_files(tmp_path: Path) -> None:
    path, pub_path = generate_keypair(tmp_path / "seal.key")
    subprocess.run(["openssl", "pkey", "-in", str(path), "-noout"], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pub_path), "-noout"], check=True,
                   capture_output=True)
    derived = subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout"], check=True,
                             capture_output=True).stdout
    assert derived == pub_path.read_bytes()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not on PATH")
def test_keys_written_by_openssl_load(tmp_path: Path) -> None:
    key, pub = tmp_path / "o.key", tmp_path / "o.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True,
                   capture_output=True)
    assert public_key_of(load_private_key(key)).raw == load_public_key(pub).raw


@pytest.fixture(scope="module")
def foreign_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Key files that are not what load_public_key / load_private_key accept."""
    d = tmp_path_factory.mktemp("keys")
    ed = Ed25519PrivateKey.generate()
    pem, der = serialization.Encoding.PEM, serialization.Encoding.DER
    pkcs8, spki = serialization.PrivateFormat.PKCS8, serialization.PublicFormat.SubjectPublicKeyInfo
    plain = serialization.NoEncryption()
    others = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "ed448": ed448.Ed448PrivateKey.generate(),
        "x25519": x25519.X25519PrivateKey.generate(),
    }
    files: dict[str, bytes] = {
        "garbage": b"not a key\n",
        "empty": b"",
        "binary": os.urandom(64),
        "ed25519-private": ed.private_bytes(pem, pkcs8, plain),
        "ed25519-public": ed.public_key().public_bytes(pem, spki),
        "ed25519-private-der": ed.private_bytes(der, pkcs8, plain),
        "ed25519-public-der": ed.public_key().public_bytes(der, spki),
        "ed25519-encrypted": ed.private_bytes(pem, pkcs8, serialization.BestAvailableEncryption(b"pw")),
        "ed25519-openssh": ed.private_bytes(pem, serialization.PrivateFormat.OpenSSH, plain),
        "ed25519-raw": ed.public_key().public_bytes(serialization.Encoding.Raw,
                                                    serialization.PublicFormat.Raw),
        "low-order-public": spki_pem(bytes(32)),
        "non-canonical-public": spki_pem(bytes.fromhex("ed" + "ff" * 30 + "7f")),
        "truncated-pem": ed.public_key().public_bytes(pem, spki)[:60],
        "too-large": ed.public_key().public_bytes(pem, spki) + b"#" * (64 * 1024),
    }
    for name, key in others.items():
        files[f"{name}-private"] = key.private_bytes(pem, pkcs8, plain)
        files[f"{name}-public"] = key.public_key().public_bytes(pem, spki)
    paths = {}
    for name, data in files.items():
        paths[name] = d / name
        paths[name].write_bytes(data)
    paths["missing"] = d / "missing"
    paths["directory"] = d
    return paths


PUBLIC_REFUSED = [
    "missing", "directory", "garbage", "empty", "binary", "ed25519-private", "ed25519-public-der",
    "ed25519-encrypted", "ed25519-openssh", "ed25519-raw", "low-order-public", "non-canonical-public",
    "truncated-pem", "too-large", "rsa-public", "ec-public", "ed448-public", "x25519-public",
    "rsa-private", "ec-private",
]
PRIVATE_REFUSED = [
    "missing", "directory", "garbage", "empty", "binary", "ed25519-public", "ed25519-private-der",
    "ed25519-encrypted", "ed25519-openssh", "ed25519-raw", "low-order-public", "truncated-pem",
    "rsa-private", "ec-private", "ed448-private", "x25519-private", "rsa-public", "ec-public",
]


@pytest.mark.parametrize("name", PUBLIC_REFUSED)
def test_load_public_key_refuses(foreign_keys: dict[str, Path], name: str) -> None:
    with pytest.raises(KeyFileError):
        load_public_key(foreign_keys[name])


@pytest.mark.parametrize("name", PRIVATE_REFUSED)
def test_load_private_key_refuses(foreign_keys: dict[str, Path], name: str) -> None:
    with pytest.raises(KeyFileError):
        load_private_key(foreign_keys[name])


def test_load_accepts_the_good_files(foreign_keys: dict[str, Path]) -> None:
    private = load_private_key(foreign_keys["ed25519-private"])
    public = load_public_key(foreign_keys["ed25519-public"])
    assert public_key_of(private).raw == public.raw


# --- C2SP signed-note compatibility (docs/format.md §6) -------------------------------------------

def c2sp_key_hash(name: str, raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + b"\x01" + raw).digest()[:4]


def c2sp_open(note: bytes, name: str, raw: bytes) -> bytes:
    """A C2SP signed-note verifier (signed-note.md), independent of merkle_backup.signing.

    Returns the signed text if a signature line by ``name`` with this key verifies.
    """
    text = note.decode("utf-8")
    split = text.rindex("\n\n")
    body, signatures = text[: split + 1], text[split + 2 :]
    assert signatures.endswith("\n")
    for line in signatures[:-1].split("\n"):
        prefix = "\u2014 " + name + " "
        if not line.startswith(prefix):
            continue
        blob = base64.b64decode(line[len(prefix):], validate=True)
        if len(blob) != 4 + 64 or blob[:4] != c2sp_key_hash(name, raw):
            continue
        Ed25519PublicKey.from_public_bytes(raw).verify(blob[4:], body.encode())
        return body.encode()
    raise AssertionError(f"no signature by {name!r}")


def test_c2sp_example_note() -> None:
    example = load_json("c2sp_signed_note.json")
    name, raw = example["key_name"], bytes.fromhex(example["public_key_hex"])
    signed_text = example["signed_text"].encode()
    signature = bytes.fromhex(example["signature_hex"])
    # the verifier key: name+hex(key hash)+base64(0x01 ‖ pk)
    vkey_name, vkey_hash, vkey_blob = example["vkey"].split("+")
    assert vkey_name == name
    assert bytes.fromhex(vkey_hash) == c2sp_key_hash(name, raw) == bytes.fromhex(example["key_id_hex"])
    assert base64.b64decode(vkey_blob) == b"\x01" + raw
    # the signature, through merkle-backup's PublicKey
    public = check_public_key(raw, "c2sp")
    public.verify(signature, signed_text)
    with pytest.raises(SignatureError):
        public.verify(signature, signed_text.replace(b"example", b"Example"))
    # and the whole note, through the independent verifier
    assert c2sp_open(example["note"].encode(), name, raw) == signed_text


@pytest.mark.parametrize("name", ["merkle-backup.example/ops", "a", "velero-sealer"])
def test_checkpoint_is_a_valid_c2sp_signed_note(name: str) -> None:
    private = Ed25519PrivateKey.generate()
    public = public_key_of(private)
    checkpoint = Checkpoint(
        backup="demo-small", uid="-", tree_size=330, root=bytes(32), archive_digest=bytes(32),
        archive_size=51234, created=datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
        key_id=public.key_id,
    ).body()
    assert b"\n\n" not in checkpoint and checkpoint.endswith(b"\n")
    signature = sign(private, checkpoint)
    public.verify(signature, checkpoint)
    # docs/format.md §6: checkpoint ‖ "\n" ‖ "— " ‖ name ‖ " " ‖ base64(keyhash[0:4] ‖ sig) ‖ "\n"
    note = (
        checkpoint + b"\n" + "\u2014 ".encode() + name.encode() + b" "
        + base64.b64encode(c2sp_key_hash(name, public.raw) + signature) + b"\n"
    )
    assert c2sp_open(note, name, public.raw) == checkpoint
    # A note over a modified checkpoint does not verify.
    forged = note.replace(b"tree-size 330", b"tree-size 331")
    with pytest.raises(InvalidSignature):
        c2sp_open(forged, name, public.raw)
