"""docs/format.md §12.2, docs/threat-model.md T77: one key signs several logs (one per cluster),
each under its own name in the signed origin. Through the CLI, in local folders: one reader's
default state keeps both apart; rollback and fork detection still hold per log; a log served
in place of another of the same key is refused; an unnamed log reads as before."""

from __future__ import annotations

import shutil
from pathlib import Path

from merkle_backup.signing import generate_keypair
from tests.tlog.helpers import findings, one_line, run, stage


def _site(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        stage(root, name, f"uid-{root.name}-{i}")
    return root


def test_t77_one_key_two_named_logs(tmp_path):
    key, pub = generate_keypair(tmp_path / "signer.key")
    a = _site(tmp_path / "cluster-a", ["nightly-1", "nightly-2"])
    b = _site(tmp_path / "cluster-b", ["nightly-1"])
    sealer, reader = tmp_path / "sealer-state.json", tmp_path / "reader-state.json"

    def seal_all(loc, log, name):
        return run("seal-all", loc, "--key", key, "--log", log, "--log-name", name,
                   "--log-state", sealer)

    def audit(loc, log, name, state=reader):
        return run("audit", loc, "--trust", pub, "--log", log, "--log-name", name,
                   "--log-state", state)

    log_a, log_b = tmp_path / "log-a", tmp_path / "log-b"
    assert seal_all(a, log_a, "cluster-a")[0] == 0
    assert seal_all(b, log_b, "cluster-b")[0] == 0  # one sealer state, two logs
    old_a = tmp_path / "log-a-copy"
    shutil.copytree(log_a, old_a)
    stage(a, "nightly-3", "uid-a-3")
    assert seal_all(a, log_a, "cluster-a")[0] == 0
    # One reader state for both: neither is a rollback of the other.
    for _ in range(2):
        code, out, err = audit(a, log_a, "cluster-a")
        assert code == 0 and set(findings(out).values()) == {"verified"}, out + err
        code, out, err = audit(b, log_b, "cluster-b")
        assert code == 0, out + err
    assert "merkle-backup.log/" in (log_a / "checkpoint").read_text().splitlines()[0]
    assert (log_a / "checkpoint").read_text().splitlines()[0].endswith("/cluster-a")
    code, _, err = run("verify", a / "backups" / "nightly-3", "--trust", pub, "--log", log_a,
                       "--log-name", "cluster-a", "--log-state", reader)
    assert code == 0, err
    proof = tmp_path / "p.proof"  # a proof file names the log's origin; any log of the key
    code, _, err = run("prove", a / "backups" / "nightly-3", "--namespace", "monitoring-000",
                       "--trust", pub, "--log", log_a, "--log-name", "cluster-a",
                       "--log-state", reader, "-o", proof)
    assert code == 0, err
    code, out, err = run("verify-proof", proof, "--trust", pub, "--log-key", pub)
    assert code == 0, out + err
    # Rollback of log a is still caught with the shared state.
    shutil.rmtree(log_a)
    shutil.copytree(old_a, log_a)
    code, _, err = audit(a, log_a, "cluster-a")
    assert code == 1 and "rolled back" in one_line(err)
    # Log b served as log a (same key): its origin names cluster-b, so it is not log a.
    code, _, err = audit(a, log_b, "cluster-a", state=tmp_path / "fresh.json")
    assert code == 1 and "not signed by a trusted key for log cluster-a" in one_line(err)
    # The name is part of what the reader must give: without it, the named log is not "the
    # key's own log".
    code, _, err = run("audit", b, "--trust", pub, "--log", log_b, "--log-state",
                       tmp_path / "fresh2.json")
    assert code == 1 and "not signed by a trusted key" in one_line(err)
    code, _, err = audit(b, log_b, "Cluster/B")
    assert code == 2 and "--log-name" in one_line(err)


def test_t77_an_unnamed_log_reads_as_before(tmp_path):
    key, pub = generate_keypair(tmp_path / "signer.key")
    a = _site(tmp_path / "cluster-a", ["nightly-1"])
    assert run("seal-all", a, "--key", key, "--log", tmp_path / "log",
               "--log-state", tmp_path / "s.json")[0] == 0
    first = (tmp_path / "log" / "checkpoint").read_text().splitlines()[0]
    assert first.count("/") == 1  # merkle-backup.log/<key hash>, §12.2 unchanged
    assert run("audit", a, "--trust", pub, "--log", tmp_path / "log",
               "--log-state", tmp_path / "r.json")[0] == 0
