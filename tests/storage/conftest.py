"""Fixtures for the S3 tests: one moto server for the session, a fresh bucket per test."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.storage import server
from tests.storage.server import FaultProxy, MotoServer, new_bucket, upload_folder

# The session's moto server and test environment (shared with tests/test_fleet.py).
moto_server = server.moto_server
_aws_test_env = server._aws_test_env

PREFIX = "velero"


@dataclass
class Bucket:
    server: MotoServer
    client: object
    name: str
    prefix: str = PREFIX
    endpoint: str = ""

    def __post_init__(self) -> None:
        self.endpoint = self.endpoint or self.server.endpoint

    def url(self, backup: str | None = None) -> str:
        base = f"s3://{self.name}/{self.prefix}" if self.prefix else f"s3://{self.name}"
        return f"{base}/backups/{backup}" if backup else base

    def key(self, backup: str, filename: str) -> str:
        return f"{self.prefix}/backups/{backup}/{filename}"

    def opts(self, endpoint: str | None = None) -> list[str]:
        return ["--endpoint-url", endpoint or self.endpoint, "--path-style"]

    def get(self, backup: str, filename: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=self.key(backup, filename))["Body"].read()

    def put(self, backup: str, filename: str, data: bytes, **extra) -> None:
        self.client.put_object(Bucket=self.name, Key=self.key(backup, filename), Body=data, **extra)

    def upload(self, folder: Path, **extra) -> None:
        upload_folder(self.client, self.name, f"{self.prefix}/backups/{folder.name}", folder, **extra)


@pytest.fixture
def bucket(moto_server: MotoServer) -> Bucket:
    """A new bucket holding demo-small under velero/backups/demo-small/."""
    client = moto_server.client()
    b = Bucket(moto_server, client, new_bucket(client))
    b.upload(FIXTURES / "demo-small")
    return b


@pytest.fixture
def proxy(moto_server: MotoServer):
    p = FaultProxy(moto_server.port)
    yield p
    p.close()


def one_line_error(err: str) -> str:
    """stderr of a failed command: exactly one line, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- large generated tarballs -----------------------------------------------------------------

# Size of the tarball in the bounded-memory test; MERKLE_BACKUP_BIG_MB overrides it.
BIG_MB = int(os.environ.get("MERKLE_BACKUP_BIG_MB", "200"))


def make_big_tarball(path: Path, compressed_mb: int, *, seed: int = 6) -> Path:
    """A Velero-layout .tar.gz of about ``compressed_mb`` MB: ConfigMaps of ~1 MiB whose data is
    base64 of seeded random bytes, so gzip can barely shrink it. Streamed to disk."""
    import base64
    import random
    import tarfile

    from isal import igzip

    rng = random.Random(seed)
    raw_per_entry = 768 * 1024  # -> 1 MiB of base64; gzip leaves ~ the random bytes' size
    count = max(1, compressed_mb * 2**20 // raw_per_entry)
    with igzip.open(path, "wb", compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 1764221678
            tar.addfile(info, io.BytesIO(data))

        add("metadata/version", b"1.1.0\n")
        for i in range(count):
            name = f"cm-{i:05d}"
            blob = base64.b64encode(rng.randbytes(raw_per_entry)).decode()
            manifest = {"apiVersion": "v1", "data": {"blob": blob}, "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": "big"}}
            add(f"resources/configmaps/namespaces/big/{name}.json",
                json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode())
    return path


@pytest.fixture(scope="session")
def big_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_big_tarball(tmp_path_factory.mktemp("big") / "big.tar.gz", BIG_MB)


@pytest.fixture(scope="session")
def medium_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_big_tarball(tmp_path_factory.mktemp("medium") / "medium.tar.gz", 48, seed=7)
