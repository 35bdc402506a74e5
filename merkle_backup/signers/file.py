"""A signer over a PEM private key file (docs/format.md §6): the default, as before."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from merkle_backup.signing import PublicKey, load_private_key, public_key_of


class FileBackend:
    def __init__(self, private: Ed25519PrivateKey, name: str) -> None:
        self._private = private
        self.name = name
        self.public_key: PublicKey = public_key_of(private, name)

    @classmethod
    def open(cls, path: Path) -> FileBackend:
        return cls(load_private_key(path), str(path))

    def raw_sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def close(self) -> None:
        pass
