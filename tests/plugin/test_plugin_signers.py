"""The plugin's signingKey as a key reference (issue 22's signers, docs/velero.md §0.3): the
seal and the records are signed through a real ssh-agent and through AWS KMS (the ministack
emulator, the standard credential chain as IRSA gives it in a pod), the key never in the pod.
A signer whose key is not among trustedKeys is refused at Init, before anything is signed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from merkle_backup.errors import CannotCheck
from tests.plugin.test_backend import Velero, backup, velero  # noqa: F401  (fixtures)
from tests.plugin.test_velero_standin import Cluster, cluster  # noqa: F401  (fixtures)
from tests.signers.conftest import kms_env, kms_key, ministack, ssh_agent  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def pubkey(ref: str, out: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "merkle_backup", "pubkey", ref, "-o", str(out)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return out


def test_plugin_signs_through_an_ssh_agent(velero: Velero, backup: Path, ssh_agent,  # noqa: F811
                                           moto_server, tmp_path: Path) -> None:
    velero.config["signingKey"] = ssh_agent.ref
    velero.put_backup(backup)
    velero.finalize(backup)
    pub = pubkey(ssh_agent.ref, tmp_path / "agent.pub")
    result = subprocess.run(
        [sys.executable, "-m", "merkle_backup", "verify",
         f"s3://{velero.bucket}/velero/backups/nightly", "--trust", str(pub),
         "--endpoint-url", moto_server.endpoint, "--path-style"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    # The agent's key is not the trusted one: refused at Init, nothing signed.
    other = tmp_path / "keys" / "plugin.key.pub"
    velero.config["trustedKeys"] = str(other)
    with pytest.raises(CannotCheck, match="not among trustedKeys"):
        velero.process()


def test_plugin_signs_through_kms_under_velero(cluster: Cluster, kms_env,  # noqa: F811
                                               tmp_path: Path) -> None:
    kms_key(kms_env, "velero-plugin")
    ref = "awskms:///alias/velero-plugin"
    cluster.config["signingKey"] = ref
    cluster.pub = pubkey(ref, tmp_path / "kms.pub")
    cluster.config["trustedKeys"] = str(cluster.pub)
    cluster.backup()
    result = cluster.verify("nightly")
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "restored"
    done = cluster.run("restore", "nightly", "--out", str(out))
    assert done.returncode == 0, done.stderr
