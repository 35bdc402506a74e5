"""A 2 GiB tarball through the plugin's PutObject with memory bounded (docs/threat-model.md
P11's reader, issue 20): streamed in Velero's 16 KiB chunks, uploaded and sealed as it passes,
never held. The backend runs in a child process (tests/plugin/big_tarball.py) whose peak
resident memory (VmHWM) is read from /proc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from merkle_backup.signing import generate_keypair
from tests.storage.server import TEST_ENV

ROOT = Path(__file__).resolve().parents[2]
SIZE = 2 << 30
BOUND_MIB = 512  # a tenth of nothing: 2 GiB held would be over 2048


def test_2_gib_tarball_is_sealed_with_memory_bounded(s3_location, tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    key, pub = generate_keypair(tmp_path / "keys" / "plugin.key")
    done = subprocess.run(
        [sys.executable, "-m", "tests.plugin.big_tarball", s3_location.server.endpoint,
         s3_location.bucket, str(key), str(SIZE)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
        env={**os.environ, **TEST_ENV, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    peak_mib = json.loads(done.stdout.splitlines()[-1])["vmhwm_kib"] / 1024
    head = s3_location.client().head_object(Bucket=s3_location.bucket,
                                            Key="velero/backups/big/big.tar.gz")
    assert head["ContentLength"] > SIZE
    assert peak_mib < BOUND_MIB, f"peak {peak_mib:.0f} MiB"
    print(f"peak resident memory {peak_mib:.0f} MiB for {head['ContentLength']} bytes")
    seal_file = tmp_path / "big-merkle.seal"
    seal_file.write_bytes(s3_location.client().get_object(
        Bucket=s3_location.bucket, Key="velero/backups/big/big-merkle.seal")["Body"].read())
    seal = subprocess.run([sys.executable, "-m", "merkle_backup", "inspect", str(seal_file),
                           "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert seal.returncode == 0, seal.stderr
    shown = json.loads(seal.stdout)
    assert shown["archive_size"] == head["ContentLength"] and shown["backup"] == "big"
    assert shown["leaves"] == shown["tree_size"] > 64  # every manifest, and the metadata object
