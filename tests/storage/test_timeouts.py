"""A stalled endpoint ends in exit 3 within the deadline (docs/threat-model.md T33).

The endpoint is a local TCP socket (127.0.0.1) that accepts connections (the kernel completes
the handshake: it listens) and never answers. Retries stay inside --timeout: the default mode
makes 5 attempts, and the first alone would wait its whole read timeout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from merkle_backup.storage import s3
from merkle_backup.storage.options import ConnectionOptions
from tests.storage.server import TEST_ENV

ENTRY = [sys.executable, "-c", "from merkle_backup._entry import main; main()"]


@pytest.fixture
def stalled() -> Iterator[int]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def _env() -> dict[str, str]:
    env = {**os.environ, **TEST_ENV}
    env.pop("AWS_MAX_ATTEMPTS", None)  # the default: 5 attempts
    return env


@pytest.mark.parametrize("command", ["verify", "audit", "seal-all"])
def test_stalled_endpoint_exits_3_within_the_timeout(stalled: int, command: str,
                                                     keypair: tuple[Path, Path]) -> None:
    url = "s3://bucket/velero/backups/nightly" if command == "verify" else "s3://bucket/velero"
    key = ["--key", str(keypair[0])] if command == "seal-all" else ["--trust", str(keypair[1])]
    start_up = _start_up_seconds()
    started = time.monotonic()
    proc = subprocess.run(
        [*ENTRY, command, url, *key, "--endpoint-url", f"http://127.0.0.1:{stalled}",
         "--path-style", "--timeout", "2"],
        capture_output=True, timeout=30, env=_env(),
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("merkle-backup: error: "), proc.stderr
    assert "timeout" in lines[0] or "did not answer" in lines[0] or "stopped answering" in lines[0]
    assert b"Traceback" not in proc.stderr
    # The deadline, plus what the same interpreter takes to start and import the client on
    # this machine now (measured just before: a loaded machine starts slowly), plus a margin.
    assert elapsed < 2 + start_up + 2, (elapsed, start_up)


def _start_up_seconds() -> float:
    """Wall time of a process that starts the interpreter, imports the command line and the S3
    client, and exits: the part of a run that is not the storage deadline."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import merkle_backup._entry, merkle_backup.cli, "
                    "merkle_backup.storage.s3, boto3, botocore.session; "
                    "botocore.session.get_session().create_client('s3', region_name='us-east-1')"],
                   check=True, timeout=60, env=_env())
    return time.monotonic() - started


def test_the_default_deadline_is_at_most_60_seconds(stalled: int) -> None:
    """What the client really uses (its botocore config), and the bound that follows: an
    attempt takes at most connect + read timeouts; no attempt starts that could end past the
    deadline; the first alone is shorter than it."""
    connect, read, total = s3.timeouts(ConnectionOptions())
    assert total <= 60
    assert connect + read < total
    store = s3.connect("bucket", ConnectionOptions(endpoint_url=f"http://127.0.0.1:{stalled}"))
    config = store.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (connect, read)
    assert config.retries["total_max_attempts"] >= 1


def test_deadline_bounds_retries_in_process(stalled: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library call, with 5 attempts allowed: one StorageError within the deadline."""
    from merkle_backup.errors import StorageError

    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    store = s3.connect("bucket", ConnectionOptions(endpoint_url=f"http://127.0.0.1:{stalled}",
                                                   path_style=True, timeout=1.5, max_attempts=5))
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        store.head("velero/backups/nightly/velero-backup.json")
    assert time.monotonic() - started < 1.5 + 0.5
    assert "\n" not in str(caught.value)


def test_timeout_is_an_option_of_every_storage_command() -> None:
    from click.testing import CliRunner

    from merkle_backup.cli import main

    for command in ("seal", "verify", "seal-all", "audit"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert "--timeout SECONDS" in result.output, command
    result = CliRunner().invoke(main, ["verify", "x", "--trust", "k", "--timeout", "0"])
    assert result.exit_code == 2
