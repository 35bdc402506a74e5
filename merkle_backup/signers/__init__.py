"""Where signatures come from (docs/format.md §6.1): one ``Signer`` interface over a PEM key
file, ssh-agent, AWS KMS, a Vault/OpenBao transit key or a PKCS#11 token.

``open_signer(ref)`` takes what ``--key`` takes: a path, or a key reference spelled as cosign
spells it (``ssh-agent:…``, ``awskms://…``, ``hashivault://…``, ``openbao://…``,
``pkcs11:…``). Every signature a ``Signer`` returns has been verified locally against its public
key (``base.Checked``). Signers do I/O (sockets, HTTPS, an HSM, key files); the verifier's side
(``trust``, ``signing.PublicKey``) does not import this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from merkle_backup.errors import SignerError, UsageError
from merkle_backup.signers.base import Checked, Signer, within
from merkle_backup.signing import PublicKey

__all__ = ["REFERENCE_SCHEMES", "Checked", "Signer", "from_private_key", "is_reference",
           "open_signer", "open_signers"]

#: The reference prefixes ``--key`` understands; anything else is a path (docs/format.md §6.1).
REFERENCE_SCHEMES = ("ssh-agent", "awskms://", "hashivault://", "openbao://", "pkcs11:")
DEFAULT_TIMEOUT = 30.0
# A call to an agent, KMS or Vault ends within this many timeouts in all (KMS: three attempts
# and their backoff), however slowly the other side answers (base.within).
DEADLINE_TIMEOUTS = 4


def is_reference(ref: str) -> bool:
    return ref == "ssh-agent" or ref.startswith(("ssh-agent:", *REFERENCE_SCHEMES[1:]))


def open_signer(ref: str | Path, *, pin: PublicKey | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> Checked:
    """The signer ``ref`` names: a key reference, or else the path of a PEM private key.

    ``pin``: a public key the user trusts; a signer holding another key is refused here,
    before anything is signed. ``timeout`` bounds each read from an agent, KMS or Vault, and
    ``DEADLINE_TIMEOUTS`` of it each whole call (opening included).
    """
    text = str(ref)
    if isinstance(ref, Path) or not is_reference(text):
        from merkle_backup.signers.file import FileBackend

        return Checked(FileBackend.open(Path(text)), pin=pin)
    network: Any = None  # the backends reached over a socket: each call bounded in all
    if text == "ssh-agent" or text.startswith("ssh-agent:"):
        from merkle_backup.signers.sshagent import AgentBackend as network
    elif text.startswith("awskms://"):
        from merkle_backup.signers.awskms import KMSBackend as network
    elif text.startswith(("hashivault://", "openbao://")):
        from merkle_backup.signers.transit import TransitBackend as network
    if network is not None:
        deadline = DEADLINE_TIMEOUTS * timeout
        backend = within(deadline, text, lambda: network.open(text, timeout=timeout))
        return Checked(backend, pin=pin, deadline=deadline)
    if text.startswith("pkcs11:"):
        from merkle_backup.signers.pkcs11 import PKCS11Backend

        return Checked(PKCS11Backend.open(text), pin=pin)
    raise SignerError(f"{text}: not a key reference")  # pragma: no cover (is_reference above)


def open_signers(refs: Sequence[str | Path], *, pins: Sequence[PublicKey] = (),
                 timeout: float = DEFAULT_TIMEOUT) -> list[Checked]:
    """Several ``--key`` values (overlap rotation, docs/format.md §7.5): each opened, none
    twice. With ``pins``, every signer's key must be one of them."""
    signers: list[Checked] = []
    for ref in refs:
        signer = open_signer(ref, timeout=timeout)
        if pins and all(p.raw != signer.public_key.raw for p in pins):
            raise SignerError(f"{signer.name}: its public key (key ID "
                              f"{signer.public_key.key_id.hex()[:16]}…) is none of the pinned "
                              f"keys ({', '.join(p.source for p in pins)})")
        if any(s.public_key.raw == signer.public_key.raw for s in signers):
            raise UsageError(f"{signer.name}: the same key is given twice")
        signers.append(signer)
    return signers


def from_private_key(private: Ed25519PrivateKey, name: str = "signing key") -> Checked:
    """A ``Signer`` over a key already in memory (the API's callers, tests)."""
    from merkle_backup.signers.file import FileBackend

    return Checked(FileBackend(private, name))
