"""The signer interface (docs/format.md §6.1) and the local check every signature passes.

A backend (a key file, ssh-agent, AWS KMS, a Vault/OpenBao transit key, a PKCS#11 token) only
has to say which Ed25519 public key it holds and produce 64 bytes for a message. ``Checked``
wraps it: every signature is verified locally against the backend's public key (and so against
a key the user pinned, which must equal it) before anyone sees it. A backend that answers with
another key, a prehash (Ed25519ph) signature, a wrong key version or an unstripped wrapper is
refused with one line: ``SignerError``, exit 3.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from merkle_backup.errors import SignerError
from merkle_backup.signing import SIGNATURE_SIZE, PublicKey, Signer

__all__ = ["Backend", "Checked", "Overdue", "Signer", "check_signature", "within"]

T = TypeVar("T")


class Overdue(SignerError):
    """A signer's call that did not end within its deadline (it may still be running)."""


def within(seconds: float | None, name: str, call: Callable[[], T]) -> T:
    """``call()`` on a thread of its own, given ``seconds`` in all to end (None: no bound).

    Every backend's timeout bounds one read; a server or agent that answers a byte at a time,
    each just within it, would hold a run for as long as it likes. This bounds the whole call:
    Overdue, one line, and the thread is abandoned (a daemon: it cannot keep the process up).
    """
    if seconds is None:
        return call()
    box: dict[str, T] = {}
    failed: list[BaseException] = []

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as e:  # raised again on the caller's thread
            failed.append(e)

    worker = threading.Thread(target=run, name="merkle-backup-signer", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise Overdue(f"{name}: no whole answer within {seconds:g} s (a signer that is stuck, "
                      "or answers a little at a time); nothing was written")
    if failed:
        raise failed[0]
    return box["value"]


class Backend(Protocol):
    """What a backend implements; ``Checked`` turns it into a ``Signer``."""

    name: str
    public_key: PublicKey

    def raw_sign(self, message: bytes) -> bytes: ...

    def close(self) -> None: ...


class Checked:
    """A ``Signer`` over a backend: one signature at a time (agents, sessions and HTTP
    connections are not shared between threads: seal-all signs from a thread pool), each
    verified before it is returned."""

    def __init__(self, backend: Backend, *, pin: PublicKey | None = None,
                 deadline: float | None = None) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._deadline = deadline  # for each signature, in all (``within``)
        self._overdue: Overdue | None = None  # a call that never ended: the backend is busy
        key = backend.public_key
        if pin is not None and pin.raw != key.raw:
            raise SignerError(
                f"{backend.name}: the signer's public key (key ID {key.key_id.hex()[:16]}…) is not "
                f"the pinned key {pin.source} (key ID {pin.key_id.hex()[:16]}…)")
        self._verifier = Ed25519PublicKey.from_public_bytes(key.raw)

    @property
    def name(self) -> str:
        return self._backend.name

    @property
    def public_key(self) -> PublicKey:
        return self._backend.public_key

    def sign(self, message: bytes) -> bytes:
        with self._lock:
            if self._overdue is not None:  # its abandoned call may still be using the backend
                raise self._overdue
            try:
                signature = within(self._deadline, self.name,
                                   lambda: self._backend.raw_sign(message))
            except Overdue as e:
                self._overdue = e
                raise
        check_signature(self.name, self._verifier, signature, message)
        return signature

    def close(self) -> None:
        with self._lock:
            if self._overdue is None:
                self._backend.close()

    def __repr__(self) -> str:
        return f"<signer {self.name} key ID {self.public_key.key_id.hex()[:16]}>"


def check_signature(name: str, verifier: Ed25519PublicKey, signature: object,
                    message: bytes) -> None:
    """docs/format.md §6.1: a signer's answer is 64 bytes that verify as pure Ed25519 over
    exactly ``message`` with its public key; anything else is refused, never written."""
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        size = len(signature) if isinstance(signature, bytes) else type(signature).__name__
        raise SignerError(f"{name}: the signer answered {size} bytes, not a 64-byte Ed25519 "
                          "signature")
    try:
        verifier.verify(signature, message)
    except InvalidSignature as e:
        raise SignerError(
            f"{name}: the signer's signature does not verify with its public key (another key "
            "or key version, or a prehash mode such as Ed25519ph?); nothing was written") from e
