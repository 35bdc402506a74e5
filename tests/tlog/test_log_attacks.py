"""docs/threat-model.md T40-T49 through the CLI, in a local folder and on the moto S3 server."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from merkle_backup.signing import generate_keypair
from tests.storage import server
from tests.storage.server import new_bucket, upload_folder
from tests.tlog.helpers import findings, one_line, run, stage

moto_server = server.moto_server
_aws_test_env = server._aws_test_env


class LocalSite:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bucket = tmp / "bucket"
        (self.bucket / "backups").mkdir(parents=True)
        self.location = str(self.bucket)
        self.log = str(tmp / "log")
        self.opts: list[str] = []

    def add(self, name: str, uid: str, **kw) -> None:
        stage(self.bucket, name, uid, **kw)

    def folder(self, name: str) -> str:
        return str(self.bucket / "backups" / name)

    def write(self, name: str, filename: str, data: bytes) -> None:
        (self.bucket / "backups" / name / filename).write_bytes(data)

    def save(self, name: str) -> Path:
        keep = self.tmp / "saved" / name
        shutil.copytree(self.bucket / "backups" / name, keep)
        return keep

    def restore(self, saved: Path) -> None:
        self.remove(saved.name)
        shutil.copytree(saved, self.bucket / "backups" / saved.name)

    def remove(self, name: str) -> None:
        shutil.rmtree(self.bucket / "backups" / name, ignore_errors=True)

    def snapshot_log(self) -> Path:
        keep = self.tmp / f"logcopy{len(list(self.tmp.glob('logcopy*')))}"
        shutil.copytree(self.log, keep)
        return keep

    def restore_log(self, saved: Path) -> None:
        shutil.rmtree(self.log)
        shutil.copytree(saved, self.log)


class S3Site(LocalSite):
    """Bucket and log on moto: staging happens in a local folder, then uploads."""

    def __init__(self, tmp: Path, moto) -> None:
        super().__init__(tmp)
        self.client = moto.client()
        self.name = new_bucket(self.client)
        self.location = f"s3://{self.name}/velero"
        self.log = f"s3://{self.name}/merkle-log"
        self.opts = ["--endpoint-url", moto.endpoint, "--path-style"]

    def _keys(self, prefix: str) -> list[str]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", ())]
        return out

    def add(self, name: str, uid: str, **kw) -> None:
        stage(self.tmp / "staging", name, uid, **kw)
        upload_folder(self.client, self.name, f"velero/backups/{name}", self.tmp / "staging" / "backups" / name)

    def folder(self, name: str) -> str:
        return f"{self.location}/backups/{name}"

    def write(self, name: str, filename: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=f"velero/backups/{name}/{filename}", Body=data)

    def save(self, name: str) -> Path:
        keep = self.tmp / "saved" / name
        keep.mkdir(parents=True)
        for k in self._keys(f"velero/backups/{name}/"):
            (keep / k.rsplit("/", 1)[1]).write_bytes(
                self.client.get_object(Bucket=self.name, Key=k)["Body"].read())
        return keep

    def restore(self, saved: Path) -> None:
        self.remove(saved.name)
        upload_folder(self.client, self.name, f"velero/backups/{saved.name}", saved)

    def remove(self, name: str) -> None:
        for k in self._keys(f"velero/backups/{name}/"):
            self.client.delete_object(Bucket=self.name, Key=k)

    def snapshot_log(self) -> Path:
        keep = self.tmp / f"logcopy{len(list(self.tmp.glob('logcopy*')))}"
        keep.mkdir()
        for k in self._keys("merkle-log/"):
            p = keep / k[len("merkle-log/"):]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(self.client.get_object(Bucket=self.name, Key=k)["Body"].read())
        return keep

    def restore_log(self, saved: Path) -> None:
        for k in self._keys("merkle-log/"):
            self.client.delete_object(Bucket=self.name, Key=k)
        for p in saved.rglob("*"):
            if p.is_file():
                self.client.put_object(Bucket=self.name, Key="merkle-log/" + str(p.relative_to(saved)),
                                       Body=p.read_bytes())


@pytest.fixture(params=["local", "s3"])
def site(request, tmp_path):
    if request.param == "local":
        return LocalSite(tmp_path)
    return S3Site(tmp_path, request.getfixturevalue("moto_server"))


@pytest.fixture
def keys(tmp_path):
    return generate_keypair(tmp_path / "signer.key")


def seal_all(site, key, *extra, state="sealer-state.json"):
    return run("seal-all", site.location, "--key", key, "--log", site.log,
               "--log-state", site.tmp / state, *site.opts, *extra)


def audit(site, pub, *extra, state="auditor-state.json"):
    return run("audit", site.location, "--trust", pub, "--log", site.log,
               "--log-state", site.tmp / state, *site.opts, *extra)


def verify(site, pub, name, *extra, state="auditor-state.json"):
    return run("verify", site.folder(name), "--trust", pub, "--log", site.log,
               "--log-state", site.tmp / state, *site.opts, *extra)


def test_clean_run_verifies(site, keys):
    key, pub = keys
    site.add("nightly-a", "uid-a")
    site.add("nightly-b", "uid-b")
    code, out, err = seal_all(site, key)
    assert code == 0, out + err
    assert findings(out) == {"nightly-a": "sealed", "nightly-b": "sealed"}
    code, out, err = seal_all(site, key)  # idempotent: nothing new
    assert code == 0 and findings(out) == {"nightly-a": "skipped", "nightly-b": "skipped"}
    code, out, err = audit(site, pub)
    assert code == 0, out + err
    code, out, err = verify(site, pub, "nightly-a", "--json")
    assert code == 0, err
    assert json.loads(out)["log"]["index"] in (0, 2)  # --jobs 2: either was first


def test_t25_broken_seal_with_the_log_is_reported_never_replaced(site, keys):
    """T25 with --log too: a junk file at a logged backup's seal place is `tampered` (exit 1),
    not "could not be sealed", and it stays as it is."""
    key, _ = keys
    site.add("nightly-a", "uid-a")
    assert seal_all(site, key)[0] == 0
    site.write("nightly-a", "nightly-a-merkle.seal", b"junk")
    code, out, err = seal_all(site, key)
    assert code == 1 and findings(out) == {"nightly-a": "TAMPERED"}, out + err
    assert "seal that does not decode" in one_line(err)


def test_t40_old_backup_is_seal_missing_not_sealed(site, keys):
    key, pub = keys
    site.add("nightly-old", "uid-o", age=timedelta(days=3))
    code, out, err = seal_all(site, key)
    assert code == 1 and findings(out) == {"nightly-old": "seal missing"}
    assert "seal missing" in one_line(err)
    code, out, err = audit(site, pub)
    assert code == 1 and findings(out)["nightly-old"] == "seal missing"
    code, out, err = seal_all(site, key, "--backfill")
    assert code == 0 and "backfilled" in out
    assert audit(site, pub)[0] == 0


def test_t40_seal_of_one_old_backup_warns(site, keys):
    """`seal` of one backup completed longer ago than --max-age warns on stderr (one line),
    seals all the same and exits 0; a recent one, or a larger --max-age, is silent."""
    key, pub = keys
    site.add("nightly-old", "uid-o", age=timedelta(days=3))
    site.add("nightly-new", "uid-n")
    code, out, err = run("seal", site.folder("nightly-old"), "--key", key, *site.opts)
    assert code == 0 and "sealed nightly-old" in out
    line = one_line(err)
    assert line.startswith("merkle-backup: warning: nightly-old completed ") and "--max-age (6 h)" in line
    assert run("verify", site.folder("nightly-old"), "--trust", pub, *site.opts)[0] == 0
    code, _, err = run("seal", site.folder("nightly-old"), "--key", key, "--replace", "--max-age", "100",
                       *site.opts)
    assert code == 0 and err == ""
    code, _, err = run("seal", site.folder("nightly-new"), "--key", key, *site.opts)
    assert code == 0 and err == ""


def test_t41_reseal_outside_the_log_is_replaced_and_unlogged(site, keys, tmp_path):
    key, pub = keys
    site.add("nightly-a", "uid-a")
    assert seal_all(site, key)[0] == 0
    # An insider re-seals with the key, outside the log (after changing the backup).
    site.write("nightly-a", "nightly-a-extra.json", b"{}")
    code, _, err = run("seal", site.folder("nightly-a"), "--key", key, "--replace", *site.opts)
    assert code == 0, err
    site.add("nightly-x", "uid-x")
    assert run("seal", site.folder("nightly-x"), "--key", key, *site.opts)[0] == 0
    code, out, err = audit(site, pub)
    assert code == 1, out
    table = findings(out)
    assert table["nightly-a"] == "replaced" and table["nightly-x"] == "unlogged seal"
    rows = {r["name"]: r["status"] for r in json.loads(audit(site, pub, "--json")[1])["backups"]}
    assert rows["nightly-a"] == "replaced" and rows["nightly-x"] == "unlogged seal"
    code, _, err = verify(site, pub, "nightly-a")
    assert code == 1 and "replaced" in one_line(err)
    code, _, err = verify(site, pub, "nightly-x")
    assert code == 1 and "unlogged seal" in one_line(err)


def test_t42_replay_of_an_older_logged_backup_caught_without_uid(site, keys):
    key, pub = keys
    site.add("nightly-a", "uid-old")
    assert seal_all(site, key)[0] == 0
    old = site.save("nightly-a")
    site.remove("nightly-a")
    assert run("forget", "nightly-a", "--key", key, "--log", site.log,
               "--log-state", site.tmp / "sealer-state.json", *site.opts)[0] == 0
    site.add("nightly-a", "uid-new")  # a new backup of the same name
    assert seal_all(site, key)[0] == 0
    assert audit(site, pub)[0] == 0
    site.restore(old)  # the attacker puts the old backup and its valid seal back
    assert run("verify", site.folder("nightly-a"), "--trust", pub, *site.opts)[0] == 0  # T7
    code, out, _ = audit(site, pub)
    assert code == 1 and findings(out)["nightly-a"] == "replayed"
    code, _, err = verify(site, pub, "nightly-a")
    assert code == 1 and "replayed" in one_line(err)


def test_t43_deletion_before_expiration_unless_forgotten(site, keys):
    key, pub = keys
    site.add("nightly-a", "uid-a")
    site.add("nightly-b", "uid-b")
    site.add("nightly-c", "uid-c", ttl=timedelta(minutes=1))  # expired already
    assert seal_all(site, key)[0] == 0
    for name in ("nightly-a", "nightly-b", "nightly-c"):
        site.remove(name)
    code, out, err = audit(site, pub)
    assert code == 1
    table = findings(out)
    assert table == {"nightly-a": "deleted early", "nightly-b": "deleted early", "nightly-c": "expired"}
    assert run("forget", "nightly-a", "--key", key, "--log", site.log,
               "--log-state", site.tmp / "sealer-state.json", *site.opts)[0] == 0
    code, out, _ = audit(site, pub)
    assert code == 1 and findings(out)["nightly-a"] == "forgotten"
    assert findings(out)["nightly-b"] == "deleted early"


def test_t44_seal_deleted_keeps_backup_is_replaced(site, keys):
    key, pub = keys
    site.add("nightly-a", "uid-a")
    assert seal_all(site, key)[0] == 0
    saved = site.save("nightly-a")
    site.remove("nightly-a")
    for p in saved.iterdir():
        if p.name.endswith(".seal"):
            p.unlink()
    site.restore(saved)
    code, out, _ = audit(site, pub)
    assert code == 1 and findings(out)["nightly-a"] == "replaced"


def test_t45_log_rolled_back(site, keys):
    key, pub = keys
    site.add("nightly-a", "uid-a")
    assert seal_all(site, key)[0] == 0
    early = site.snapshot_log()
    site.add("nightly-b", "uid-b")
    assert seal_all(site, key)[0] == 0
    assert audit(site, pub)[0] == 0  # the auditor trusts 4 entries now
    site.restore_log(early)
    code, out, err = audit(site, pub)
    assert code == 1 and "rolled back" in one_line(err)
    code, _, err = verify(site, pub, "nightly-a")
    assert code == 1 and "rolled back" in one_line(err)


def test_t46_log_forked(site, keys, tmp_path):
    key, pub = keys
    site.add("nightly-a", "uid-a")
    assert seal_all(site, key)[0] == 0
    before = site.snapshot_log()
    site.add("nightly-b", "uid-b")
    assert seal_all(site, key)[0] == 0
    assert audit(site, pub)[0] == 0
    # The operator rewrites history: from the early log, another branch, longer.
    site.restore_log(before)
    site.remove("nightly-b")
    site.add("nightly-b", "uid-other")
    site.add("nightly-c", "uid-c")
    code, _, err = seal_all(site, key)
    assert code == 1 and "rolled back" in one_line(err)  # the sealer's own state catches it
    assert seal_all(site, key, state="forger-state.json")[0] == 0
    code, out, err = audit(site, pub)
    assert code == 1 and "forked" in one_line(err)


def test_t47_witness_cosignature_required(site, keys, tmp_path):
    key, pub = keys
    wkey, wpub = generate_keypair(tmp_path / "witness.key")
    site.add("nightly-a", "uid-a")
    assert seal_all(site, key)[0] == 0
    code, _, err = verify(site, pub, "nightly-a", "--witness", wpub)
    assert code == 1 and "no cosignature" in one_line(err)
    code, out, err = run("witness", "--log", site.log, "--trust", pub, "--key", wkey,
                         "--state", tmp_path / "witness-state.json", *site.opts)
    assert code == 0, err
    code, out, err = verify(site, pub, "nightly-a", "--witness", wpub)
    assert code == 0, err
    assert "cosigned by" in out
    # The witness refuses a rolled-back log.
    early = site.snapshot_log()
    site.add("nightly-b", "uid-b")
    assert seal_all(site, key)[0] == 0
    assert run("witness", "--log", site.log, "--trust", pub, "--key", wkey,
               "--state", tmp_path / "witness-state.json", *site.opts)[0] == 0
    site.restore_log(early)
    code, _, err = run("witness", "--log", site.log, "--trust", pub, "--key", wkey,
                       "--state", tmp_path / "witness-state.json", *site.opts)
    assert code == 1 and "rolled back" in one_line(err)


def test_t48_log_under_velero_prefix_refused_and_bad_input(site, keys):
    key, pub = keys
    site.add("nightly-a", "uid-a")
    inside = f"{site.location}/merkle-log"
    code, _, err = run("seal-all", site.location, "--key", key, "--log", inside, *site.opts)
    assert code == 2 and "inside the Velero location" in one_line(err)
    assert seal_all(site, key)[0] == 0
    code, _, err = verify(site, pub, "nightly-a", "--witness", pub, state="x.json")
    assert code == 1  # the signer's key is no witness: no cosignature by it


def test_t49_entries_by_an_untrusted_key(site, keys, tmp_path):
    key, pub = keys
    other, other_pub = generate_keypair(tmp_path / "other.key")
    site.add("nightly-a", "uid-a")
    assert seal_all(site, key)[0] == 0
    code, _, err = audit(site, other_pub, state="o.json")
    assert code == 1 and "not signed by a trusted key" in one_line(err)


def test_log_with_state_and_metrics(site, keys, tmp_path):
    """audit --log --state --metrics: the metrics carry the log's findings; a backup skipped by
    --state (unchanged) is still judged against the log; a flagged backup leaves the state.
    --shard, --results and --attest with --log stay a usage error."""
    from tests.test_fleet_scale import parse_metrics

    key, pub = keys
    site.add("nightly-a", "uid-a")
    site.add("nightly-b", "uid-b")
    assert seal_all(site, key)[0] == 0
    state, prom = tmp_path / "audit-state.json", tmp_path / "m.prom"
    code, out, err = audit(site, pub, "--state", state, "--metrics", prom)
    assert code == 0, out + err
    assert sorted(json.loads(state.read_text())["backups"]) == ["nightly-a", "nightly-b"]
    status = {(s["backup"], s["status"]) for s, v in parse_metrics(prom)["merkle_backup_backup_status"] if v == 1}
    assert status == {("nightly-a", "verified"), ("nightly-b", "verified")}
    # nightly-b is deleted early; nightly-a stays byte for byte (so --state skips re-reading
    # it) but the log now holds a tombstone for it: its seal is back after being forgotten.
    site.remove("nightly-b")
    assert run("forget", "nightly-a", "--key", key, "--log", site.log,
               "--log-state", site.tmp / "sealer-state.json", *site.opts)[0] == 0
    code, out, _ = audit(site, pub, "--state", state, "--metrics", prom, "--json")
    assert code == 1
    rows = {r["name"]: (r["status"], r["detail"]) for r in json.loads(out)["backups"]}
    assert rows["nightly-a"][0] == "replayed" and "not re-read" in rows["nightly-a"][1]
    assert rows["nightly-b"][0] == "deleted early"
    by = {s["status"]: v for s, v in parse_metrics(prom)["merkle_backup_audit_backups"]}
    assert by["replayed"] == 1 and by["deleted early"] == 1 and by["verified"] == 0
    assert json.loads(state.read_text())["backups"] == {}
    assert parse_metrics(prom)["merkle_backup_audit_exit_code"][0][1] == 1
    for extra in (["--shard", "0/2"], ["--attest", tmp_path / "a.json", "--key", key],
                  ["--results", tmp_path / "r", "--run-id", "r1"]):
        code, _, err = audit(site, pub, *extra)
        assert code == 2 and "--state and --metrics combine with it" in one_line(err), extra


def test_two_seal_all_processes_at_once(tmp_path, keys):
    """Two CronJob runs overlap: every backup is sealed and logged once, audit is clean."""
    import subprocess
    import sys

    key, pub = keys
    site = LocalSite(tmp_path)
    for i in range(6):
        site.add(f"nightly-{i}", f"uid-{i}")
    cmd = [sys.executable, "-m", "merkle_backup._entry", "seal-all", site.location, "--key", str(key),
           "--log", site.log, "--jobs", "2"]
    procs = [subprocess.Popen(cmd + ["--log-state", str(tmp_path / f"s{i}.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "Traceback" not in "".join(o[1] for o in outs)
    code, out, err = audit(site, pub)
    assert code == 0, out + err
    from merkle_backup.signing import load_public_key
    from merkle_backup.tlog.log import Log, LogState
    from merkle_backup.tlog.store import LocalLogStore

    log = Log(LocalLogStore(Path(site.log)), [load_public_key(pub)], LogState(tmp_path / "c.json"))
    seals = [e.backup for e in log.entries(log.head()) if e.kind == "seal"]
    assert sorted(seals) == [f"nightly-{i}" for i in range(6)]


def _put_log_object(site, key: str, data: bytes) -> None:
    if isinstance(site, S3Site):
        site.client.put_object(Bucket=site.name, Key=f"merkle-log/{key}", Body=data)
    else:
        path = Path(site.log) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _log_size(site, pub) -> int:
    from merkle_backup.signing import load_public_key
    from merkle_backup.storage.options import ConnectionOptions
    from merkle_backup.tlog.log import Log
    from merkle_backup.tlog.store import open_log_store

    store = open_log_store(site.log, ConnectionOptions(endpoint_url=site.opts[1], path_style=True)
                           if site.opts else ConnectionOptions())
    return Log(store, [load_public_key(pub)], None).head().size


def test_t69_a_claim_without_the_log_key_is_never_rolled_forward(site, keys, tmp_path):
    """T69: someone who can write the log store but holds no key puts a claim made of public
    bytes (the seal entry of a seal made outside the log) at the next slot, unsigned, or signed
    by their own key. The next seal-all --log refuses it (exit 1, one line naming the slot) and
    writes nothing; audit --log still calls the outside seal `unlogged seal`."""
    from merkle_backup.formats.seal import read_seal_head
    from merkle_backup.signing import load_private_key, load_public_key
    from merkle_backup.tlog.entries import seal_entry
    from merkle_backup.tlog.log import encode_claim
    from merkle_backup.tlog.tiles import encode_bundle

    key, pub = keys
    site.add("nightly-a", "uid-a")
    assert seal_all(site, key)[0] == 0  # entries 0 (seal) and 1 (expiry)
    site.add("outside", "uid-o")
    assert run("seal", site.folder("outside"), "--key", key, *site.opts)[0] == 0
    code, out, _ = audit(site, pub)
    assert code == 1 and findings(out)["outside"] == "unlogged seal"
    local = tmp_path / "outside.seal"  # the seal is public: everything in its entry is
    if isinstance(site, S3Site):
        obj = site.client.get_object(Bucket=site.name,
                                     Key="velero/backups/outside/outside-merkle.seal")
        local.write_bytes(obj["Body"].read())
    else:
        local.write_bytes((site.bucket / "backups/outside/outside-merkle.seal").read_bytes())
    with local.open("rb") as f:
        head = read_seal_head(f)
    entry = seal_entry(head.checkpoint, head.signature, load_public_key(pub).raw)
    attacker = load_private_key(generate_keypair(tmp_path / "attacker.key")[0])
    site.add("nightly-c", "uid-c")
    for claim, why in ((encode_bundle([entry]), "not a signed claim"),
                       (encode_claim(attacker, "merkle-backup.log/0000000000000000", 2, [entry]),
                        "not signed by a key of this log")):
        _put_log_object(site, "pending/2", claim)
        code, out, err = seal_all(site, key)
        line = one_line(err)
        assert code == 1 and "pending/2" in line and why in line, out + err
        assert _log_size(site, pub) == 2
        code, out, _ = audit(site, pub)
        assert code == 1 and findings(out)["outside"] == "unlogged seal"
    # Removed after checking: seal-all carries on.
    if isinstance(site, S3Site):
        site.client.delete_object(Bucket=site.name, Key="merkle-log/pending/2")
    else:
        (Path(site.log) / "pending/2").unlink()
    code, out, err = seal_all(site, key)
    assert code == 1 and findings(out)["nightly-c"] == "sealed", out + err  # outside: unlogged
    assert findings(out)["outside"] == "unlogged seal"
