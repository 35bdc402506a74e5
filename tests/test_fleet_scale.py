"""Issue 16 through the command line, in a local folder and on moto's S3 server (real HTTP):
sharded audits as N processes (JOB_COMPLETION_INDEX) and their merge, incremental audits
(--state), metrics parsed back with prometheus_client, signed attestations read back with
securesystemslib and in-toto-attestation, and the Kubernetes manifests of docs/velero.md."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from merkle_backup.fleet.shard import shard_of
from tests import test_fleet
from tests.storage import server
from tests.test_fleet import Local, Remote, rows, run

moto_server = server.moto_server
_aws_test_env = server._aws_test_env
store = test_fleet.store  # the fixtures of tests/test_fleet.py: a folder, and a bucket on moto
staging = test_fleet.staging

ROOT = Path(__file__).resolve().parents[1]
ENTRY = [sys.executable, "-c", "from merkle_backup._entry import main; main()"]
DOCS = ROOT / "docs" / "velero.md"


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def fleet(store, staging, keypair):
    """A location with 7 sealed backups (one then tampered), one unsealed and one unfinished."""
    for i in range(7):
        store.add(staging(f"nightly-{i}"))
    store.add(staging("weekly-1", source="demo-v153"))
    code, _, err = run("seal-all", store.location, "--key", keypair[0], *store.opts)
    assert code == 0, err
    store.add(staging("nightly-7"))  # final, never sealed
    store.add(staging("nightly-8", phase="InProgress"))
    store.tamper("nightly-3")
    return store


def spawn(args: list, index: int | None = None, **env: str) -> subprocess.Popen:
    environment = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    if index is not None:
        environment["JOB_COMPLETION_INDEX"] = str(index)
    return subprocess.Popen([*ENTRY, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=environment, cwd=ROOT)


def results_url(store, tmp_path: Path, name: str) -> str:
    if isinstance(store, Remote):
        return f"s3://{store.bucket}/audit-results/{name}"  # same bucket, outside velero/
    return str(tmp_path / "audit-results" / name)


def comparable(report: dict) -> dict:
    return {"backups": report["backups"], "summary": report["summary"],
            "exit_code": report["exit_code"], "location": report["location"]}


# --- sharded audits ------------------------------------------------------------------------------


def test_shard_of_is_sha256_mod_n_and_stable() -> None:
    name = "nightly-20261127010000"
    expected = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    assert [shard_of(name, n) for n in (1, 2, 3, 7)] == [expected % n for n in (1, 2, 3, 7)]
    assert shard_of("nightly-1", 5) == 1  # fixed: any change of the rule breaks running Jobs
    counts = [0] * 4
    for i in range(400):
        counts[shard_of(f"backup-{i}", 4)] += 1
    assert min(counts) > 70  # spread


def test_shards_as_processes_merge_to_the_unsharded_audit(fleet, keypair, tmp_path: Path) -> None:
    """N shards as N processes with JOB_COMPLETION_INDEX, for several N: the merge equals one
    unsharded audit (rows, summary, exit code). One shard crashes (SIGKILL) before it writes:
    the merge fails naming it, with exit 3; the Job's retry of that index fixes it."""
    code, out, _ = run("audit", fleet.location, "--trust", keypair[1], *fleet.opts, "--json")
    assert code == 1
    whole = comparable(json.loads(out))
    for n in (1, 2, 3, 5):
        url = results_url(fleet, tmp_path, f"n{n}")
        args = ["audit", fleet.location, "--trust", keypair[1], *fleet.opts, "--shard", str(n),
                "--results", url, "--run-id", f"run-{n}", "--jobs", "2"]
        crash = 1 if n == 3 else None
        procs = {i: spawn(args, index=i) for i in range(n) if i != crash}
        if crash is not None:
            victim = spawn(args, index=crash)
            victim.send_signal(signal.SIGKILL)
            assert victim.wait(timeout=60) == -signal.SIGKILL
        for i, proc in procs.items():
            out_i, err_i = proc.communicate(timeout=120)
            assert proc.returncode in (0, 1), err_i.decode()
            assert f"wrote shard {i}/{n} result" in out_i.decode()
        if crash is not None:
            code, _, err = run("audit-merge", url, *fleet.opts)
            assert code == 3
            assert f"1 of {n} shard(s) missing ({crash})" in one_line(err)
            retry = spawn(args, index=crash)
            assert retry.wait(timeout=120) in (0, 1), retry.stderr.read().decode()
        code, out, err = run("audit-merge", url, *fleet.opts, "--json", "--shards", n)
        merged = json.loads(out)
        assert code == 1, err
        assert comparable(merged) == whole, n
        assert merged["shards"] == n and merged["run_id"] == f"run-{n}"
        code, out, err = run("audit-merge", url, *fleet.opts)
        assert code == 1 and rows(out)["nightly-3"] == "TAMPERED"
        assert one_line(err) == "merkle-backup: not authentic: 1 backup(s) tampered"


def test_an_empty_shard_is_fine_and_a_rerun_replaces_its_result(fleet, keypair, tmp_path: Path) -> None:
    names = [f"nightly-{i}" for i in range(9)] + ["weekly-1"]
    n = 40
    empty = next(i for i in range(n) if all(shard_of(x, n) != i for x in names))
    url = results_url(fleet, tmp_path, "empty")
    code, out, err = run("audit", fleet.location, "--trust", keypair[1], *fleet.opts,
                         "--shard", f"{empty}/{n}", "--results", url, "--run-id", "r1")
    assert code == 0, err
    assert f"shard {empty}/{n}: 0 of 10 backup(s)" in out


def test_merge_refuses_missing_duplicated_and_foreign_shards(store, staging, keypair, tmp_path: Path) -> None:
    store.add(staging("nightly-1"))
    store.add(staging("nightly-2"))
    assert run("seal-all", store.location, "--key", keypair[0], *store.opts)[0] == 0
    url = str(tmp_path / "results")
    base = ["audit", store.location, "--trust", keypair[1], *store.opts, "--results", url]
    for i in (0, 1):
        assert run(*base, "--shard", f"{i}/2", "--run-id", "a")[0] == 0
    assert run("audit-merge", url)[0] == 0
    folder = Path(url)
    # A stale result of an earlier run (the last run's shard 1 crashed): two runs.
    assert run(*base, "--shard", "0/2", "--run-id", "b")[0] == 0
    code, _, err = run("audit-merge", url)
    assert code == 3 and "results of 2 runs (a, b)" in one_line(err)
    code, _, err = run("audit-merge", url, "--run-id", "b")
    assert code == 3 and "1 of 2 shard(s) missing (1)" in one_line(err)
    assert run("audit-merge", url, "--run-id", "a")[0] == 3  # its shard 0 was overwritten by b
    # Duplicated: the same shard twice.
    assert run(*base, "--shard", "1/2", "--run-id", "b")[0] == 0
    (folder / "copy.json").write_bytes((folder / "shard-1-of-2.json").read_bytes())
    code, _, err = run("audit-merge", url)
    assert code == 3 and "shard 1 of 2 of run b is there 2 times (copy.json, shard-1-of-2.json)" in one_line(err)
    (folder / "copy.json").unlink()
    assert run("audit-merge", url)[0] == 0
    # Another N, another location, another key set, a backup in the wrong shard, garbage.
    obj = json.loads((folder / "shard-1-of-2.json").read_text())
    for change, message in (
        ({"shards": 3, "report": dict(obj["report"], backups=[])}, "different shard count"),
        ({"location": "/elsewhere"}, "different location"),
        ({"trusted_key_ids": ["00"]}, "different trusted keys"),
    ):
        (folder / "shard-1-of-2.json").write_text(json.dumps({**obj, **change}))
        code, _, err = run("audit-merge", url)
        assert code == 3 and message in one_line(err), change
    other = next(f"x{i}" for i in range(100) if shard_of(f"x{i}", 2) == 0)
    wrong = dict(obj, report=dict(obj["report"], backups=[{"name": other, "status": "verified"}]))
    (folder / "shard-1-of-2.json").write_text(json.dumps(wrong))
    code, _, err = run("audit-merge", url)
    assert code == 3 and "which is not in shard 1/2" in one_line(err)
    (folder / "shard-1-of-2.json").write_bytes(b"\x1b[2J{not json")
    code, _, err = run("audit-merge", url)
    assert code == 3 and "not a shard result" in one_line(err) and "\x1b" not in err
    code, _, err = run("audit-merge", str(tmp_path / "nothing-here"))
    assert code == 3 and "no such folder" in one_line(err)


def test_a_backup_no_shard_audited_fails_the_merge(store, staging, keypair, tmp_path: Path) -> None:
    """The listings differed (a backup appeared after its shard listed the location): the merge
    names it as could-not-check instead of silently leaving it out."""
    names = ["nightly-1", "nightly-2", "nightly-3", "nightly-4"]
    for n in names:
        store.add(staging(n))
    assert run("seal-all", store.location, "--key", keypair[0], *store.opts)[0] == 0
    late = next(f"late-{i}" for i in range(100) if shard_of(f"late-{i}", 2) == 0)
    url = str(tmp_path / "results")
    base = ["audit", store.location, "--trust", keypair[1], *store.opts, "--results", url,
            "--run-id", "r"]
    assert run(*base, "--shard", "0/2")[0] == 0
    store.add(staging(late))
    assert run("seal-all", store.location, "--key", keypair[0], *store.opts)[0] == 0
    assert run(*base, "--shard", "1/2")[0] == 0
    code, out, err = run("audit-merge", url)
    assert code == 3 and rows(out)[late] == "ERROR" and "audited by none" in out
    assert one_line(err) == "merkle-backup: error: 1 backup(s) could not be checked"


def test_shard_usage_errors(store, staging, keypair, tmp_path: Path, monkeypatch) -> None:
    store.add(staging("nightly-1"))
    base = ["audit", store.location, "--trust", keypair[1], *store.opts]
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    for args, message in (
        (["--shard", "3"], "no shard index"),
        (["--shard", "3/3"], "from 0 to 2"),
        (["--shard", "a/b"], "give I/N"),
        (["--shard", "0/0"], "give I/N"),
        (["--results", str(tmp_path / "r")], "--results needs --run-id"),
        (["--run-id", "x"], "--run-id goes with --results"),
        (["--results", str(tmp_path / "r"), "--run-id", "bad id\n"], "--run-id"),
        (["--attest", str(tmp_path / "a.json")], "--attest FILE and --key KEY go together"),
        (["--full"], "--full goes with --state"),
        (["--state", str(tmp_path / "s"), "--recheck-after", "soon"], "not a duration"),
    ):
        code, _, err = run(*base, *args)
        assert code == 2 and message in one_line(err), args
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "7")
    code, _, err = run(*base, "--shard", "3")
    assert code == 2 and "from 0 to 2" in one_line(err)
    code, _, err = run(*base, "--shard", "1/3")
    assert code == 2 and "disagrees with JOB_COMPLETION_INDEX" in one_line(err)


def test_results_inside_velero_prefix_are_refused(store, staging, keypair, tmp_path: Path) -> None:
    store.add(staging("nightly-1"))
    base = ["audit", store.location, "--trust", keypair[1], *store.opts, "--run-id", "r"]
    if isinstance(store, Remote):
        inside = f"s3://{store.bucket}/velero/backups/nightly-1/results"
        top = f"s3://{store.bucket}/velero/audit"
        prefix = f"s3://{store.bucket}/velero"
    else:
        inside = str(store.folder("nightly-1") / "results")
        top = str(store.root / "audit")
        prefix = str(store.root)
    for url, message in ((inside, "inside the location's backups/ tree"),
                         (top, "under Velero's prefix"), (prefix, "under Velero's prefix")):
        code, _, err = run(*base, "--results", url)
        assert code == 2 and message in one_line(err), url
    assert not store.exists("nightly-1", "results")


# --- incremental audits --------------------------------------------------------------------------


def test_incremental_audit_skips_only_what_is_unchanged(store, staging, keypair, tmp_path: Path) -> None:
    for i in range(3):
        store.add(staging(f"nightly-{i}"))
    assert run("seal-all", store.location, "--key", keypair[0], *store.opts)[0] == 0
    state = tmp_path / "auditor" / "state.json"
    state.parent.mkdir()
    audit = ["audit", store.location, "--trust", keypair[1], *store.opts, "--state", state]
    code, out, err = run(*audit)
    assert code == 0, err
    assert "no state in" in out and "not re-read" not in out
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in state.parent.iterdir()) == ["state.json"]  # no temporary left
    code, out, _ = run(*audit)
    assert code == 0 and "incremental: 3 backup(s) unchanged" in out and "0 read" in out
    code, out, _ = run(*audit, "--json")
    assert json.loads(out)["not_reread"] == 3

    # Tampering is always re-read: the tarball, then (tarball restored) only velero-backup.json.
    original = store.read("nightly-1", "nightly-1.tar.gz")
    store.tamper("nightly-1")
    code, out, _ = run(*audit)
    assert code == 1 and rows(out)["nightly-1"] == "TAMPERED" and "2 backup(s) unchanged" in out
    store.write("nightly-1", "nightly-1.tar.gz", original)
    code, out, _ = run(*audit)
    assert code == 0 and "2 backup(s) unchanged" in out  # a tampered one is not in the state
    assert "incremental: 3 backup(s) unchanged" in run(*audit)[1]
    manifest = json.loads(store.read("nightly-2", "velero-backup.json"))
    manifest["status"]["phase"] = "InProgress"
    store.write("nightly-2", "velero-backup.json", json.dumps(manifest).encode())
    code, out, _ = run(*audit)
    assert code == 1 and rows(out)["nightly-2"] == "TAMPERED"
    # A new object in a backup's folder (a sidecar Velero never wrote) is re-read too.
    store.write("nightly-0", "extra.json", b"{}")
    code, out, _ = run(*audit)
    assert code == 1 and rows(out)["nightly-0"] == "TAMPERED" and "unexpected" in out
    store.remove("nightly-0")
    store.remove("nightly-2")
    # --full re-reads everything.
    code, out, _ = run(*audit, "--full")
    assert code == 0 and "not re-read" not in out and "--full" in out


def test_incremental_recheck_after_and_stale_or_foreign_state(store, staging, keypair, tmp_path: Path,
                                                             other_keypair) -> None:
    store.add(staging("nightly-1"))
    assert run("seal-all", store.location, "--key", keypair[0], *store.opts)[0] == 0
    state = tmp_path / "state.json"
    audit = ["audit", store.location, "--trust", keypair[1], *store.opts, "--state", state]
    assert run(*audit)[0] == 0
    assert "1 backup(s) unchanged" in run(*audit)[1]

    def age(delta: timedelta) -> None:
        obj = json.loads(state.read_text())
        when = datetime.now(timezone.utc) - delta
        obj["backups"]["nightly-1"]["verified_at"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        state.write_text(json.dumps(obj))

    age(timedelta(hours=2))
    assert "unchanged" in run(*audit, "--recheck-after", "3h")[1]
    assert "unchanged" not in run(*audit, "--recheck-after", "1h")[1]  # re-read, then recorded anew
    assert "unchanged" in run(*audit, "--recheck-after", "1h")[1]
    age(timedelta(days=8))  # a stale state file (restored from an old copy): past the default 7d
    code, out, _ = run(*audit)
    assert code == 0 and "unchanged" not in out
    age(timedelta(days=-1))  # dated in the future: not trusted either
    assert "unchanged" not in run(*audit)[1]
    # Recorded with other trusted keys, or for another location: ignored, said so.
    code, out, _ = run("audit", store.location, "--trust", other_keypair[1], "--trust", keypair[1],
                       *store.opts, "--state", state)
    assert code == 0 and "other trusted keys: ignored" in out and "unchanged" not in out
    obj = json.loads(state.read_text())
    state.write_text(json.dumps({**obj, "location": "s3://elsewhere/velero"}))
    code, out, _ = run(*audit)
    assert code == 0 and "is for s3://elsewhere/velero: ignored" in out
    # An unreadable state file: exit 3, one line; never a reason to skip.
    state.write_bytes(b"{\"format\": \"merkle-backup-audit-state/1\", \"backups\": [")
    code, out, err = run(*audit)
    assert code == 3 and "state file" in one_line(err) and "--full" in err


def test_local_state_sees_a_rewrite_that_keeps_size_and_mtime(tmp_path: Path, staging, keypair) -> None:
    """Same size, mtime put back (touch -r): the ctime and inode still differ, so it is re-read."""
    store = Local(tmp_path / "bucket")
    store.add(staging("nightly-1"))
    assert run("seal-all", store.location, "--key", keypair[0])[0] == 0
    state = tmp_path / "state.json"
    audit = ["audit", store.location, "--trust", keypair[1], "--state", state]
    assert run(*audit)[0] == 0
    tarball = store.folder("nightly-1") / "nightly-1.tar.gz"
    data = bytearray(tarball.read_bytes())
    st = tarball.stat()
    data[len(data) // 2] ^= 0xFF  # same size
    with open(tarball, "r+b") as f:  # in place: same inode
        f.write(data)
    os.utime(tarball, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert tarball.stat().st_mtime_ns == st.st_mtime_ns and tarball.stat().st_size == st.st_size
    code, out, _ = run(*audit)
    assert code == 1 and rows(out)["nightly-1"] == "TAMPERED"


# --- metrics -------------------------------------------------------------------------------------


def parse_metrics(path: Path) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_metrics_file_parses_back(fleet, keypair, tmp_path: Path) -> None:
    prom = tmp_path / "textfile" / "merkle_backup.prom"
    prom.parent.mkdir()
    before = time.time()
    code, _, _ = run("audit", fleet.location, "--trust", keypair[1], *fleet.opts, "--metrics", prom)
    assert code == 1
    assert [p.name for p in prom.parent.iterdir()] == ["merkle_backup.prom"]  # renamed into place
    m = parse_metrics(prom)
    loc = fleet.location
    by_status = {l["status"]: v for l, v in m["merkle_backup_audit_backups"] if l["location"] == loc}
    assert by_status == {"verified": 7, "tampered": 1, "unsealed": 1, "unfinished": 1, "error": 0}
    status = {l["backup"]: l["status"] for l, v in m["merkle_backup_backup_status"] if v == 1}
    assert status["nightly-3"] == "tampered" and status["nightly-7"] == "unsealed"
    assert status["nightly-8"] == "unfinished" and status["weekly-1"] == "verified"
    last = {l["backup"]: v for l, v in m["merkle_backup_backup_last_verified_timestamp_seconds"]}
    assert set(last) == {f"nightly-{i}" for i in (0, 1, 2, 4, 5, 6)} | {"weekly-1"}
    assert all(before - 1 <= v <= time.time() + 1 for v in last.values())
    ((_, duration),) = m["merkle_backup_audit_duration_seconds"]
    assert 0 < duration < 120
    assert m["merkle_backup_audit_exit_code"][0][1] == 1


def test_metrics_escape_hostile_folder_names(tmp_path: Path, staging, keypair) -> None:
    store = Local(tmp_path / "bucket")
    store.add(staging("nightly-1"))
    hostile = 'x"} 1\nmerkle_backup_audit_backups{status="verified'
    (store.root / "backups" / hostile).mkdir()
    prom = tmp_path / "m.prom"
    code, _, _ = run("audit", store.location, "--trust", keypair[1], "--metrics", prom)
    assert code == 3  # the folder that is not a backup name could not be checked
    m = parse_metrics(prom)
    status = {l["backup"]: l["status"] for l, _ in m["merkle_backup_backup_status"]}
    assert status[hostile] == "error" and status["nightly-1"] == "unsealed"
    assert len(m["merkle_backup_audit_backups"]) == 5


def test_merge_writes_metrics(store, staging, keypair, tmp_path: Path) -> None:
    store.add(staging("nightly-1"))
    assert run("seal-all", store.location, "--key", keypair[0], *store.opts)[0] == 0
    url = str(tmp_path / "r")
    assert run("audit", store.location, "--trust", keypair[1], *store.opts, "--results", url,
               "--run-id", "r1")[0] == 0
    code, out, _ = run("audit-merge", url, "--metrics", tmp_path / "m.prom")
    assert code == 0 and "wrote metrics" in out
    m = parse_metrics(tmp_path / "m.prom")
    assert {l["status"]: v for l, v in m["merkle_backup_audit_backups"]}["verified"] == 1


# --- attestations --------------------------------------------------------------------------------


def _object_sha256(store, name: str, filename: str) -> str:
    return hashlib.sha256(store.read(name, filename)).hexdigest()


def test_attestation_is_signed_evidence_read_by_independent_readers(fleet, keypair, tmp_path: Path) -> None:
    att = tmp_path / "audit.intoto.json"
    code, out, _ = run("audit", fleet.location, "--trust", keypair[1], *fleet.opts,
                       "--attest", att, "--key", keypair[0])
    assert code == 1 and "wrote attestation" in out
    env = json.loads(att.read_text())
    assert env["payloadType"] == "application/vnd.in-toto+json"

    # securesystemslib's DSSE: the PAE signature verifies with the trusted key.
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    public = serialization.load_pem_public_key(Path(keypair[1]).read_bytes())
    key = SSlibKey.from_crypto(public, keyid=env["signatures"][0]["keyid"])
    envelope = Envelope.from_dict(json.loads(att.read_text()))
    assert set(envelope.verify([key], 1)) == {key.keyid}

    # in-toto-attestation's Statement v1: parses and validates.
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    pb = json_format.Parse(envelope.payload, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    statement = json.loads(envelope.payload)
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    for name in ("nightly-0", "nightly-3", "weekly-1"):
        tarball = f"{fleet.location}/backups/{name}/{name}.tar.gz"
        seal = f"{fleet.location}/backups/{name}/{name}-merkle.seal"
        assert subjects[tarball] == _object_sha256(fleet, name, f"{name}.tar.gz")
        assert subjects[seal] == _object_sha256(fleet, name, f"{name}-merkle.seal")
    assert f"{fleet.location}/backups/nightly-7/nightly-7.tar.gz" not in subjects  # unsealed
    predicate = statement["predicate"]
    assert predicate["findings"]["summary"]["tampered"] == 1 and predicate["findings"]["exit_code"] == 1
    assert predicate["scope"]["location"] == fleet.location and predicate["tool"]["name"] == "merkle-backup"

    # merkle-backup's own check, and what an auditor asks of it.
    code, out, err = run("verify-attestation", att, "--trust", keypair[1])
    assert code == 0, err
    assert out.startswith(f"AUTHENTIC attestation: audit of {fleet.location}")
    good = _object_sha256(fleet, "nightly-0", "nightly-0.tar.gz")
    bad = _object_sha256(fleet, "nightly-3", "nightly-3.tar.gz")
    assert run("verify-attestation", att, "--trust", keypair[1], "--digest", f"sha256:{good}")[0] == 0
    code, _, err = run("verify-attestation", att, "--trust", keypair[1], "--digest", f"sha256:{bad}")
    assert code == 1 and "not attested as a verified backup" in one_line(err)
    code, _, err = run("verify-attestation", att, "--trust", keypair[1], "--digest", "md5:00")
    assert code == 2 and "sha256:" in one_line(err)


def test_a_tampered_attestation_is_refused(store, staging, keypair, other_keypair, tmp_path: Path) -> None:
    store.add(staging("nightly-1"))
    store.add(staging("nightly-2"))
    assert run("seal-all", store.location, "--key", keypair[0], *store.opts)[0] == 0
    store.tamper("nightly-2")
    att = tmp_path / "a.json"
    assert run("audit", store.location, "--trust", keypair[1], *store.opts, "--attest", att,
               "--key", keypair[0])[0] == 1
    env = json.loads(att.read_text())
    statement = json.loads(base64.b64decode(env["payload"]))

    def check(envelope: dict | bytes) -> tuple[int, str]:
        forged = tmp_path / "forged.json"
        forged.write_bytes(envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode())
        code, _, err = run("verify-attestation", forged, "--trust", keypair[1])
        return code, (one_line(err) if code else "")

    # The findings rewritten to "all verified", the signature kept.
    lie = json.loads(json.dumps(statement))
    for b in lie["predicate"]["findings"]["backups"]:
        b["status"] = "verified"
    lie["predicate"]["findings"]["summary"] = {"verified": 2, "tampered": 0}
    payload = base64.b64encode(json.dumps(lie).encode()).decode()
    code, err = check({**env, "payload": payload})
    assert code == 1 and "not signed by any trusted key" in err
    # Every single byte of the payload flipped in turn (a sample): never accepted.
    raw = bytearray(base64.b64decode(env["payload"]))
    for i in range(0, len(raw), max(1, len(raw) // 40)):
        mutated = bytearray(raw)
        mutated[i] ^= 0x01
        code, _ = check({**env, "payload": base64.b64encode(bytes(mutated)).decode()})
        assert code == 1, i
    # Re-signed by the attacker's key; another payloadType (PAE binds it); no signature.
    from merkle_backup.fleet.attest import envelope as make_envelope
    from merkle_backup.signing import load_private_key

    code, err = check(make_envelope(lie, [load_private_key(other_keypair[0])]))
    assert code == 1 and "not signed by any trusted key" in err
    code, err = check({**env, "payloadType": "application/json"})
    assert code == 3 and "payloadType" in err
    code, err = check({**env, "signatures": []})
    assert code == 1 and "no signature" in err
    # A signature that does not decode is no signature (T76): none is left, so not authentic.
    code, err = check({**env, "signatures": [{"keyid": "x", "sig": "!!"}]})
    assert code == 1 and "not signed by any trusted key" in err
    code, err = check(b"\x1b]0;owned\x07 not json")
    assert code == 3 and "not valid JSON" in err and "\x1b" not in err
    dup = json.dumps(env)[:-1] + ', "payloadType": "application/vnd.in-toto+json"}'
    code, err = check(dup.encode())
    assert code == 3 and "duplicate key" in err
    code, _, err = run("verify-attestation", tmp_path / "missing.json", "--trust", keypair[1])
    assert code == 3 and "cannot read" in one_line(err)
    # The untouched one still verifies.
    assert check(env)[0] == 0


def test_incremental_attestation_keeps_the_digests(store, staging, keypair, tmp_path: Path) -> None:
    store.add(staging("nightly-1"))
    assert run("seal-all", store.location, "--key", keypair[0], *store.opts)[0] == 0
    state, att = tmp_path / "s.json", tmp_path / "a.json"
    base = ["audit", store.location, "--trust", keypair[1], *store.opts, "--state", state,
            "--attest", att, "--key", keypair[0]]
    assert run(*base[:-4])[0] == 0  # recorded without --attest: no digests in the state...
    code, out, _ = run(*base)
    assert code == 0 and "unchanged" not in out  # ...so the attesting run re-reads it
    code, out, _ = run(*base)
    assert code == 0 and "1 backup(s) unchanged" in out
    code, out, _ = run("verify-attestation", att, "--trust", keypair[1], "--json")
    statement = json.loads(out)["statement"]
    (row,) = statement["predicate"]["findings"]["backups"]
    assert row["reread"] is False and row["last_full_verification"]
    assert row["tarball"]["sha256"] == _object_sha256(store, "nightly-1", "nightly-1.tar.gz")
    assert statement["predicate"]["scope"]["incremental"]["not_reread"] == 1


# --- docs/velero.md: the audit Job and CronJob manifests, the alert rules ------------------------


def _docs() -> list[dict]:
    yaml = pytest.importorskip("yaml")
    text = DOCS.read_text()
    blocks = text.split("```yaml\n")[1:]
    return [doc for block in blocks for doc in yaml.safe_load_all(block.split("```", 1)[0]) if doc]


def _audit_objects() -> tuple[dict, dict, list[dict]]:
    docs = _docs()
    job = next(d for d in docs if d.get("kind") == "Job")
    cron = next(d for d in docs if d.get("kind") == "CronJob"
                and d["metadata"]["name"] == "merkle-backup-audit")
    rules = next(d for d in docs if d.get("kind") == "PrometheusRule")
    return job, cron, [rules]


def _check_audit_job_spec(spec: dict, namespace: str) -> list[str]:
    assert spec["completionMode"] == "Indexed"
    assert isinstance(spec["completions"], int) and spec["completions"] >= 2
    assert isinstance(spec["parallelism"], int) and 1 <= spec["parallelism"] <= spec["completions"]
    assert spec.get("backoffLimitPerIndex", 0) >= 1  # a crashed shard is retried alone
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "audit" and args[1].startswith("s3://")
    assert "--key" not in args and "--attest" not in args  # no signing key in an audit shard
    assert args[args.index("--shard") + 1] == str(spec["completions"])  # index from the Job
    results = args[args.index("--results") + 1]
    location = args[1].rstrip("/")
    assert not results.startswith(location + "/") and results != location
    volumes = {v["name"]: v for v in pod["volumes"]}
    for v in volumes.values():  # no Secret holds the signing key
        assert v.get("secret", {}).get("secretName") != "merkle-backup-signer"
    for m in container["volumeMounts"]:
        assert m.get("readOnly") is True or "emptyDir" in volumes[m["name"]]
    trust = args[args.index("--trust") + 1]
    mount = next(m for m in container["volumeMounts"] if trust.startswith(m["mountPath"] + "/"))
    assert "configMap" in volumes[mount["name"]]
    env = {e["name"]: e for e in container["env"]}
    assert "$(RUN_ID)" in args
    assert env["RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['batch.kubernetes.io/controller-uid']"
    return args


def test_audit_job_and_cronjob_manifests_are_valid() -> None:
    job, cron, _ = _audit_objects()
    for obj in (job, cron):
        assert obj["apiVersion"] == "batch/v1" and obj["metadata"]["namespace"] == "merkle-backup"
    _check_audit_job_spec(job["spec"], "merkle-backup")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["spec"]["schedule"].split()) == 5
    _check_audit_job_spec(cron["spec"]["jobTemplate"]["spec"], "merkle-backup")
    merge = next(d for d in _docs() if d.get("kind") == "CronJob"
                 and d["metadata"]["name"] == "merkle-backup-audit-merge")
    (container,) = merge["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "audit-merge"


def test_alert_rules_use_the_metrics_written(tmp_path: Path, staging, keypair) -> None:
    import re

    _, _, (rules,) = _audit_objects()
    assert rules["apiVersion"] == "monitoring.coreos.com/v1"
    store = Local(tmp_path / "bucket")
    store.add(staging("nightly-1"))
    assert run("seal-all", store.location, "--key", keypair[0])[0] == 0
    prom = tmp_path / "m.prom"
    assert run("audit", store.location, "--trust", keypair[1], "--metrics", prom)[0] == 0
    names = set(parse_metrics(prom))
    exprs = [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
    assert len(exprs) >= 3
    for expr in exprs:
        used = set(re.findall(r"merkle_backup_[a-z_]+", expr))
        assert used and used <= names, expr
    text = " ".join(exprs)
    assert 'status="tampered"' in text and 'status="unsealed"' in text and "86400" in text


def test_documented_job_command_line_audits_a_bucket(moto_server, staging, keypair, tmp_path: Path) -> None:
    """The Indexed Job's container arguments, with its mounted files mapped to local ones, the
    Job's environment (JOB_COMPLETION_INDEX, RUN_ID) and the test server's endpoint: every
    shard runs as a process, and the documented merge combines them."""
    job, _, _ = _audit_objects()
    spec = job["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    args = list(container["args"])
    location, results = args[1], args[args.index("--results") + 1]
    client = moto_server.client()
    for url in (location, results):
        bucket = url[len("s3://"):].split("/", 1)[0]
        if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
            client.create_bucket(Bucket=bucket)
    bucket, _, prefix = location[len("s3://"):].partition("/")
    from tests.storage.server import upload_folder

    names = ("nightly-1", "nightly-2", "nightly-3")
    try:
        for name in names:
            upload_folder(client, bucket, f"{prefix}/backups/{name}", staging(name))
        _run_documented_job(moto_server, keypair, container, spec, location, results)
    finally:  # the bucket names are the documented ones, shared with tests/test_fleet.py
        from tests.storage.server import keys

        for b, p in ((bucket, f"{prefix}/backups/"), (results[len("s3://"):].split("/", 1)[0], "")):
            for key in keys(client, b, p):
                client.delete_object(Bucket=b, Key=key)


def _run_documented_job(moto_server, keypair, container, spec, location, results) -> None:
    assert run("seal-all", location, "--key", keypair[0], "--endpoint-url", moto_server.endpoint,
               "--path-style")[0] == 0
    mounted = {"/trust/signer.key.pub": str(keypair[1])}
    env = {e["name"]: e.get("value", "") for e in container["env"] if "value" in e}
    env = {k: mounted.get(v, v) for k, v in env.items() if k != "AWS_SHARED_CREDENTIALS_FILE"}
    run_id = "0f8e2c1a-job-uid"
    argv = [mounted.get(a, a).replace("$(RUN_ID)", run_id) for a in container["args"]]
    extra = ["--endpoint-url", moto_server.endpoint, "--path-style"]
    procs = [spawn([*argv, *extra], index=i, **env) for i in range(spec["completions"])]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    code, out, err = run("audit-merge", results, *extra, "--run-id", run_id)
    assert code == 0, err
    assert rows(out) == {"nightly-1": "verified", "nightly-2": "verified", "nightly-3": "verified"}


def test_a_backup_changed_while_it_is_audited_is_not_recorded(tmp_path: Path, staging, keypair) -> None:
    """The fingerprint is taken before the read and again after it: a backup whose folder changed
    in between is `error` (run again), and is not recorded in the state as verified."""
    from merkle_backup.fleet.audit_run import FleetOptions, run_audit
    from merkle_backup.signing import load_public_key
    from merkle_backup.storage.local import LocalBucket

    store = Local(tmp_path / "bucket")
    store.add(staging("nightly-1"))
    store.add(staging("nightly-2"))
    assert run("seal-all", store.location, "--key", keypair[0])[0] == 0

    class Touching(LocalBucket):
        def open(self, name: str):
            if name == "nightly-2":  # a writer touches the folder mid-audit (here: chmod, ctime)
                os.chmod(self.backups / name / "velero-backup.json", 0o600)
            return super().open(name)

    state = tmp_path / "state.json"
    result = run_audit(Touching(store.root), [load_public_key(Path(keypair[1]))], jobs=1,
                       require_seal=False, limits=None, options=FleetOptions(state=state))
    got = {r.name: r.status for r in result.report.backups}
    assert got == {"nightly-1": "verified", "nightly-2": "error"}
    assert "changed while it was being audited" in result.report.backups[1].detail
    result.write_outputs(lambda line: None)
    assert set(json.loads(state.read_text())["backups"]) == {"nightly-1"}


def test_fleet_benchmark_runs_and_is_sane(tmp_path: Path) -> None:
    """bench/fleet.py at a tiny size: every scenario runs, the merged 2-shard audit equals the
    unsharded one, and the incremental run skips every backup (no timing is asserted)."""
    from bench.fleet import run_fleet, summary_line

    fleet = run_fleet(tmp_path / "fleet", 12, 1, lambda message: None)
    assert fleet["sanity"] == []
    assert set(fleet["scenarios"]) == {"unsharded", "sharded_2", "incremental"}
    assert all(s["median_wall"] > 0 for s in fleet["scenarios"].values())
    assert "12 small backups" in summary_line(fleet)


def test_attestation_signed_by_two_keys_verifies_with_either(fleet, keypair, other_keypair,
                                                              tmp_path: Path) -> None:
    """Overlap rotation, as for seals: `--key` twice gives one DSSE signature per key, each
    checked by securesystemslib; a verifier trusting either key accepts the envelope, one
    trusting neither refuses it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    att = tmp_path / "audit.intoto.json"
    code, out, err = run("audit", fleet.location, "--trust", keypair[1], *fleet.opts,
                         "--attest", att, "--key", keypair[0], "--key", other_keypair[0])
    assert code == 1 and "wrote attestation" in out, err
    env = json.loads(att.read_text())
    assert len(env["signatures"]) == 2
    keys = [SSlibKey.from_crypto(serialization.load_pem_public_key(Path(pub).read_bytes()),
                                 keyid=sig["keyid"])
            for pub, sig in zip((keypair[1], other_keypair[1]), env["signatures"])]
    assert set(Envelope.from_dict(env).verify(keys, 2)) == {k.keyid for k in keys}
    for pub in (keypair[1], other_keypair[1]):
        code, out, err = run("verify-attestation", att, "--trust", pub)
        assert code == 0 and out.startswith("AUTHENTIC attestation"), err
    third = tmp_path / "third.pub"
    third.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    code, _, err = run("verify-attestation", att, "--trust", third)
    assert code == 1 and "not signed by any trusted key" in one_line(err)
