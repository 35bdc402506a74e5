"""The plugin's ObjectStore backend (merkle_backup/plugin/store.py) called directly, with
Velero's call sequences written out in Python, against moto's S3 server over real HTTP.

The same sequences go through the gRPC protocol and the Go Velero stand-in in
tests/plugin/test_velero_standin.py; these tests pin the backend's rules one at a time
(docs/threat-model.md P1-P13) and run in a second.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from merkle_backup.errors import CannotCheck, NotAuthentic, UsageError
from merkle_backup.plugin.store import VeleroObjectStore
from merkle_backup.signing import generate_keypair
from tests.conftest import FIXTURES
from tests.storage import server
from tests.storage.server import clone_backup, new_bucket

moto_server = server.moto_server
_aws_test_env = server._aws_test_env

PREFIX = "velero"
CHUNK = 16 * 1024  # Velero's client sends PutObject bodies in 16 KiB chunks


def chunks(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), CHUNK):
        yield data[i:i + CHUNK]


class Velero:
    """Velero's backup store calls (pkg/persistence/object_store.go), each through a fresh
    backend where Velero would start a new plugin process."""

    def __init__(self, endpoint: str, bucket: str, key: Path, **config: str) -> None:
        self.config = {"bucket": bucket, "prefix": PREFIX, "s3Url": endpoint,
                       "region": "us-east-1", "s3ForcePathStyle": "true",
                       "signingKey": str(key), **config}
        self.bucket = bucket
        self.logs: list[tuple[str, str]] = []

    def process(self) -> VeleroObjectStore:
        store = VeleroObjectStore(log=lambda level, message: self.logs.append((level, message)))
        store.init(dict(self.config))
        return store

    def key(self, name: str, filename: str) -> str:
        return f"{PREFIX}/backups/{name}/{filename}"

    def put(self, store: VeleroObjectStore, name: str, filename: str, data: bytes) -> None:
        store.put_object(self.bucket, self.key(name, filename), chunks(data))

    def get(self, store: VeleroObjectStore, name: str, filename: str) -> bytes:
        return b"".join(store.get_object(self.bucket, self.key(name, filename)))

    def put_backup(self, folder: Path, *, phase: str = "Finalizing", seed: int = 0) -> None:
        """PutBackup (object_store.go:273-316): logs, velero-backup.json, tarball, then the
        side files in Go's random map order."""
        name = folder.name
        store = self.process()
        assert not store.object_exists(self.bucket, self.key(name, "velero-backup.json"))
        self.put(store, name, f"{name}-logs.gz", (folder / f"{name}-logs.gz").read_bytes())
        self.put(store, name, "velero-backup.json", with_phase(folder, phase))
        self.put(store, name, f"{name}.tar.gz", (folder / f"{name}.tar.gz").read_bytes())
        sides = [p for p in folder.iterdir() if p.name.startswith(f"{name}-")
                 and not p.name.endswith("-logs.gz")]
        random.Random(seed).shuffle(sides)
        for path in sides:
            self.put(store, name, path.name, path.read_bytes())

    def finalize(self, folder: Path, *, new_tarball: bytes | None = None,
                 phase: str = "Completed") -> None:
        """The finalizer (backup_finalizer_controller.go:144-235)."""
        name = folder.name
        store = self.process()
        self.get(store, name, f"{name}-itemoperations.json.gz")
        if new_tarball is not None:
            self.get(store, name, f"{name}.tar.gz")
            volumeinfo = self.get(store, name, f"{name}-volumeinfo.json.gz")
            self.put(store, name, f"{name}-volumeinfo.json.gz", volumeinfo)
        self.put(store, name, "velero-backup.json", with_phase(folder, phase))
        if new_tarball is not None:
            self.put(store, name, f"{name}.tar.gz", new_tarball)

    def restore(self, name: str) -> dict[str, bytes]:
        """Restore's reads (restore_controller.go:597-631)."""
        store = self.process()
        got = {f"{name}.tar.gz": self.get(store, name, f"{name}.tar.gz")}
        for side in ("volumesnapshots.json.gz", "volumeinfo.json.gz"):
            key = f"{name}-{side}"
            if store.object_exists(self.bucket, self.key(name, key)):
                got[key] = self.get(store, name, key)
        return got


def with_phase(folder: Path, phase: str) -> bytes:
    obj = json.loads((folder / "velero-backup.json").read_bytes())
    obj["status"]["phase"] = phase
    return (json.dumps(obj, indent=2) + "\n").encode()


@pytest.fixture
def velero(moto_server, tmp_path: Path) -> Velero:
    (tmp_path / "keys").mkdir()
    key, _ = generate_keypair(tmp_path / "keys" / "plugin.key")
    bucket = new_bucket(moto_server.client())
    return Velero(moto_server.endpoint, bucket, key)


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    return clone_backup(FIXTURES / "demo-small", tmp_path / "local", "nightly")


def stored(moto_server, velero: Velero, name: str, filename: str) -> bytes:
    response = moto_server.client().get_object(Bucket=velero.bucket, Key=velero.key(name, filename))
    return response["Body"].read()


def tamper(moto_server, velero: Velero, name: str, filename: str, data: bytes) -> None:
    moto_server.client().put_object(Bucket=velero.bucket, Key=velero.key(name, filename), Body=data)


def test_backup_then_restore_is_sealed_and_verifies(velero: Velero, backup: Path, moto_server,
                                                     tmp_path: Path) -> None:
    velero.put_backup(backup)
    velero.finalize(backup)
    got = velero.restore("nightly")
    assert got["nightly.tar.gz"] == (backup / "nightly.tar.gz").read_bytes()
    # The CLI verifies the plugin's seal as it verifies its own (one format).
    result = subprocess.run(
        ["merkle-backup", "verify", f"s3://{velero.bucket}/{PREFIX}/backups/nightly",
         "--trust", str(tmp_path / "keys" / "plugin.key.pub"),
         "--endpoint-url", moto_server.endpoint, "--path-style"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED" in result.stdout


def test_tamper_between_put_and_finalizer_is_never_sealed(velero: Velero, backup: Path,
                                                          moto_server) -> None:
    velero.put_backup(backup)
    original = stored(moto_server, velero, "nightly", "nightly.tar.gz")
    tamper(moto_server, velero, "nightly", "nightly.tar.gz", original[:-1] + bytes([original[-1] ^ 1]))
    # Same size: the seal is still made from what Velero wrote, and the restore fails.
    velero.finalize(backup)
    with pytest.raises(NotAuthentic, match="not the sealed ones"):
        velero.restore("nightly")


def test_tamper_after_seal_fails_the_restore_before_the_last_byte(velero: Velero, backup: Path,
                                                                  moto_server) -> None:
    velero.put_backup(backup)
    velero.finalize(backup)
    original = stored(moto_server, velero, "nightly", "nightly.tar.gz")
    tamper(moto_server, velero, "nightly", "nightly.tar.gz", bytes([original[0] ^ 1]) + original[1:])
    store = velero.process()
    received = bytearray()
    with pytest.raises(NotAuthentic):
        for chunk in store.get_object(velero.bucket, velero.key("nightly", "nightly.tar.gz")):
            received += chunk
    assert len(received) < len(original)


def test_side_file_tamper_is_refused(velero: Velero, backup: Path, moto_server) -> None:
    velero.put_backup(backup)
    velero.finalize(backup)
    tamper(moto_server, velero, "nightly", "nightly-volumesnapshots.json.gz", b"[]")
    with pytest.raises(NotAuthentic):
        velero.restore("nightly")


def test_async_finalizer_seals_the_rebuilt_tarball(velero: Velero, backup: Path, tmp_path: Path
                                                   ) -> None:
    other = clone_backup(FIXTURES / "demo-v153", tmp_path / "other", "nightly")
    rebuilt = (other / "nightly.tar.gz").read_bytes()
    velero.put_backup(backup, phase="Finalizing")
    velero.finalize(backup, new_tarball=rebuilt)
    assert velero.restore("nightly")["nightly.tar.gz"] == rebuilt


def test_record_replayed_from_an_older_run_is_refused(velero: Velero, backup: Path,
                                                      moto_server, tmp_path: Path) -> None:
    velero.put_backup(backup)
    velero.finalize(backup)
    record = stored(moto_server, velero, "nightly", "nightly-results.gz.merkle-record")
    # Velero deletes the backup; a new one of the same name (another UID) is made.
    client = moto_server.client()
    for key in server.keys(client, velero.bucket, f"{PREFIX}/backups/nightly/"):
        client.delete_object(Bucket=velero.bucket, Key=key)
    again = clone_backup(FIXTURES / "demo-small", tmp_path / "again", "nightly")
    manifest = json.loads((again / "velero-backup.json").read_text())
    manifest["metadata"]["uid"] = "00000000-0000-0000-0000-000000000002"
    (again / "velero-backup.json").write_text(json.dumps(manifest))
    velero.put_backup(again)
    old = (backup / "nightly-results.gz").read_bytes()
    tamper(moto_server, velero, "nightly", "nightly-results.gz", old)
    tamper(moto_server, velero, "nightly", "nightly-results.gz.merkle-record", record)
    with pytest.raises(NotAuthentic, match="UID"):
        velero.finalize(again)


def test_record_moved_from_another_object_is_refused(velero: Velero, backup: Path,
                                                     moto_server) -> None:
    velero.put_backup(backup)
    record = stored(moto_server, velero, "nightly", "nightly-results.gz.merkle-record")
    tamper(moto_server, velero, "nightly", "nightly-volumesnapshots.json.gz.merkle-record", record)
    with pytest.raises(NotAuthentic, match="is about"):
        velero.finalize(backup)


def test_object_added_behind_velero_is_never_sealed(velero: Velero, backup: Path,
                                                    moto_server) -> None:
    velero.put_backup(backup)
    tamper(moto_server, velero, "nightly", "nightly-csi-volumesnapshots.json.gz", b"[]")
    with pytest.raises(NotAuthentic, match="no record"):
        velero.finalize(backup)


def test_unsealed_backup_is_refused_unless_allowed(velero: Velero, moto_server, backup: Path
                                                   ) -> None:
    server.upload_folder(moto_server.client(), velero.bucket, f"{PREFIX}/backups/nightly", backup)
    with pytest.raises(NotAuthentic, match="no seal"):
        velero.restore("nightly")
    velero.config["allowUnsealed"] = "true"
    assert velero.restore("nightly")["nightly.tar.gz"] == (backup / "nightly.tar.gz").read_bytes()
    assert any("allowUnsealed" in message for _, message in velero.logs)


def test_completed_backup_whose_seal_was_deleted_is_refused(velero: Velero, backup: Path,
                                                            moto_server) -> None:
    velero.put_backup(backup)
    velero.finalize(backup)
    moto_server.client().delete_object(Bucket=velero.bucket,
                                       Key=velero.key("nightly", "nightly-merkle.seal"))
    with pytest.raises(NotAuthentic, match="has no seal"):
        velero.restore("nightly")


@pytest.mark.parametrize("side", ["volumesnapshots.json.gz", "volumeinfo.json.gz"])
def test_sealed_side_file_deleted_fails_the_restore_not_skipped(velero: Velero, backup: Path,
                                                                moto_server, side: str) -> None:
    """Velero reads side files with tryGet (ObjectExists, then GetObject) and takes a missing
    one for none: deleting the volumesnapshots file would restore no volume. A file the seal
    lists is an error when it is missing; one it does not list (the CSI snapshots file this
    backup never had) is simply absent (P14)."""
    velero.put_backup(backup)
    velero.finalize(backup)
    store = velero.process()
    assert not store.object_exists(velero.bucket,
                                   velero.key("nightly", "nightly-csi-volumesnapshots.json.gz"))
    moto_server.client().delete_object(Bucket=velero.bucket,
                                       Key=velero.key("nightly", f"nightly-{side}"))
    with pytest.raises(NotAuthentic, match=f"has nightly-{side} .* deleted behind Velero"):
        velero.restore("nightly")


def test_recorded_side_file_deleted_before_the_seal_is_an_error(velero: Velero, backup: Path,
                                                                moto_server) -> None:
    """Before the seal (the finalizer reads itemoperations with tryGet), Velero's record of
    writing the object vouches for it; an object of a backup with no records is simply absent
    (ObjectExists before PutBackup)."""
    velero.put_backup(backup)
    moto_server.client().delete_object(
        Bucket=velero.bucket, Key=velero.key("nightly", "nightly-itemoperations.json.gz"))
    store = velero.process()
    with pytest.raises(NotAuthentic, match="deleted behind Velero"):
        store.object_exists(velero.bucket, velero.key("nightly", "nightly-itemoperations.json.gz"))
    assert not store.object_exists(velero.bucket, velero.key("nightly", "nightly-other.json.gz"))
    assert not store.object_exists(velero.bucket, velero.key("weekly", "velero-backup.json"))
    assert store.object_exists(velero.bucket, velero.key("nightly", "nightly.tar.gz"))


def test_unknown_config_key_is_refused_at_init(velero: Velero) -> None:
    velero.config["allowUnsaeled"] = "true"
    with pytest.raises(UsageError, match="allowUnsaeled"):
        velero.process()


def test_reserved_names_cannot_be_put(velero: Velero) -> None:
    store = velero.process()
    with pytest.raises(CannotCheck, match="reserves"):
        store.put_object(velero.bucket, velero.key("nightly", "nightly-merkle.seal"), iter([b"x"]))


def test_split_view_endpoint_cannot_feed_velero_other_bytes(velero: Velero, backup: Path,
                                                           moto_server, tmp_path: Path) -> None:
    """An endpoint that serves the genuine tarball to the first reader (an audit beside Velero)
    and a tampered one to the next (Velero's restore): the plugin checks the very bytes it
    hands Velero, so the second read fails (T72)."""
    velero.put_backup(backup)
    velero.finalize(backup)
    genuine = stored(moto_server, velero, "nightly", "nightly.tar.gz")
    evil = bytes([genuine[0] ^ 1]) + genuine[1:]
    proxy = server.FaultProxy(int(moto_server.endpoint.rsplit(":", 1)[1]))
    try:
        velero.config["s3Url"] = proxy.endpoint
        assert velero.restore("nightly")["nightly.tar.gz"] == genuine   # the first reader
        rule = proxy.add(server.Rule("swap", "/nightly.tar.gz", method="GET", body=evil))
        with pytest.raises(NotAuthentic, match="not the sealed ones"):
            velero.restore("nightly")                                    # Velero's restore
        assert rule.hits == 1
    finally:
        proxy.close()


def test_interleaved_backups_and_a_name_that_prefixes_another(velero: Velero, tmp_path: Path
                                                              ) -> None:
    """Two backups written at once, one named as the other's prefix: each is sealed from its
    own objects only (T76)."""
    a = clone_backup(FIXTURES / "demo-small", tmp_path / "a", "daily")
    b = clone_backup(FIXTURES / "demo-v153", tmp_path / "b", "daily-2")
    pa, pb = velero.process(), velero.process()
    for name, folder, store in (("daily", a, pa), ("daily-2", b, pb)):
        velero.put(store, name, f"{name}-logs.gz", (folder / f"{name}-logs.gz").read_bytes())
    for name, folder, store in (("daily-2", b, pb), ("daily", a, pa)):
        velero.put(store, name, "velero-backup.json", with_phase(folder, "Finalizing"))
        velero.put(store, name, f"{name}.tar.gz", (folder / f"{name}.tar.gz").read_bytes())
    for name, folder, store in (("daily", a, pa), ("daily-2", b, pb)):
        for path in sorted(folder.iterdir()):
            if path.name.startswith(f"{name}-") and not path.name.endswith("-logs.gz") \
                    and path.name[len(name) + 1:].count("-") <= 1:
                velero.put(store, name, path.name, path.read_bytes())
    velero.finalize(b)
    velero.finalize(a)
    assert velero.restore("daily")["daily.tar.gz"] == (a / "daily.tar.gz").read_bytes()
    assert velero.restore("daily-2")["daily-2.tar.gz"] == (b / "daily-2.tar.gz").read_bytes()


def test_upload_cut_off_midway_leaves_nothing(velero: Velero, backup: Path, moto_server) -> None:
    """Velero's stream breaks off (the plugin or Velero killed mid-upload): nothing is stored,
    no record is written (T77)."""
    store = velero.process()
    velero.put(store, "nightly", "velero-backup.json", with_phase(backup, "Finalizing"))
    data = (backup / "nightly.tar.gz").read_bytes()

    def cut() -> Iterator[bytes]:
        yield from chunks(data[: len(data) // 2])
        raise ConnectionResetError("stream reset")

    with pytest.raises(ConnectionResetError):
        store.put_object(velero.bucket, velero.key("nightly", "nightly.tar.gz"), cut())
    names = server.keys(moto_server.client(), velero.bucket, f"{PREFIX}/backups/nightly/")
    assert names == [f"{PREFIX}/backups/nightly/velero-backup.json",
                     f"{PREFIX}/backups/nightly/velero-backup.json.merkle-record"]


def test_tarball_the_strict_reader_refuses_is_never_stored(velero: Velero, backup: Path,
                                                           moto_server) -> None:
    import gzip

    store = velero.process()
    velero.put(store, "nightly", "velero-backup.json", with_phase(backup, "Finalizing"))
    not_a_tar = gzip.compress(b"x" * 5000)
    with pytest.raises(CannotCheck, match="refusing Velero's tarball"):
        velero.put(store, "nightly", "nightly.tar.gz", not_a_tar)
    assert not store.object_exists(velero.bucket, velero.key("nightly", "nightly.tar.gz"))


def test_transparency_log_gets_the_seal_and_velero_deletion_tombstone(
        velero: Velero, backup: Path, moto_server, tmp_path: Path) -> None:
    log = f"s3://{velero.bucket}/merkle-log"
    velero.config["log"] = log
    velero.config["logName"] = "cluster-a"  # one key may sign several clusters' logs
    velero.put_backup(backup)
    velero.finalize(backup)
    store = velero.process()
    for key in store.list_objects(velero.bucket, f"{PREFIX}/backups/nightly/"):
        store.delete_object(velero.bucket, key)
    pub = str(tmp_path / "keys" / "plugin.key.pub")
    from merkle_backup.signing import load_public_key
    from merkle_backup.storage.options import ConnectionOptions
    from merkle_backup.tlog.log import Log, LogState
    from merkle_backup.tlog.store import open_log_store

    reader = Log(open_log_store(log, ConnectionOptions(endpoint_url=moto_server.endpoint,
                                                       path_style=True)),
                 [load_public_key(Path(pub))], LogState(None), name="cluster-a")
    kinds = [(e.kind, e.backup) for e in reader.entries(reader.head())]
    assert ("seal", "nightly") in kinds and kinds[-1] == ("tombstone", "nightly")
    assert sum(1 for k in kinds if k[0] == "tombstone") == 1


def test_log_inside_the_storage_location_is_refused(velero: Velero) -> None:
    velero.config["log"] = f"s3://{velero.bucket}/{PREFIX}/merkle-log"
    with pytest.raises(UsageError, match="inside the storage location"):
        velero.process()


def test_whole_backup_replayed_with_its_own_seal_is_caught_by_the_log(
        velero: Velero, backup: Path, moto_server, tmp_path: Path) -> None:
    """An older backup of the same name put back whole, seal and records included: every
    signature is valid; the log says a newer seal of the name exists (T42 through the plugin)."""
    velero.config["log"] = f"s3://{velero.bucket}/merkle-log"
    velero.put_backup(backup)
    velero.finalize(backup)
    client = moto_server.client()
    folder = f"{PREFIX}/backups/nightly/"
    old = {k: client.get_object(Bucket=velero.bucket, Key=k)["Body"].read()
           for k in server.keys(client, velero.bucket, folder)}
    store = velero.process()
    for key in store.list_objects(velero.bucket, folder):
        store.delete_object(velero.bucket, key)
    again = clone_backup(FIXTURES / "demo-v153", tmp_path / "again", "nightly")
    manifest = json.loads((again / "velero-backup.json").read_text())
    manifest["metadata"]["uid"] = "00000000-0000-0000-0000-000000000003"
    (again / "velero-backup.json").write_text(json.dumps(manifest))
    velero.put_backup(again)
    velero.finalize(again)
    for key in server.keys(client, velero.bucket, folder):
        client.delete_object(Bucket=velero.bucket, Key=key)
    for key, data in old.items():
        client.put_object(Bucket=velero.bucket, Key=key, Body=data)
    with pytest.raises(NotAuthentic, match="replayed|replaced"):
        velero.restore("nightly")


def test_record_deleted_or_forged_fails_the_seal(velero: Velero, backup: Path, moto_server,
                                                 tmp_path: Path) -> None:
    """A record deleted, or signed by another key, or edited: the backup is not sealed, and
    the finalizer's PutObject fails with the object named (P4)."""
    velero.put_backup(backup)
    client = moto_server.client()
    key = velero.key("nightly", "nightly-resource-list.json.gz.merkle-record")
    genuine = client.get_object(Bucket=velero.bucket, Key=key)["Body"].read()
    client.delete_object(Bucket=velero.bucket, Key=key)
    with pytest.raises(NotAuthentic, match="nightly-resource-list.json.gz: no record"):
        velero.finalize(backup)
    edited = genuine.replace(b"\nsize ", b"\nsize 1", 1)
    client.put_object(Bucket=velero.bucket, Key=key, Body=edited)
    with pytest.raises(NotAuthentic, match="not signed by a trusted key"):
        velero.finalize(backup)
    (tmp_path / "other").mkdir()
    other, _ = generate_keypair(tmp_path / "other" / "other.key")
    forger = Velero(velero.config["s3Url"], velero.bucket, other)
    forger.put(forger.process(), "nightly", "velero-backup.json", with_phase(backup, "Finalizing"))
    with pytest.raises(NotAuthentic, match="not signed by a trusted key"):
        velero.finalize(backup)
    assert not velero.process().object_exists(velero.bucket,
                                              velero.key("nightly", "nightly-merkle.seal"))


def test_cronjob_seals_of_both_versions_are_read(velero: Velero, moto_server) -> None:
    """Moving from the CronJob (docs/velero.md §0.5): a backup sealed by `seal` (version 1,
    the committed fixture, and version 2) is read through its seal; a forged leaf section of
    a version-2 seal is refused (T60 through the plugin)."""
    seals = FIXTURES.parents[1] / "seals"
    client = moto_server.client()
    folder = FIXTURES / "demo-small"
    server.upload_folder(client, velero.bucket, f"{PREFIX}/backups/demo-small", folder)
    client.put_object(Bucket=velero.bucket, Key=velero.key("demo-small", "demo-small-merkle.seal"),
                      Body=(seals / "demo-small-v1.seal").read_bytes())
    velero.config["trustedKeys"] = f"{velero.config['signingKey']}.pub,{seals / 'rfc8032-test1.pub'}"
    got = velero.restore("demo-small")
    assert got["demo-small.tar.gz"] == (folder / "demo-small.tar.gz").read_bytes()
    assert got["demo-small-volumesnapshots.json.gz"] == \
        (folder / "demo-small-volumesnapshots.json.gz").read_bytes()
    # Version 2, sealed by the CLI with the plugin's key.
    result = subprocess.run(
        ["merkle-backup", "seal", f"s3://{velero.bucket}/{PREFIX}/backups/demo-small", "--key",
         velero.config["signingKey"], "--replace", "--max-age", "1e6",
         "--endpoint-url", moto_server.endpoint, "--path-style"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert velero.restore("demo-small")["demo-small.tar.gz"] == \
        (folder / "demo-small.tar.gz").read_bytes()
    seal_key = velero.key("demo-small", "demo-small-merkle.seal")
    seal = client.get_object(Bucket=velero.bucket, Key=seal_key)["Body"].read()
    client.put_object(Bucket=velero.bucket, Key=seal_key, Body=seal[:-1] + bytes([seal[-1] ^ 1]))
    with pytest.raises(NotAuthentic, match="leaf section"):
        velero.restore("demo-small")


def test_signed_url_uses_public_url_as_the_aws_plugin_does(velero: Velero, backup: Path,
                                                           moto_server) -> None:
    """CreateSignedURL (velero backup download): signed for publicUrl when set, else s3Url;
    the URL fetches the object (outside the plugin's checks: threat model, 'What stays
    outside')."""
    import urllib.request

    velero.put_backup(backup)
    store = velero.process()
    url = store.create_signed_url(velero.bucket, velero.key("nightly", "nightly.tar.gz"), 600)
    assert url.startswith(moto_server.endpoint + "/")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == (backup / "nightly.tar.gz").read_bytes()
    velero.config["publicUrl"] = "https://velero-downloads.example.com"
    url = velero.process().create_signed_url(velero.bucket,
                                             velero.key("nightly", "nightly.tar.gz"), 600)
    assert url.startswith("https://velero-downloads.example.com/")


def test_stream_that_ends_early_is_never_stored(velero: Velero, backup: Path) -> None:
    """Velero's client ends the PutObject stream on a read error of its own as if the object
    were complete (object_store_client.go:90-95): a truncated tarball or gzip side file is
    refused, not stored (P10)."""
    store = velero.process()
    velero.put(store, "nightly", "velero-backup.json", with_phase(backup, "Finalizing"))
    tarball = (backup / "nightly.tar.gz").read_bytes()
    with pytest.raises(CannotCheck, match="refusing Velero's tarball"):
        velero.put(store, "nightly", "nightly.tar.gz", tarball[: len(tarball) - 9])
    side = (backup / "nightly-resource-list.json.gz").read_bytes()
    with pytest.raises(CannotCheck, match="truncated"):
        velero.put(store, "nightly", "nightly-resource-list.json.gz", side[:-4])
    for name in ("nightly.tar.gz", "nightly-resource-list.json.gz"):
        assert not store.object_exists(velero.bucket, velero.key("nightly", name))
    velero.put(store, "nightly", "nightly-resource-list.json.gz", side)  # whole: stored
    assert store.object_exists(velero.bucket, velero.key("nightly", "nightly-resource-list.json.gz"))
