"""A large tarball is streamed from S3 with bounded memory: no temporary file, no buffering of
the object. Peak RSS of the real CLI, in its own process, compared with the same command on the
small fixture backup."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES
from tests.storage.server import MotoServer, clone_backup, new_bucket, upload_folder

# Runs a command as its child and reports the child's peak RSS (ru_maxrss is in KiB on Linux).
_PEAK_OF = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.monotonic()\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(json.dumps({'code': code, 'seconds': time.monotonic() - t,\n"
    "                  'peak': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))\n"
)
MiB = 2**20


def peak_rss(*args: object) -> dict:
    command = [sys.executable, "-c", _PEAK_OF, sys.executable, "-m", "merkle_backup.cli",
               *[str(a) for a in args]]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_large_object_is_streamed_with_bounded_memory(moto_server: MotoServer, big_tarball: Path,
                                                      keypair, tmp_path: Path) -> None:
    client = moto_server.client()
    bucket = new_bucket(client)
    upload_folder(client, bucket, "velero/backups/demo-small", FIXTURES / "demo-small")
    folder = clone_backup(FIXTURES / "demo-small", tmp_path / "backups", "big-backup")
    upload_folder(client, bucket, "velero/backups/big-backup", folder)
    client.upload_file(str(big_tarball), bucket, "velero/backups/big-backup/big-backup.tar.gz")
    size = big_tarball.stat().st_size
    connection = ["--endpoint-url", moto_server.endpoint]

    def url(name: str) -> str:
        return f"s3://{bucket}/velero/backups/{name}"

    small_seal = peak_rss("seal", url("demo-small"), "--key", keypair[0], *connection)
    big_seal = peak_rss("seal", url("big-backup"), "--key", keypair[0], *connection)
    small_verify = peak_rss("verify", url("demo-small"), "--trust", keypair[1], *connection)
    big_verify = peak_rss("verify", url("big-backup"), "--trust", keypair[1], *connection)
    assert [r["code"] for r in (small_seal, big_seal, small_verify, big_verify)] == [0, 0, 0, 0]

    seal_growth = big_seal["peak"] - small_seal["peak"]
    verify_growth = big_verify["peak"] - small_verify["peak"]
    print(f"\nobject {size / MiB:.0f} MiB; seal: peak {big_seal['peak'] / MiB:.0f} MiB "
          f"(small backup {small_seal['peak'] / MiB:.0f} MiB, growth {seal_growth / MiB:.1f} MiB, "
          f"{big_seal['seconds']:.1f} s); verify: peak {big_verify['peak'] / MiB:.0f} MiB "
          f"(growth {verify_growth / MiB:.1f} MiB, {big_verify['seconds']:.1f} s)")
    # The whole object never sits in memory: growth stays far below its size (a few read
    # buffers, one entry at a time, and the leaf table).
    assert seal_growth < min(64 * MiB, size / 4)
    assert verify_growth < min(64 * MiB, size / 4)
