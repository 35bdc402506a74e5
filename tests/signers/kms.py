"""A STAND-IN for AWS KMS, not KMS: a small threaded HTTP server that speaks KMS's JSON 1.1
protocol (docs.aws.amazon.com/kms/latest/APIReference: ``POST /`` with ``X-Amz-Target:
TrentService.GetPublicKey`` or ``TrentService.Sign``, ``Content-Type:
application/x-amz-json-1.1``, JSON bodies with blobs in base64; an error is HTTP 400 with
``{"__type": "ThrottlingException", "message": ...}``) for one Ed25519 key,
``alias/seal`` = ``ARN``. It does not check SigV4 signatures.

The real boto3 client of merkle_backup/signers/awskms.py talks to it over HTTP, reaching it as
the product reaches any endpoint: ``AWS_ENDPOINT_URL_KMS``. Real AWS KMS cannot be used in
tests; ministack (tests/signers/conftest.py) is an honest emulator and cannot lie or fail on
demand. This stand-in exists to make KMS lie or fail in the ways docs/threat-model.md S1 and S2
list.

``mode``: "honest"; "other-key" (signs with a key it does not publish); "prehash" (signs
SHA-512(message)); "algorithm" (labels its answer ED25519_PH_SHA_512); "throttling", "denied",
"invalid-state" (ThrottlingException, AccessDeniedException, KMSInvalidStateException);
"p256", "ph-only", "encrypt" (GetPublicKey says ECC_NIST_P256, only ED25519_PH_SHA_512, or
usage ENCRYPT_DECRYPT); "no-signature", "signature-number", "signature-list" (the field
missing, 5, a list); "bad-base64"; "escape" (an error whose type and message hold terminal
escapes, lies.ESCAPES); and the answers of tests/signers/lies.py (``RAW_LIES``). ``lie_on``:
the operation the lies and failures apply to, "Sign" (the default) or "GetPublicKey".
``requests``: (operation, JSON body) of every request, in order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.signers.lies import ESCAPES, RAW_LIES, send_raw_lie

ARN = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALIAS = "alias/seal"
ERRORS = {"throttling": "ThrottlingException", "denied": "AccessDeniedException",
          "invalid-state": "KMSInvalidStateException"}


class KMSStandIn:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        self.other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
        self.mode = "honest"
        self.lie_on = "Sign"
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.closing = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # botocore keeps its connections open

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                stand_in.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def public_raw(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)

    def signs(self) -> list[dict[str, Any]]:
        return [body for operation, body in self.requests if operation == "Sign"]

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else {}
        target = h.headers.get("X-Amz-Target", "")
        operation = target.removeprefix("TrentService.")
        self.requests.append((operation, body))
        if h.path != "/" or h.headers.get("Content-Type") != "application/x-amz-json-1.1":
            return self.send(h, 400, {"__type": "UnknownOperationException", "message": h.path})
        lying = operation == self.lie_on
        if lying and self.mode in RAW_LIES:
            return send_raw_lie(h, self.mode, self.closing)
        if lying and self.mode in ERRORS:
            return self.send(h, 400, {"__type": ERRORS[self.mode],
                                      "message": f"{ERRORS[self.mode]}!"})
        if lying and self.mode == "escape":
            return self.send(h, 400, {"__type": f"AccessDenied{ESCAPES}Exception",
                                      "message": f"no{ESCAPES}"})
        if body.get("KeyId") not in (ALIAS, ARN):
            return self.send(h, 400, {"__type": "NotFoundException",
                                      "message": f"Key '{body.get('KeyId')}' does not exist"})
        if target == "TrentService.GetPublicKey":
            return self.send(h, 200, self.public_key())
        if target == "TrentService.Sign":
            return self.send(h, 200, self.sign(base64.b64decode(body["Message"])))
        return self.send(h, 400, {"__type": "UnknownOperationException", "message": target})

    def public_key(self) -> dict[str, Any]:
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        answer: dict[str, Any] = {
            "KeyId": ARN, "PublicKey": base64.b64encode(der).decode(),
            "KeySpec": "ECC_NIST_EDWARDS25519", "KeyUsage": "SIGN_VERIFY",
            "SigningAlgorithms": ["ED25519_SHA_512", "ED25519_PH_SHA_512"]}
        if self.lie_on == "GetPublicKey":
            answer.update({"p256": {"KeySpec": "ECC_NIST_P256"},
                           "ph-only": {"SigningAlgorithms": ["ED25519_PH_SHA_512"]},
                           "encrypt": {"KeyUsage": "ENCRYPT_DECRYPT"},
                           "signature-number": {"PublicKey": 5},
                           "bad-base64": {"PublicKey": "not*base64!"}}.get(self.mode, {}))
        return answer

    def sign(self, message: bytes) -> dict[str, Any]:
        key = self.other if self.mode == "other-key" else self.key
        if self.mode == "prehash":
            message = hashlib.sha512(message).digest()
        answer: dict[str, Any] = {
            "KeyId": ARN, "Signature": base64.b64encode(key.sign(message)).decode(),
            "SigningAlgorithm": "ED25519_PH_SHA_512" if self.mode == "algorithm"
            else "ED25519_SHA_512"}
        if self.lie_on == "Sign":
            lies: dict[str, object] = {"signature-number": 5, "signature-list": ["AAAA"],
                                       "bad-base64": "not*base64!"}
            if self.mode in lies:
                answer["Signature"] = lies[self.mode]
            if self.mode == "no-signature":
                del answer["Signature"]
        return answer

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/x-amz-json-1.1")
            h.send_header("Content-Length", str(len(data)))
            h.send_header("x-amzn-RequestId", "stand-in")
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first: what the test wanted
