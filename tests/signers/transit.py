"""A STAND-IN for a HashiCorp Vault transit server, not Vault: a small HTTP server that speaks
the documented API (developer.hashicorp.com/vault/api-docs/secret/transit) for one ed25519
key: ``GET /v1/transit/keys/<key>`` and ``POST /v1/transit/sign/<key>``, with the
``X-Vault-Token`` header. Vault itself cannot be installed here (tests/signers/conftest.py runs
a real OpenBao, which speaks the same API); this stand-in exists to make a server *lie* in the
ways docs/threat-model.md S1 lists, which a real one will not do on demand.

``mode``: "honest"; "other-key" (signs with a key it does not publish); "unstripped" (answers
the base64 of "vault:v1:" + signature, a wrapper a client forgot to strip); "stale-version"
(answers a signature labelled with another version); "prehash" (signs SHA-512(input), as a
prehash mode would); "short" (a 32-byte signature); "slow" (never answers in time);
"no-signature", "signature-number", "signature-list" (the field missing, 5, a list);
"bad-base64" (``vault:v1:`` and text that is not base64); "escape" (HTTP 403 whose error
message holds terminal escapes, lies.ESCAPES); and the answers of tests/signers/lies.py
(``RAW_LIES``: JSON 100,000 levels deep, text, nothing, an HTML 500, 2 MiB, cut short, not HTTP,
never). ``lie_on``: "sign" (the default) or "keys" (the ``GET`` that opens the signer).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.signers.lies import ESCAPES, RAW_LIES, send_raw_lie

TOKEN = "stand-in-token"


class TransitStandIn:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        self.other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
        self.mode = "honest"
        self.lie_on = "sign"
        self.closing = threading.Event()
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stand_in.answer(self, "GET")

            def do_POST(self) -> None:
                stand_in.answer(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def public_raw(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else {}
        self.requests.append((method, h.path, body))
        if h.headers.get("X-Vault-Token") != TOKEN:
            return self.send(h, 403, {"errors": ["permission denied"]})
        lying = h.path.startswith(f"/v1/transit/{self.lie_on}/")
        if lying and self.mode in RAW_LIES:
            return send_raw_lie(h, self.mode, self.closing)
        if lying and self.mode == "escape":
            return self.send(h, 403, {"errors": [f"permission denied{ESCAPES}"]})
        if method == "GET" and h.path == "/v1/transit/keys/seal":
            keys = {"1": {"name": "ed25519", "public_key": base64.b64encode(self.public_raw)
                          .decode(), "creation_time": "2026-12-01T00:00:00Z"}}
            return self.send(h, 200, {"data": {"type": "ed25519", "derived": False,
                                               "latest_version": 1, "keys": keys}})
        if method == "POST" and h.path == "/v1/transit/sign/seal":
            message = base64.b64decode(body["input"])
            lies: dict[str, object] = {"no-signature": None, "signature-number": 5,
                                       "signature-list": ["vault:v1:AAAA"],
                                       "bad-base64": "vault:v1:not*base64!"}
            signature = (lies.get(self.mode, self.sign(message)) if self.lie_on == "sign"
                         else self.sign(message))
            data = {} if signature is None else {"signature": signature}
            return self.send(h, 200, {"data": {**data, "key_version": 1}})
        return self.send(h, 404, {"errors": []})

    def sign(self, message: bytes) -> str:
        key, label = self.key, "vault:v1:"
        if self.mode == "slow":
            time.sleep(5)
        if self.mode == "other-key":
            key = self.other
        if self.mode == "prehash":
            message = hashlib.sha512(message).digest()
        signature = key.sign(message)
        if self.mode == "short":
            signature = signature[:32]
        if self.mode == "stale-version":
            label = "vault:v0:"
        if self.mode == "unstripped":
            return label + base64.b64encode(b"vault:v1:" + signature).decode()
        return label + base64.b64encode(signature).decode()

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        try:
            h.send_response(status)
        except (BrokenPipeError, ConnectionResetError):
            return
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        try:
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first ("slow"): what the test wanted
