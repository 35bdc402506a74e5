"""Real S3-compatible servers for the tests: moto's standalone server in a subprocess on loopback,
and a small fault-injecting HTTP proxy in front of it (503 SlowDown, SSE-C key checks, a cut
connection, a hook after a HEAD). Everything is reached over real HTTP; boto3 is never mocked.

moto cannot throttle and does not implement SSE-C (it stores the object and ignores the key), so
the proxy does what S3 does there: it remembers each SSE-C object's key MD5 from the PUT and
answers a GET/HEAD without the key with 400 InvalidRequest, and with another key with 403.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# What every S3 test runs with: no real AWS configuration, few and fast retries.
TEST_ENV = {
    **CREDENTIALS,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_RETRY_MODE": "standard",
    "AWS_MAX_ATTEMPTS": "2",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """``python -m moto.server`` on 127.0.0.1:<free port>, as a subprocess."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: (certificate, private key) PEM files to serve HTTPS with."""
        self.port = free_port()
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.port}"
        extra = ["-c", str(tls[0]), "-k", str(tls[1])] if tls else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **TEST_ENV},
        )
        import ssl

        unverified = ssl._create_unverified_context() if tls else None
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1, context=unverified).read()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto server did not start (is moto[server] installed?)")
                time.sleep(0.05)

    def client(self, endpoint: str | None = None, **kwargs):
        import boto3
        from botocore.config import Config

        if self.endpoint.startswith("https:"):
            kwargs.setdefault("verify", False)
        return boto3.client(
            "s3", endpoint_url=endpoint or self.endpoint, region_name="us-east-1",
            aws_access_key_id=kwargs.pop("key_id", "testing"),
            aws_secret_access_key=kwargs.pop("secret", "testing"),
            config=Config(retries={"mode": "standard", "total_max_attempts": 2},
                          connect_timeout=5, read_timeout=30),
            **kwargs,
        )

    def moto_api(self, path: str, body: bytes) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/{path}", data=body, method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10).read()

    def kill(self) -> None:
        """SIGKILL: the server dies mid-response, as a crashed or evicted pod does."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


# -- the shared session server (tests/storage and tests/test_fleet.py both use it) --------------

_shared: MotoServer | None = None
_users = 0


@pytest.fixture(scope="session")
def moto_server() -> MotoServer:
    global _shared, _users
    if _shared is None:
        _shared = MotoServer()
    _users += 1
    yield _shared
    _users -= 1
    if _users == 0:
        _shared.stop()
        _shared = None


@pytest.fixture(scope="session", autouse=True)
def _aws_test_env():
    """No real AWS configuration or credentials reach the tests; retries are few."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in TEST_ENV.items():
            mp.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                    "AWS_CA_BUNDLE"):
            mp.delenv(key, raising=False)
        yield


_bucket_numbers = itertools.count()


def new_bucket(client) -> str:
    name = f"velero-{os.getpid()}-{next(_bucket_numbers)}"
    client.create_bucket(Bucket=name)
    return name


def upload_folder(client, bucket: str, key_prefix: str, folder: Path, **extra) -> None:
    for path in sorted(folder.iterdir()):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"{key_prefix}/{path.name}", Body=path.read_bytes(), **extra)


def keys(client, bucket: str, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))


def clone_backup(source: Path, dest_backups: Path, name: str, *, phase: str | None = None) -> Path:
    """A copy of fixture backup folder ``source`` as backup ``name`` (files renamed, and
    velero-backup.json's name, uid and optionally phase changed; completed a minute ago, as a
    backup seal-all finds on its next run: it leaves older ones unsealed, --max-age)."""
    import json
    import uuid
    from datetime import datetime, timedelta, timezone

    old = source.name
    folder = dest_backups / name
    folder.mkdir(parents=True)
    for path in source.iterdir():
        target = folder / (name + path.name[len(old):] if path.name.startswith(old) else path.name)
        shutil.copyfile(path, target)
        target.chmod(0o644)
    manifest = folder / "velero-backup.json"
    obj = json.loads(manifest.read_text())
    obj["metadata"]["name"] = name
    obj["metadata"]["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"merkle-backup-test/{name}"))
    if phase is not None:
        obj["status"]["phase"] = phase
    if "completionTimestamp" in obj["status"]:
        completed = datetime.now(timezone.utc) - timedelta(minutes=1)
        obj["status"]["completionTimestamp"] = completed.strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest.write_text(json.dumps(obj, indent=2) + "\n")
    return folder


# -- the fault-injecting proxy ------------------------------------------------------------------

_SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
              b"<Message>Please reduce your request rate.</Message><RequestId>proxy</RequestId></Error>")
_SSE_C_MISSING = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidRequest</Code>'
                  b"<Message>The object was stored using a form of Server Side Encryption. The "
                  b"correct parameters must be provided to retrieve the object.</Message></Error>")
_ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                  b"<Message>Access Denied</Message></Error>")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}
_SSE_KEY = "x-amz-server-side-encryption-customer-key"
_SSE_MD5 = "x-amz-server-side-encryption-customer-key-md5"


@dataclass
class Rule:
    """A fault for requests whose method is ``method`` (any when None) and whose path contains
    ``path``; it applies ``times`` times."""

    kind: str  # "throttle" (503 SlowDown), "deny" (403 AccessDenied), "cut", "after-head",
    # "swap" (a GET answered with ``body`` instead of the stored bytes: a lying endpoint)
    path: str
    method: str | None = None
    times: int = 1
    cut_after: int = 0
    action: Callable[[], None] | None = None
    body: bytes = b""
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and self.path in path and self.hits < self.times


@dataclass
class FaultProxy:
    upstream_port: int
    rules: list[Rule] = field(default_factory=list)
    log: list[tuple[str, str, int, str]] = field(default_factory=list)  # method, path, status, range
    sse_c: dict[str, str] = field(default_factory=dict)  # object path -> key MD5 (base64)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.lock = threading.Lock()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def _take(self, kind: str, method: str, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.kind == kind and rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        object_path = path.split("?", 1)[0]
        body = self._request_body(h)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
        lower = {k.lower(): v for k, v in headers.items()}
        self.log.append((method, path, 0, lower.get("range", "")))
        if self._take("throttle", method, path):
            return self._reply(h, 503, _SLOW_DOWN)
        if self._take("deny", method, path):
            return self._reply(h, 403, _ACCESS_DENIED)
        # SSE-C, as S3 enforces it.
        if method == "PUT" and "uploadId" not in path and "x-amz-copy-source" not in lower:
            if _SSE_MD5 in lower:
                self.sse_c[object_path] = lower[_SSE_MD5]
            else:
                self.sse_c.pop(object_path, None)
        elif method in ("GET", "HEAD") and object_path in self.sse_c:
            if _SSE_KEY not in lower:
                return self._reply(h, 400, _SSE_C_MISSING)
            given = base64.b64encode(hashlib.md5(base64.b64decode(lower[_SSE_KEY])).digest()).decode()
            if given != self.sse_c[object_path]:
                return self._reply(h, 403, _ACCESS_DENIED)
        cut = self._take("cut", method, path) if method == "GET" else None
        swap = self._take("swap", method, path) if method == "GET" else None
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            headers["Content-Length"] = str(len(body))
            upstream.request(method, path, body=body, headers=headers)
            response = upstream.getresponse()
            if method == "HEAD":
                # The object changes after the HEAD was answered upstream and before the client
                # sees the answer: its next GET is sure to find another object.
                rule = self._take("after-head", method, path)
                if rule is not None and rule.action is not None:
                    rule.action()
            h.send_response(response.status)
            for key, value in response.getheaders():
                # A lying endpoint drops the checksum that would give its swap away.
                if key.lower() not in _HOP_BY_HOP and not (
                        swap is not None and key.lower().startswith("x-amz-checksum")):
                    h.send_header(key, value)
            h.send_header("Connection", "close")
            h.end_headers()
            sent = 0
            if swap is not None:
                response.read()
                h.wfile.write(swap.body)
            elif method != "HEAD":
                while chunk := response.read(65536):
                    if cut is not None and sent + len(chunk) > cut.cut_after:
                        h.wfile.write(chunk[: cut.cut_after - sent])
                        h.wfile.flush()
                        h.connection.shutdown(socket.SHUT_RDWR)  # mid-body, like a dropped link
                        h.close_connection = True
                        return
                    h.wfile.write(chunk)
                    sent += len(chunk)
            h.wfile.flush()
            h.close_connection = True
        except (ConnectionError, OSError):
            h.close_connection = True
            return
        finally:
            upstream.close()

    @staticmethod
    def _request_body(h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(h.rfile.read(size))
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/xml")
        h.send_header("Content-Length", str(0 if h.command == "HEAD" else len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
        h.close_connection = True
