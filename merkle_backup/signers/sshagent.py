"""A signer over an OpenSSH agent (docs/format.md §6.1): ``ssh-agent`` or
``ssh-agent:SHA256:<fingerprint>``.

The agent protocol (draft-ietf-sshm-ssh-agent §3, §4.4, §4.5): length-framed messages over the
Unix socket ``$SSH_AUTH_SOCK``. REQUEST_IDENTITIES (11) lists the keys; SIGN_REQUEST (13) with
flags 0 asks for a signature, which for ``ssh-ed25519`` is pure Ed25519 over exactly the data
sent (RFC 8709 §6), so the answer is the 64 bytes a file key would have produced. A key the
agent holds on a token (``ssh-add -s``, a YubiKey) signs the same way.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct

from merkle_backup.errors import KeyFileError, SignerError
from merkle_backup.signing import PublicKey, check_public_key

SSH_AGENT_FAILURE = 5
SSH_AGENTC_REQUEST_IDENTITIES = 11
SSH_AGENT_IDENTITIES_ANSWER = 12
SSH_AGENTC_SIGN_REQUEST = 13
SSH_AGENT_SIGN_RESPONSE = 14
KEY_TYPE = b"ssh-ed25519"
MAX_MESSAGE = 256 * 1024  # an agent's answer; OpenSSH's own limit is 256 KiB
MAX_KEYS = 1024


def fingerprint(blob: bytes) -> str:
    """OpenSSH's ``SHA256:`` fingerprint of a public key blob (base64, no padding)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _string(data: bytes, at: int, what: str) -> tuple[bytes, int]:
    if at + 4 > len(data):
        raise SignerError(f"ssh-agent: truncated answer ({what})")
    (n,) = struct.unpack_from(">I", data, at)
    if at + 4 + n > len(data):
        raise SignerError(f"ssh-agent: truncated answer ({what})")
    return data[at + 4:at + 4 + n], at + 4 + n


def _pack(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def ed25519_of(blob: bytes) -> bytes | None:
    """The raw public key of an ``ssh-ed25519`` key blob, or None for another key type."""
    try:
        kind, at = _string(blob, 0, "key type")
        if kind != KEY_TYPE:
            return None
        raw, at = _string(blob, at, "key")
    except SignerError:
        return None
    return raw if at == len(blob) and len(raw) == 32 else None


class AgentBackend:
    def __init__(self, sock_path: str, blob: bytes, name: str, public_key: PublicKey,
                 timeout: float) -> None:
        self._sock_path = sock_path
        self._blob = blob
        self._timeout = timeout
        self.name = name
        self.public_key = public_key

    @classmethod
    def open(cls, ref: str, *, timeout: float) -> AgentBackend:
        wanted = ref[len("ssh-agent:"):] if ref.startswith("ssh-agent:") else ""
        if wanted and not wanted.startswith("SHA256:"):
            raise SignerError(f"{ref}: an ssh-agent reference is ssh-agent or "
                              "ssh-agent:SHA256:<fingerprint> (ssh-add -l prints it)")
        sock_path = os.environ.get("SSH_AUTH_SOCK", "")
        if not sock_path:
            raise SignerError(f"{ref}: SSH_AUTH_SOCK is not set (no ssh-agent to ask)")
        answer = _request(sock_path, bytes([SSH_AGENTC_REQUEST_IDENTITIES]), timeout, ref)
        if not answer or answer[0] != SSH_AGENT_IDENTITIES_ANSWER or len(answer) < 5:
            raise SignerError(f"{ref}: the agent did not list its keys")
        (count,) = struct.unpack_from(">I", answer, 1)
        if count > MAX_KEYS:
            raise SignerError(f"{ref}: the agent claims {count} keys")
        at = 5
        found: list[tuple[bytes, bytes]] = []
        for _ in range(count):
            blob, at = _string(answer, at, "key blob")
            _comment, at = _string(answer, at, "comment")
            raw = ed25519_of(blob)
            if raw is not None:
                found.append((blob, raw))
        if at != len(answer):
            raise SignerError(f"{ref}: the agent's key list has trailing bytes")
        if wanted:
            found = [(b, r) for b, r in found if fingerprint(b) == wanted]
        if not found:
            which = f"key {wanted}" if wanted else "Ed25519 key"
            raise SignerError(f"{ref}: the agent at $SSH_AUTH_SOCK holds no {which} "
                              "(ssh-add -l lists what it holds)")
        blob, raw = found[0]
        name = f"ssh-agent:{fingerprint(blob)}"
        try:
            public_key = check_public_key(raw, name)
        except KeyFileError as e:
            raise SignerError(str(e)) from e
        return cls(sock_path, blob, name, public_key, timeout)

    def raw_sign(self, message: bytes) -> bytes:
        request = bytes([SSH_AGENTC_SIGN_REQUEST]) + _pack(self._blob, message) + b"\0\0\0\0"
        answer = _request(self._sock_path, request, self._timeout, self.name)
        if answer[:1] == bytes([SSH_AGENT_FAILURE]):
            raise SignerError(f"{self.name}: the agent refused to sign (a confirm-only key "
                              "declined, a locked agent or a removed key?)")
        if answer[:1] != bytes([SSH_AGENT_SIGN_RESPONSE]):
            raise SignerError(f"{self.name}: the agent answered message type "
                              f"{answer[0] if answer else 'none'}, not a signature")
        sig_blob, at = _string(answer, 1, "signature")
        if at != len(answer):
            raise SignerError(f"{self.name}: the agent's answer has trailing bytes")
        kind, at = _string(sig_blob, 0, "signature type")
        signature, at = _string(sig_blob, at, "signature")
        if kind != KEY_TYPE or at != len(sig_blob):
            raise SignerError(f"{self.name}: the agent answered a {kind[:32]!r} signature, "
                              "not ssh-ed25519")
        return signature

    def close(self) -> None:
        pass


def _request(sock_path: str, message: bytes, timeout: float, name: str) -> bytes:
    """One request and its answer on a fresh connection (an agent serves each in order)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(struct.pack(">I", len(message)) + message)
            header = _recv(s, 4, name)
            (n,) = struct.unpack(">I", header)
            if n == 0 or n > MAX_MESSAGE:
                raise SignerError(f"{name}: the agent answered a {n}-byte message")
            return _recv(s, n, name)
    except TimeoutError as e:
        raise SignerError(f"{name}: the agent did not answer within {timeout:g} s") from e
    except OSError as e:
        raise SignerError(f"{name}: cannot talk to the agent at $SSH_AUTH_SOCK: "
                          f"{e.strerror or e}") from e


def _recv(s: socket.socket, n: int, name: str) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = s.recv(min(n - len(data), 65536))
        if not chunk:
            raise SignerError(f"{name}: the agent closed the connection mid-answer")
        data += chunk
    return bytes(data)
