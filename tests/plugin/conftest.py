"""Fixtures for the plugin tests: the Go Velero stand-in (tests/plugin/standin.py), the test-only
folder plugin, and the session's moto S3 server (tests/storage/server.py, shared, not a copy)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.plugin.standin import Standin, standin  # noqa: F401  (fixtures)
from tests.storage import server
from tests.storage.server import MotoServer, new_bucket

moto_server = server.moto_server
_aws_test_env = server._aws_test_env

MEMORY_PLUGIN = Path(__file__).parent / "memory_plugin.py"


@pytest.fixture(scope="session")
def memory_plugin() -> list[str]:
    """The test-only folder ObjectStore behind the real plugin server: the command to run."""
    return [sys.executable, str(MEMORY_PLUGIN)]


@pytest.fixture(scope="session")
def velero_plugin() -> list[str]:
    """The real plugin (server.main with the sealing store), as a command for Standin.run."""
    return [sys.executable, "-m", "merkle_backup.plugin.server"]


@dataclass
class S3Location:
    """A fresh bucket on the session's moto server and the BSL config that reaches it with the
    AWS plugin's keys (velero-plugin-for-aws: region, s3Url, s3ForcePathStyle)."""

    server: MotoServer
    bucket: str
    prefix: str = "velero"

    @property
    def config(self) -> dict[str, str]:
        return {"region": "us-east-1", "s3Url": self.server.endpoint, "s3ForcePathStyle": "true"}

    def client(self):  # boto3 S3 client on the same server, for arranging and checking
        return self.server.client()


@pytest.fixture
def s3_location(moto_server: MotoServer) -> S3Location:
    return S3Location(moto_server, new_bucket(moto_server.client()))
