"""The real plugin (merkle_backup.plugin.server + store) started and driven by the Go Velero
stand-in exactly as Velero's plugin manager does, one plugin process per Velero operation,
against moto's S3 server over HTTP: docs/threat-model.md P1-P13 end to end.

Each stand-in command replays one of Velero's call sequences (tests/tools/velerostandin cites
Velero's source for each): ``put-backup`` (PutBackup), ``operations``, ``finalize`` (with and
without async operations), ``sync``, ``restore``, ``delete``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from merkle_backup.signing import generate_keypair
from tests.conftest import FIXTURES
from tests.plugin.standin import calls, object_calls
from tests.storage import server
from tests.storage.server import clone_backup

ROOT = Path(__file__).resolve().parents[2]
# The plugin as Velero runs it: an executable (here the interpreter) started with no arguments
# of Velero's; the checkout's merkle_backup, as the rest of the suite uses.
PLUGIN = [sys.executable, "-c", "from merkle_backup.plugin.server import main; main()"]
PLUGIN_ENV = {"PYTHONPATH": str(ROOT)}
PREFIX = "velero"


class Cluster:
    """One storage location on moto, one plugin key, and the stand-in that plays Velero."""

    def __init__(self, standin, location, tmp_path: Path, plugin: list[str] | None = None,
                 env: dict[str, str | None] | None = None) -> None:
        self.standin, self.location, self.tmp = standin, location, tmp_path
        self.plugin, self.env = plugin or PLUGIN, PLUGIN_ENV if env is None else env
        (tmp_path / "keys").mkdir()
        self.key, self.pub = generate_keypair(tmp_path / "keys" / "plugin.key")
        self.config = {**location.config, "signingKey": str(self.key)}
        self.staged = 0

    def run(self, *args: str, **config: str) -> subprocess.CompletedProcess[str]:
        return self.standin.run(self.plugin, {**self.config, **config}, *args,
                                bucket=self.location.bucket, prefix=PREFIX, env=self.env)

    def stage(self, fixture: str, name: str, phase: str) -> Path:
        self.staged += 1
        return clone_backup(FIXTURES / fixture, self.tmp / f"stage-{self.staged}", name,
                            phase=phase)

    def backup(self, name: str = "nightly", fixture: str = "demo-small") -> tuple[Path, Path]:
        """PutBackup then the finalizer: a Completed, sealed backup."""
        put = self.stage(fixture, name, "Finalizing")
        final = self.stage(fixture, name, "Completed")
        done = self.run("put-backup", name, "--dir", str(put))
        assert done.returncode == 0, done.stderr
        done = self.run("finalize", name, "--dir", str(final))
        assert done.returncode == 0, done.stderr
        return put, final

    def key_of(self, name: str, filename: str) -> str:
        return f"{PREFIX}/backups/{name}/{filename}"

    def stored(self, name: str, filename: str) -> bytes:
        return self.location.client().get_object(
            Bucket=self.location.bucket, Key=self.key_of(name, filename))["Body"].read()

    def tamper(self, name: str, filename: str, data: bytes) -> None:
        self.location.client().put_object(Bucket=self.location.bucket,
                                          Key=self.key_of(name, filename), Body=data)

    def keys(self, name: str) -> list[str]:
        return server.keys(self.location.client(), self.location.bucket,
                           f"{PREFIX}/backups/{name}/")

    def verify(self, name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "merkle_backup", "verify",
             f"s3://{self.location.bucket}/{PREFIX}/backups/{name}", "--trust", str(self.pub),
             "--endpoint-url", self.location.server.endpoint, "--path-style"],
            capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture
def cluster(standin, s3_location, tmp_path: Path) -> Cluster:
    return Cluster(standin, s3_location, tmp_path)


def failed_call(done: subprocess.CompletedProcess[str]) -> dict:
    bad = [c for c in calls(done) if c.get("ok") is False]
    assert bad, done.stdout + done.stderr
    return bad[0]


def test_backup_sync_restore_and_delete_through_velero(cluster: Cluster, tmp_path: Path) -> None:
    put, final = cluster.backup()
    names = {k.rsplit("/", 1)[1] for k in cluster.keys("nightly")}
    assert "nightly-merkle.seal" in names and "nightly.tar.gz.merkle-record" in names
    # The seal is the CLI's format: merkle-backup verify reads it as its own.
    result = cluster.verify("nightly")
    assert result.returncode == 0 and "VERIFIED" in result.stdout, result.stdout + result.stderr
    sync = cluster.run("sync")
    assert sync.returncode == 0, sync.stderr
    assert {"sync": "create", "backup": "nightly", "phase": "Completed"} in calls(sync)
    out = tmp_path / "restored"
    done = cluster.run("restore", "nightly", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "nightly.tar.gz").read_bytes() == (final / "nightly.tar.gz").read_bytes()
    gone = cluster.run("delete", "nightly")
    assert gone.returncode == 0, gone.stderr
    assert cluster.keys("nightly") == []


def test_async_operations_seal_the_rebuilt_tarball(cluster: Cluster, tmp_path: Path) -> None:
    put = cluster.stage("demo-small", "nightly", "WaitingForPluginOperations")
    assert cluster.run("put-backup", "nightly", "--dir", str(put)).returncode == 0
    ops = cluster.stage("demo-small", "nightly", "WaitingForPluginOperations")
    assert cluster.run("operations", "nightly", "--dir", str(ops)).returncode == 0
    final = clone_backup(FIXTURES / "demo-v153", tmp_path / "rebuilt", "nightly",
                         phase="Completed")
    manifest = json.loads((final / "velero-backup.json").read_text())
    manifest["metadata"]["uid"] = json.loads((put / "velero-backup.json").read_text())[
        "metadata"]["uid"]
    (final / "velero-backup.json").write_text(json.dumps(manifest))
    done = cluster.run("finalize", "nightly", "--dir", str(final), "--async")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "restored"
    assert cluster.run("restore", "nightly", "--out", str(out)).returncode == 0
    assert (out / "nightly.tar.gz").read_bytes() == (final / "nightly.tar.gz").read_bytes()
    assert cluster.verify("nightly").returncode == 0


def test_p1_tamper_between_the_tarball_put_and_the_finalizer(cluster: Cluster, tmp_path: Path
                                                             ) -> None:
    put = cluster.stage("demo-small", "nightly", "Finalizing")
    final = cluster.stage("demo-small", "nightly", "Completed")
    assert cluster.run("put-backup", "nightly", "--dir", str(put)).returncode == 0
    genuine = cluster.stored("nightly", "nightly.tar.gz")
    cluster.tamper("nightly", "nightly.tar.gz", bytes([genuine[0] ^ 1]) + genuine[1:])
    assert cluster.run("finalize", "nightly", "--dir", str(final)).returncode == 0
    done = cluster.run("restore", "nightly", "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    bad = failed_call(done)
    assert bad["method"] == "GetObject" and bad["code"] == "DataLoss"
    assert "not the sealed ones" in bad["message"]
    assert not (tmp_path / "out").exists()
    assert 'msg="restore Failed: error downloading backup"' in done.stderr


def test_p2_tamper_after_the_seal_fails_velero_before_the_last_byte(cluster: Cluster,
                                                                    tmp_path: Path) -> None:
    cluster.backup()
    genuine = cluster.stored("nightly", "nightly.tar.gz")
    cluster.tamper("nightly", "nightly.tar.gz", genuine[:-1] + bytes([genuine[-1] ^ 1]))
    done = cluster.run("restore", "nightly", "--out", str(tmp_path / "out"))
    bad = failed_call(done)
    assert done.returncode == 1 and bad["code"] == "DataLoss"
    assert bad["bytes"] < len(genuine)
    # A tampered volumesnapshots must not steer deletion (backup_deletion_controller.go).
    cluster.tamper("nightly", "nightly.tar.gz", genuine)
    cluster.tamper("nightly", "nightly-volumesnapshots.json.gz", b"\x1f\x8b tampered")
    gone = cluster.run("delete", "nightly")
    assert gone.returncode == 1
    assert failed_call(gone)["key"].endswith("nightly-volumesnapshots.json.gz")
    assert "Skipping removal of backup from backup storage" in gone.stderr
    assert "nightly-merkle.seal" in {k.rsplit("/", 1)[1] for k in cluster.keys("nightly")}


def test_p14_sealed_side_file_deleted_fails_the_restore(cluster: Cluster, tmp_path: Path) -> None:
    """Velero's restore reads volumesnapshots with tryGet (ObjectExists, then GetObject) and
    would restore no volume if it were missing: the plugin's ObjectExists fails instead, and
    the restore fails before anything is applied (restore_controller.go:617-620)."""
    cluster.backup()
    cluster.location.client().delete_object(
        Bucket=cluster.location.bucket, Key=cluster.key_of("nightly", "nightly-volumesnapshots.json.gz"))
    done = cluster.run("restore", "nightly", "--out", str(tmp_path / "out"))
    bad = failed_call(done)
    assert done.returncode == 1 and bad["method"] == "ObjectExists" and bad["code"] == "DataLoss"
    assert bad["key"].endswith("nightly-volumesnapshots.json.gz")
    assert "restore Failed: error fetching volumesnapshots.json.gz metadata" in done.stderr
    assert "deleted behind Velero" in done.stderr
    assert not (tmp_path / "out").exists()


def test_p2_tampered_velero_backup_json_is_not_synced(cluster: Cluster) -> None:
    cluster.backup()
    data = json.loads(cluster.stored("nightly", "velero-backup.json"))
    data["spec"]["includedNamespaces"] = ["*"]
    cluster.tamper("nightly", "velero-backup.json", json.dumps(data).encode())
    sync = cluster.run("sync")
    assert not [c for c in calls(sync) if c.get("sync") == "create"]
    assert failed_call(sync)["code"] == "DataLoss"


def test_p3_split_view_endpoint(cluster: Cluster, tmp_path: Path) -> None:
    """The endpoint shows `merkle-backup verify` the genuine tarball, then hands Velero other
    bytes (checksum headers dropped): the plugin checks what it hands Velero."""
    cluster.backup()
    genuine = cluster.stored("nightly", "nightly.tar.gz")
    proxy = server.FaultProxy(int(cluster.location.server.endpoint.rsplit(":", 1)[1]))
    try:
        cluster.config["s3Url"] = proxy.endpoint
        result = subprocess.run(
            [sys.executable, "-m", "merkle_backup", "verify",
             f"s3://{cluster.location.bucket}/{PREFIX}/backups/nightly", "--trust",
             str(cluster.pub), "--endpoint-url", proxy.endpoint, "--path-style"],
            capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 0, result.stdout + result.stderr
        proxy.add(server.Rule("swap", "/nightly.tar.gz", method="GET",
                              body=bytes([genuine[0] ^ 1]) + genuine[1:], times=100))
        done = cluster.run("restore", "nightly", "--out", str(tmp_path / "out"))
        assert done.returncode == 1 and failed_call(done)["code"] == "DataLoss"
        assert not (tmp_path / "out").exists()
    finally:
        proxy.close()


def test_p4_record_replayed_from_an_older_run_of_the_name(cluster: Cluster, tmp_path: Path
                                                           ) -> None:
    cluster.backup()
    old_record = cluster.stored("nightly", "nightly-results.gz.merkle-record")
    old_results = cluster.stored("nightly", "nightly-results.gz")
    assert cluster.run("delete", "nightly").returncode == 0
    put = clone_backup(FIXTURES / "demo-v153", tmp_path / "again-put", "nightly",
                       phase="Finalizing")
    final = clone_backup(FIXTURES / "demo-v153", tmp_path / "again-final", "nightly",
                         phase="Completed")
    for folder in (put, final):  # another Backup object of the same name: another UID
        manifest = json.loads((folder / "velero-backup.json").read_text())
        manifest["metadata"]["uid"] = "0f0f0f0f-0000-4000-8000-000000000004"
        (folder / "velero-backup.json").write_text(json.dumps(manifest))
    assert cluster.run("put-backup", "nightly", "--dir", str(put)).returncode == 0
    cluster.tamper("nightly", "nightly-results.gz", old_results)
    cluster.tamper("nightly", "nightly-results.gz.merkle-record", old_record)
    done = cluster.run("finalize", "nightly", "--dir", str(final))
    assert done.returncode == 1
    bad = failed_call(done)
    assert bad["key"].endswith("velero-backup.json") and "UID" in bad["message"]
    assert "nightly-merkle.seal" not in {k.rsplit("/", 1)[1] for k in cluster.keys("nightly")}


def test_p10_plugin_killed_mid_upload_then_velero_starts_again(cluster: Cluster,
                                                              tmp_path: Path) -> None:
    """The stand-in (and with it the plugin) killed during the tarball's PutObject: nothing of
    the tarball is stored; Velero fails that backup, and a new backup goes through."""
    big = tmp_path / "big"
    put = cluster.stage("demo-small", "nightly", "Finalizing")
    big.mkdir()
    for p in put.iterdir():
        (big / p.name).write_bytes(p.read_bytes())
    # A tarball large enough to kill it mid-stream: many copies of the fixture's entries.
    tarball = (put / "nightly.tar.gz").read_bytes()
    (big / "nightly.tar.gz").write_bytes(tarball * 200)  # concatenated members: refused anyway
    command = [str(cluster.standin.binary), "--plugin", PLUGIN[0],
               *(f"--plugin-arg={a}" for a in PLUGIN[1:]), "--name", "merkle-backup.io/aws",
               "--bucket", cluster.location.bucket, "--prefix", PREFIX,
               *(f"--config={k}={v}" for k, v in cluster.config.items()),
               "put-backup", "nightly", "--dir", str(big)]
    env = {**os.environ, **server.TEST_ENV, **PLUGIN_ENV}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(k.endswith("velero-backup.json.merkle-record") for k in cluster.keys("nightly")):
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    names = {k.rsplit("/", 1)[1] for k in cluster.keys("nightly")}
    assert "nightly.tar.gz" not in names and "nightly.tar.gz.merkle-record" not in names
    # Velero marks that backup Failed and deletes it (a tarball that does not exist lets the
    # deletion go on: the plugin says NoSuchKey); the next one goes through.
    gone = cluster.run("delete", "nightly")
    assert failed_call(gone)["code"] == "NotFound"
    assert cluster.keys("nightly") == []
    cluster.backup()
    assert cluster.verify("nightly").returncode == 0


def test_p9_two_backups_at_once_one_name_a_prefix_of_the_other(cluster: Cluster) -> None:
    results: dict[str, Path] = {}
    errors: list[BaseException] = []

    def one(name: str, fixture: str) -> None:
        try:
            results[name] = cluster.backup(name, fixture)[1]
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=("daily", "demo-small")),
               threading.Thread(target=one, args=("daily-2", "demo-v153"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for name in ("daily", "daily-2"):
        assert cluster.verify(name).returncode == 0
        assert cluster.stored(name, f"{name}.tar.gz") == \
            (results[name] / f"{name}.tar.gz").read_bytes()


def test_p6_unsealed_backup_is_refused_unless_allowed(cluster: Cluster, tmp_path: Path) -> None:
    folder = cluster.stage("demo-small", "legacy", "Completed")
    server.upload_folder(cluster.location.client(), cluster.location.bucket,
                         f"{PREFIX}/backups/legacy", folder)
    done = cluster.run("restore", "legacy", "--out", str(tmp_path / "out"))
    assert done.returncode == 1 and "has no seal" in failed_call(done)["message"]
    allowed = cluster.run("restore", "legacy", "--out", str(tmp_path / "out2"),
                          allowUnsealed="true")
    assert allowed.returncode == 0, allowed.stderr
    assert "passed through unverified (allowUnsealed)" in allowed.stderr


def test_init_refuses_an_unknown_key_by_name(cluster: Cluster) -> None:
    done = cluster.run("exists", f"{PREFIX}/backups/x/velero-backup.json", allowUnsaeled="true")
    assert done.returncode == 1
    init = [c for c in calls(done) if c.get("method") == "Init"][0]
    assert init["code"] == "InvalidArgument" and "allowUnsaeled" in init["message"]


def test_object_calls_of_a_restore_are_velero_s(cluster: Cluster, tmp_path: Path) -> None:
    cluster.backup()
    done = cluster.run("restore", "nightly", "--out", str(tmp_path / "out"))
    assert [m for m, _ in object_calls(done)][:1] == ["GetObject"]
