"""A STAND-IN for an ssh-agent, not OpenSSH's: a thread serving the agent protocol
(draft-ietf-sshm-ssh-agent: length-framed messages; REQUEST_IDENTITIES 11 -> IDENTITIES_ANSWER
12, SIGN_REQUEST 13 -> SIGN_RESPONSE 14) on a Unix socket of its own, for one Ed25519 key.
tests/signers/conftest.py runs the real OpenSSH agent, which answers honestly; this stand-in
exists to make an agent (or whatever else listens at $SSH_AUTH_SOCK) lie or break on demand.

``mode``: "honest"; "other-key" (signs with a key it does not list); "rsa-signature" (an
``rsa-sha2-512`` signature blob); "type" (answers message type 99); "huge" (announces a
2^32-1 byte answer); "empty" (a 0-byte message); "cut" (announces 100 bytes, sends 5, closes);
"never" (reads the request, answers nothing until closed); "drip" (a long answer, one byte
every 0.2 s); "count" (lists 2^31 keys);
"truncated" (lists 3 keys and sends one); "trailing" (a signature answer with bytes after it);
"escape" (the signature type holds terminal escapes). ``lie_on``: "sign" (the default) or
"list" (REQUEST_IDENTITIES, when the signer is opened).
"""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.signers.lies import ESCAPES, drip


def _pack(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _frame(message: bytes) -> bytes:
    return struct.pack(">I", len(message)) + message


class AgentStandIn:
    def __init__(self, path: Path) -> None:
        self.key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        self.other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
        self.mode = "honest"
        self.lie_on = "sign"
        self.path = path
        self.closing = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def blob(self) -> bytes:
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)
        return _pack(b"ssh-ed25519", raw)

    def close(self) -> None:
        self.closing.set()
        self.thread.join(5)
        self.listener.close()

    def serve(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                (n,) = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))
                request = conn.recv(n, socket.MSG_WAITALL)
                conn.sendall(self.reply(request))
                if self.mode == "never" and self.lying(request):
                    self.closing.wait(30)
                if self.mode == "drip" and self.lying(request):
                    drip(lambda: conn.sendall(b"\0"), self.closing)
            except (OSError, struct.error):
                pass

    def lying(self, request: bytes) -> bool:
        return request[:1] == (b"\x0d" if self.lie_on == "sign" else b"\x0b")

    def reply(self, request: bytes) -> bytes:
        if self.lying(request):
            lie = {"type": _frame(b"\x63"), "huge": b"\xff\xff\xff\xff", "empty": _frame(b""),
                   "cut": struct.pack(">I", 100) + b"\x0e\0\0\0", "never": b"",
                   "drip": struct.pack(">I", 1000) + b"\x0e",
                   "count": _frame(b"\x0c" + struct.pack(">I", 1 << 31)),
                   "truncated": _frame(b"\x0c" + struct.pack(">I", 3) + _pack(self.blob, b"c"))}
            if self.mode in lie:
                return lie[self.mode]
        if request[:1] == b"\x0b":
            return _frame(b"\x0c" + struct.pack(">I", 1) + _pack(self.blob, b"stand-in"))
        # SIGN_REQUEST: key blob, data, flags
        (n,) = struct.unpack_from(">I", request, 1)
        (m,) = struct.unpack_from(">I", request, 5 + n)
        data = request[9 + n:9 + n + m]
        key = self.other if self.mode == "other-key" and self.lying(request) else self.key
        kind = b"ssh-ed25519"
        if self.lying(request) and self.mode == "rsa-signature":
            kind = b"rsa-sha2-512"
        if self.lying(request) and self.mode == "escape":
            kind = f"ssh-ed25519{ESCAPES}".encode()
        answer = b"\x0e" + _pack(_pack(kind, key.sign(data)))
        if self.lying(request) and self.mode == "trailing":
            answer += b"\0"
        return _frame(answer)
