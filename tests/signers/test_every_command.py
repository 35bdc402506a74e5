"""Every signing command takes a key reference (docs/format.md §6.1): seal-all --log (the log's
heads and entries), forget (a tombstone), witness (a cosignature), audit --attest (a DSSE
envelope). Here with keys held by a real ssh-agent and the ministack KMS; what they sign is
checked by the same verifiers as with key files."""

from __future__ import annotations

from pathlib import Path

from merkle_backup.signing import load_public_key
from tests.cli import run
from tests.signers.conftest import kms_key
from tests.tlog.helpers import findings, stage


def test_log_forget_witness_and_attest_with_references(tmp_path: Path, ssh_agent,
                                                       kms_env) -> None:
    bucket, log = tmp_path / "bucket", tmp_path / "log"
    stage(bucket, "nightly-a", "uid-a")
    stage(bucket, "nightly-b", "uid-b")
    sealer, witness = ssh_agent.ref, "awskms:///alias/mb-witness"
    kms_key(kms_env, "mb-witness")
    sealer_pub, witness_pub = tmp_path / "sealer.pub", tmp_path / "witness.pub"
    assert run("pubkey", sealer, "-o", sealer_pub)[0] == 0
    assert run("pubkey", witness, "-o", witness_pub)[0] == 0

    code, out, err = run("seal-all", bucket, "--key", sealer, "--pub", sealer_pub, "--log", log,
                         "--log-state", tmp_path / "sealer.json")
    assert code == 0, err
    code, out, err = run("witness", "--log", log, "--trust", sealer_pub, "--key", witness,
                         "--state", tmp_path / "witness.json")
    assert code == 0 and "cosigned" in out, err
    (bucket / "backups" / "nightly-a").rename(tmp_path / "gone")  # deleted before expiring
    code, out, err = run("forget", "nightly-a", "--key", sealer, "--log", log,
                         "--log-state", tmp_path / "sealer.json")
    assert code == 0 and "tombstone" in out, err
    attestation = tmp_path / "audit.intoto.json"
    code, out, err = run("audit", bucket, "--trust", sealer_pub, "--log", log,
                         "--log-state", tmp_path / "auditor.json")
    assert code == 0, (out, err)  # a forgotten backup is not a finding
    assert findings(out)["nightly-a"] == "forgotten" and findings(out)["nightly-b"] == "verified"
    code, out, err = run("audit", bucket, "--trust", sealer_pub, "--attest", attestation,
                         "--key", witness, "--pub", witness_pub)
    assert code == 0, (out, err)
    code, out, err = run("verify-attestation", attestation, "--trust", witness_pub)
    assert code == 0, err
    assert run("verify-attestation", attestation, "--trust", sealer_pub)[0] == 1
    # The witness's cosignature, by the KMS key, is what --witness requires.
    code, out, err = run("verify", bucket / "backups" / "nightly-b", "--trust", sealer_pub,
                         "--log", log, "--log-state", tmp_path / "auditor.json",
                         "--witness", witness_pub)
    assert code == 0, err
    assert load_public_key(witness_pub).raw != load_public_key(sealer_pub).raw
