"""Ed25519 keys and signatures (docs/format.md §6), via pyca/cryptography.

Keys are PEM: PKCS#8 for the private key (written with mode 0600), SubjectPublicKeyInfo for
the public key, so ``openssl pkey`` reads both. The verifier only ever trusts keys the user
names; it rejects the 14 low-order encodings listed by C2SP CCTV and every non-canonical
encoding (y >= p), which would let one signature verify for many messages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, TypeAlias, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from merkle_backup.errors import KeyFileError, SignatureError, StorageError

SIGNATURE_SIZE = 64
_P = 2**255 - 19
# C2SP CCTV ed25519/README.md: the encodings of the 8 small-order points, canonical and not.
LOW_ORDER_KEYS = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    )
)


@dataclass(frozen=True)
class PublicKey:
    """A trusted Ed25519 public key and where it came from.

    The bounds come from a trust file (docs/format.md §6.3): a retired key stops counting for
    seals created after ``not_after`` and for log heads larger than ``not_after_size``.
    """

    raw: bytes
    source: str
    not_after: datetime | None = None
    not_after_size: int | None = None

    @property
    def key_id(self) -> bytes:
        return key_id(self.raw)

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise SignatureError unless ``signature`` is this key's over ``message``."""
        if len(signature) != SIGNATURE_SIZE:
            raise SignatureError(f"signature is {len(signature)} bytes, expected 64")
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature as e:
            raise SignatureError(f"signature does not verify with trusted key {self.source}") from e


@runtime_checkable
class Signer(Protocol):
    """What every signing command holds (docs/format.md §6.1): a name to show, the public key
    verifiers pin, and ``sign(message) -> 64 bytes`` (pure Ed25519, RFC 8032, verified
    locally before it is returned). ``merkle_backup.signers`` makes them (a key file,
    ssh-agent, AWS KMS, Vault/OpenBao transit, PKCS#11); declared here, with no I/O, so that
    what signs and what verifies share the key types without the verifier importing signers."""

    @property
    def name(self) -> str: ...

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, message: bytes) -> bytes: ...


#: What the signing call sites take: a key in memory, or a ``Signer``.
SigningKey: TypeAlias = "Ed25519PrivateKey | Signer"


def key_id(raw_public_key: bytes) -> bytes:
    """docs/format.md §6: SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(raw_public_key).digest()


def check_public_key(raw: bytes, source: str) -> PublicKey:
    if len(raw) != 32:
        raise KeyFileError(f"{source}: an Ed25519 public key is 32 bytes, got {len(raw)}")
    if raw in LOW_ORDER_KEYS:
        raise KeyFileError(f"{source}: weak key: a low-order Ed25519 point")
    if int.from_bytes(raw, "little") & ((1 << 255) - 1) >= _P:
        raise KeyFileError(f"{source}: weak key: non-canonical Ed25519 encoding")
    return PublicKey(raw, source)


def generate_keypair(path: Path) -> tuple[Path, Path]:
    """Write a new private key to ``path`` (0600) and its public key to ``path.pub``."""
    pub_path = path.with_name(path.name + ".pub")
    for p in (path, pub_path):
        if p.exists():
            raise StorageError(f"{p} already exists; refusing to overwrite a key")
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    from merkle_backup.storage.local import write_atomic  # key files: the only writes here

    write_atomic(path, private_pem, mode=0o600, replace=False)
    write_atomic(pub_path, public_pem, mode=0o644, replace=False)
    return path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    data = _read_key_file(path, "private")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({e})") from e
    except Exception as e:  # cryptography raises UnsupportedAlgorithm for unknown key types
        raise KeyFileError(f"{path}: unreadable private key ({e})") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    check_public_key(_raw_public(key.public_key()), str(path))
    return key


def load_public_key(path: Path) -> PublicKey:
    data = _read_key_file(path, "public")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path}: not a PEM public key ({e})") from e
    except Exception as e:
        raise KeyFileError(f"{path}: unreadable public key ({e})") from e
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key ({type(key).__name__})")
    return check_public_key(_raw_public(key), str(path))


def public_key_of(private: SigningKey, source: str = "signing key") -> PublicKey:
    """The public key of a key in memory, or a ``Signer``'s (whose ``source`` is its name)."""
    if isinstance(private, Ed25519PrivateKey):
        return check_public_key(_raw_public(private.public_key()), source)
    return private.public_key


def sign(private: SigningKey, message: bytes) -> bytes:
    """Ed25519 over ``message``; a ``Signer`` has verified its answer before returning it."""
    return private.sign(message)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


MAX_KEY_FILE_BYTES = 64 * 1024


def _read_key_file(path: Path, kind: str) -> bytes:
    """A PEM key file the user named: a regular file (a link to one is followed; a FIFO,
    device or folder is refused, never waited on), at most 64 KiB, holding exactly one PEM
    block (``kind``: "private" or "public", for the hints). docs/threat-model.md T76: a file
    of two keys (a rotation's old and new) was read as its first alone; an OpenSSH or DER key
    got the crypto library's error with no word on what to do."""
    from merkle_backup.storage.files import read_bounded  # key files: the only reads here

    data = read_bounded(path, MAX_KEY_FILE_BYTES, follow=True, error=KeyFileError,
                        what="key file")
    text = data.lstrip()
    if text.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
        raise KeyFileError(f"{path}: an OpenSSH private key; merkle-backup reads PEM (PKCS#8): "
                           "convert a copy with ssh-keygen -p -m PKCS8 -f COPY")
    if text.startswith((b"ssh-ed25519 ", b"ssh-rsa ", b"ecdsa-sha2-")):
        raise KeyFileError(f"{path}: an OpenSSH public key; merkle-backup reads PEM: "
                           f"ssh-keygen -e -m PKCS8 -f {path} > KEY.pem")
    if not text.startswith(b"-----BEGIN "):
        pubin = "-pubin " if kind == "public" else ""
        raise KeyFileError(f"{path}: not a PEM {kind} key (DER? convert it: openssl pkey "
                           f"{pubin}-inform DER -in {path} -out KEY.pem)")
    blocks = data.count(b"-----BEGIN ")
    if blocks != 1:
        how = "give each key its own --trust" if kind == "public" else "one key per --key file"
        raise KeyFileError(f"{path}: holds {blocks} PEM blocks, not one key ({how})")
    return data
