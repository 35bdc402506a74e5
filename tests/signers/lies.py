"""Answers no honest HTTP server gives, shared by the Vault transit stand-in (transit.py) and the
AWS KMS stand-in (kms.py): what a broken or hostile server, or a proxy in front of one, can send
back to a signer (docs/threat-model.md S1, S2). Each is one ``mode`` of a stand-in; the signer
must turn every one into one ``SignerError`` line, in bounded time.

* "deep": a 200 answer of JSON nested 100,000 levels (``[[[…]]]``), which Python's json parser
  meets with RecursionError;
* "not-json": a 200 answer that is text; "empty": a 200 answer of no bytes;
* "html-500": HTTP 500 with a proxy's HTML error page;
* "huge": a 200 answer of 2 MiB (more than either signer reads);
* "cut": a Content-Length of 1000, 10 bytes, then the connection closed;
* "garbage": not HTTP at all (no status line);
* "never": the request read, then nothing until the stand-in closes; "stall": the headers and
  10 bytes of 1000, then nothing until the stand-in closes; "drip": the headers, then the
  body one byte every 0.2 s (each read of a signer with a 0.5 s timeout succeeds: only a
  deadline on the whole call ends it).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

RAW_LIES = ("deep", "deep-400", "not-json", "empty", "html-500", "huge", "cut", "garbage",
            "never", "stall", "drip")
DEPTH = 100_000
ESCAPES = "\x1b[1A\x1b[2K\rVERIFIED\x07\x1b]0;owned\x07\u202e"  # cursor up, erase, title, bidi


def send_raw_lie(h: BaseHTTPRequestHandler, mode: str, closing: threading.Event) -> None:
    """Answer ``h``'s request with the lie ``mode`` (one of ``RAW_LIES``)."""
    if mode == "never":
        closing.wait(30)
        h.close_connection = True
        return
    if mode == "garbage":
        _write(h, b"SIGNED, TRUST ME\r\n\r\n")
        h.close_connection = True
        return
    status, content_type, body = {
        "deep": (200, "application/json", b"[" * DEPTH + b"]" * DEPTH),
        "deep-400": (400, "application/json", b"[" * DEPTH + b"]" * DEPTH),
        "not-json": (200, "application/json", b"signature: all good"),
        "empty": (200, "application/json", b""),
        "html-500": (500, "text/html",
                     b"<html><body><h1>500 Internal Server Error</h1></body></html>"),
        "huge": (200, "application/json", b'{"pad": "' + b"x" * (2 << 20) + b'"}'),
        "cut": (200, "application/json", b'{"data": {'),
        "stall": (200, "application/json", b'{"data": {'),
        "drip": (200, "application/json", b""),
    }[mode]
    length = 1000 if mode in ("cut", "stall", "drip") else len(body)
    head = (f"HTTP/1.1 {status} Lie\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()
    _write(h, head + body)
    h.close_connection = True
    if mode == "stall":
        closing.wait(30)
    if mode == "drip":
        drip(lambda: _write(h, b" "), closing)
    if mode == "cut":
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def drip(send: Callable[[], None], closing: threading.Event, every: float = 0.2) -> None:
    """One byte every ``every`` seconds until the stand-in closes (at most 1000)."""
    for _ in range(1000):
        if closing.wait(every):
            return
        send()


def _write(h: BaseHTTPRequestHandler, data: bytes) -> None:
    try:
        h.wfile.write(data)
        h.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up first: what the test wanted
