"""seal-all and audit over a whole storage location: in S3 (moto's standalone server over real
HTTP) and in a local folder laid out like a bucket, with sealed, unsealed, unfinished and
tampered backups."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli import run
from tests.conftest import FIXTURES
from tests.storage import server
from tests.storage.server import clone_backup, new_bucket, upload_folder
from tests.tamper import add_sidecar, first, read_entries, write_entries

# The session's moto server (started once, shared with tests/storage) and test environment.
moto_server = server.moto_server
_aws_test_env = server._aws_test_env


def rows(out: str) -> dict[str, str]:
    """BACKUP -> status from the table."""
    table = {}
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(" ") and ":" not in parts[0]:
            table[parts[0]] = parts[1]
    return table


def tamper_tarball(tarball: Path) -> None:
    """An attacker adds a sidecar container to a Deployment."""
    entries = read_entries(tarball)
    target = first(entries, "resources/deployments.apps/namespaces/")
    write_entries(tarball, [(n, add_sidecar(d) if n == target else d) for n, d in entries])


class Local:
    """A folder laid out like a bucket: ROOT/backups/<name>/."""

    @property
    def location(self) -> str:
        return str(self.root)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.opts: list[str] = []
        (root / "backups").mkdir(parents=True)

    def add(self, staging: Path) -> None:
        shutil.copytree(staging, self.root / "backups" / staging.name)

    def folder(self, name: str) -> Path:
        return self.root / "backups" / name

    def tamper(self, name: str) -> None:
        tamper_tarball(self.folder(name) / f"{name}.tar.gz")

    def exists(self, name: str, filename: str) -> bool:
        return (self.folder(name) / filename).exists()

    def write(self, name: str, filename: str, data: bytes) -> None:
        (self.folder(name) / filename).write_bytes(data)

    def read(self, name: str, filename: str) -> bytes:
        return (self.folder(name) / filename).read_bytes()

    def remove(self, name: str) -> None:
        shutil.rmtree(self.folder(name))


class Remote:
    """s3://BUCKET/velero on the moto server."""

    def __init__(self, server, scratch: Path) -> None:
        self.client = server.client()
        self.bucket = new_bucket(self.client)
        self.scratch = scratch
        self.opts = ["--endpoint-url", server.endpoint, "--path-style"]

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/velero"

    def key(self, name: str, filename: str = "") -> str:
        return f"velero/backups/{name}/{filename}"

    def add(self, staging: Path) -> None:
        upload_folder(self.client, self.bucket, self.key(staging.name).rstrip("/"), staging)

    def read(self, name: str, filename: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.key(name, filename))["Body"].read()

    def write(self, name: str, filename: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(name, filename), Body=data)

    def tamper(self, name: str) -> None:
        tarball = self.scratch / f"{name}.tar.gz"
        tarball.write_bytes(self.read(name, f"{name}.tar.gz"))
        tamper_tarball(tarball)
        self.write(name, f"{name}.tar.gz", tarball.read_bytes())

    def exists(self, name: str, filename: str) -> bool:
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.key(name, filename))
        return any(item["Key"] == self.key(name, filename) for item in listed.get("Contents", ()))

    def remove(self, name: str) -> None:
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.key(name))
        for item in listed.get("Contents", ()):
            self.client.delete_object(Bucket=self.bucket, Key=item["Key"])


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path):
    if request.param == "local":
        return Local(tmp_path / "bucket-copy")
    return Remote(request.getfixturevalue("moto_server"), tmp_path)


@pytest.fixture
def staging(tmp_path: Path):
    """Backups to add: clone_backup(name, phase=...) builds one under a staging folder."""
    root = tmp_path / "staging"

    def make(name: str, source: str = "demo-small", phase: str | None = None) -> Path:
        return clone_backup(FIXTURES / source, root, name, phase=phase)

    return make


def test_seal_all_then_audit(store, staging, keypair) -> None:
    store.add(staging("nightly-1"))
    store.add(staging("nightly-2", source="demo-v153"))
    store.add(staging("nightly-3"))
    store.add(staging("nightly-4", phase="InProgress"))

    # 1. seal-all seals the final backups and skips the unfinished one.
    code, out, err = run("seal-all", store.location, "--key", keypair[0], *store.opts)
    assert code == 0, err
    assert rows(out) == {"nightly-1": "sealed", "nightly-2": "sealed", "nightly-3": "sealed",
                         "nightly-4": "skipped"}
    assert "phase InProgress: not final yet" in out
    # 2. A second run has nothing to do.
    code, out, _ = run("seal-all", store.location, "--key", keypair[0], *store.opts)
    assert code == 0 and set(rows(out).values()) == {"skipped"} and "already sealed" in out

    # 3. Tampering, a new unsealed backup: audit names each.
    store.tamper("nightly-3")
    store.add(staging("nightly-5"))
    code, out, err = run("audit", store.location, "--trust", keypair[1], *store.opts, "--jobs", "3")
    assert code == 1
    assert rows(out) == {"nightly-1": "verified", "nightly-2": "verified", "nightly-3": "TAMPERED",
                         "nightly-4": "unfinished", "nightly-5": "unsealed"}
    assert "modified   resources/deployments.apps/namespaces/" in out
    assert err.strip() == "merkle-backup: not authentic: 1 backup(s) tampered"

    # 4. JSON, the same verdicts.
    code, out, _ = run("audit", store.location, "--trust", keypair[1], *store.opts, "--json")
    report = json.loads(out)
    assert code == 1 and report["exit_code"] == 1 and report["verified"] is False
    assert report["summary"] == {"verified": 2, "tampered": 1, "unsealed": 1, "unfinished": 1, "error": 0}
    tampered = next(b for b in report["backups"] if b["name"] == "nightly-3")
    assert [f["problem"] for f in tampered["failures"]] == ["modified"]

    # 5. Without the tampered backup: 0, unless every final backup must be sealed.
    store.remove("nightly-3")
    assert run("audit", store.location, "--trust", keypair[1], *store.opts)[0] == 0
    code, _, err = run("audit", store.location, "--trust", keypair[1], *store.opts, "--require-seal")
    assert code == 1 and "1 final backup(s) without a seal" in err

    # 6. A seal that cannot be read (corrupt): could not check, exit 3.
    store.write("nightly-1", "nightly-1-merkle.seal", b"\x85garbage")
    code, out, err = run("audit", store.location, "--trust", keypair[1], *store.opts)
    assert code == 3 and rows(out)["nightly-1"] == "ERROR"
    assert err.strip() == "merkle-backup: error: 1 backup(s) could not be checked"


def test_a_sealed_backup_cannot_hide_as_unfinished(store, staging, keypair) -> None:
    """The bucket is the attacker: flipping a sealed backup's phase back to InProgress does not
    make audit skip it; the seal is checked first, and velero-backup.json is a sealed object."""
    store.add(staging("nightly-1"))
    assert run("seal-all", store.location, "--key", keypair[0], *store.opts)[0] == 0
    manifest = json.loads(store.read("nightly-1", "velero-backup.json"))
    manifest["status"]["phase"] = "InProgress"
    store.write("nightly-1", "velero-backup.json", json.dumps(manifest).encode())
    code, out, _ = run("audit", store.location, "--trust", keypair[1], *store.opts)
    assert code == 1 and rows(out) == {"nightly-1": "TAMPERED"}
    assert "modified velero-backup.json" in out


def test_seal_all_reports_a_backup_it_cannot_seal_and_seals_the_rest(store, staging, keypair) -> None:
    store.add(staging("nightly-1"))
    store.add(staging("nightly-2"))
    data = store.read("nightly-2", "nightly-2.tar.gz")
    store.write("nightly-2", "nightly-2.tar.gz", b"4000;chunk-signature=" + b"0" * 64 + b"\r\n" + data)
    code, out, err = run("seal-all", store.location, "--key", keypair[0], *store.opts)
    assert code == 3
    assert rows(out) == {"nightly-1": "sealed", "nightly-2": "ERROR"}
    assert "aws-chunked" in out
    assert err.strip() == "merkle-backup: error: 1 backup(s) could not be sealed"
    assert store.exists("nightly-1", "nightly-1-merkle.seal")
    assert not store.exists("nightly-2", "nightly-2-merkle.seal")  # nothing half-written


def test_tampered_with_a_foreign_seal(store, staging, keypair, other_keypair) -> None:
    """A seal signed by a key the auditor does not trust is "tampered", not "could not check"."""
    store.add(staging("nightly-1"))
    assert run("seal-all", store.location, "--key", other_keypair[0], *store.opts)[0] == 0
    code, out, _ = run("audit", store.location, "--trust", keypair[1], *store.opts)
    assert code == 1 and rows(out) == {"nightly-1": "TAMPERED"}
    assert "not signed by any trusted key" in out


def test_empty_location(store, keypair) -> None:
    if isinstance(store, Remote):
        store.write("placeholder", "x", b"")  # the bucket exists; its prefix holds no backup...
        store.remove("placeholder")
    code, out, err = run("audit", store.location, "--trust", keypair[1], *store.opts)
    assert code == 3 and "no backups found" in err
    code, out, _ = run("seal-all", store.location, "--key", keypair[0], *store.opts)
    assert code == 0 and "note: no backups under" in out


def test_local_location_must_hold_backups(tmp_path: Path, keypair) -> None:
    (tmp_path / "backups").mkdir()
    code, _, err = run("audit", tmp_path / "backups", "--trust", keypair[1])
    assert code == 3 and "not backups/ itself" in err
    code, _, err = run("audit", tmp_path / "nowhere", "--trust", keypair[1])
    assert code == 3 and "no backups/ folder" in err
    code, _, err = run("audit", "--trust", keypair[1])
    assert code == 2 and "give a LOCATION" in err


def test_audit_of_a_missing_bucket(moto_server, keypair) -> None:
    code, _, err = run("audit", "s3://no-such-bucket-here/velero", "--trust", keypair[1],
                       "--endpoint-url", moto_server.endpoint)
    assert code == 3
    assert len(err.strip().splitlines()) == 1 and "no such bucket" in err


def test_report_json_for_seal_all(store, staging, keypair) -> None:
    store.add(staging("nightly-1"))
    code, out, _ = run("seal-all", store.location, "--key", keypair[0], *store.opts, "--json")
    report = json.loads(out)
    assert code == 0 and report["summary"] == {"sealed": 1, "skipped": 0, "tampered": 0, "error": 0}
    assert report["backups"][0]["status"] == "sealed" and len(report["backups"][0]["root"]) == 64


# --- docs/velero.md: the CronJob manifest is valid and its command line works -------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "velero.md"


def _yaml_blocks() -> list[dict]:
    yaml = pytest.importorskip("yaml")  # PyYAML comes with moto[server]; merkle-backup needs none
    text = DOCS.read_text()
    blocks = text.split("```yaml\n")[1:]
    return [doc for block in blocks for doc in yaml.safe_load_all(block.split("```", 1)[0]) if doc]


def _cronjob() -> tuple[dict, dict]:
    docs = _yaml_blocks()
    cronjob = next(d for d in docs if d.get("kind") == "CronJob")
    account = next(d for d in docs if d.get("kind") == "ServiceAccount")
    return cronjob, account


def test_cronjob_manifest_is_consistent() -> None:
    cronjob, account = _cronjob()
    assert cronjob["apiVersion"] == "batch/v1" and account["apiVersion"] == "v1"
    assert cronjob["metadata"]["namespace"] == account["metadata"]["namespace"]
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"  # two sealers would race
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts.values()) <= set(volumes)
    args = container["args"]
    key = args[args.index("--key") + 1]
    credentials = next(e["value"] for e in container["env"] if e["name"] == "AWS_SHARED_CREDENTIALS_FILE")
    for path in (key, credentials):  # each file lives in a mounted Secret
        mount = next(m for m in mounts if path.startswith(m + "/"))
        assert "secret" in volumes[mounts[mount]]
    assert all(isinstance(a, str) for a in args)


def test_cronjob_command_line_seals_a_bucket(moto_server, staging, keypair, tmp_path: Path,
                                             monkeypatch) -> None:
    """The container's arguments, with its mounted files mapped to local ones and the endpoint
    of the test server, seal a bucket; credentials come from the mounted credentials file."""
    cronjob, _ = _cronjob()
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    args = list(container["args"])
    location = args[1]
    assert args[0] == "seal-all" and location.startswith("s3://")
    bucket, _, prefix = location[len("s3://"):].partition("/")
    client = moto_server.client()
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    upload_folder(client, bucket, f"{prefix}/backups/nightly-1", staging("nightly-1"))

    mounted = {"/keys/signer.key": keypair[0], "/credentials/cloud": tmp_path / "cloud"}
    (tmp_path / "cloud").write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    for env in container["env"]:
        monkeypatch.setenv(env["name"], str(mounted.get(env["value"], env["value"])))
    args = [str(mounted.get(a, a)) for a in args]
    code, out, err = run(*args, "--endpoint-url", moto_server.endpoint)
    assert code == 0, err
    assert rows(out)["nightly-1"] == "sealed"
    seal_key = f"{prefix}/backups/nightly-1/nightly-1-merkle.seal"
    assert client.head_object(Bucket=bucket, Key=seal_key)["ContentLength"] > 0
    client.delete_object(Bucket=bucket, Key=seal_key)


def test_iam_policy_in_docs_is_json() -> None:
    text = DOCS.read_text()
    policy = json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])
    actions = {s["Action"] for s in policy["Statement"]}
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:PutObject"}
    put = next(s for s in policy["Statement"] if s["Action"] == "s3:PutObject")
    assert put["Resource"].endswith("/backups/*/*-merkle.seal")


def _completed(folder: Path, when: str) -> None:
    manifest = folder / "velero-backup.json"
    obj = json.loads(manifest.read_text())
    obj["status"]["completionTimestamp"] = when
    manifest.write_text(json.dumps(obj, indent=2) + "\n")


def test_t70_seal_all_without_the_log_never_launders_an_old_backup(store, staging, keypair) -> None:
    """T70: a backup completed long ago, tampered, its seal deleted, is not sealed again by the
    next seal-all (no --log): skipped with the reason; audit names it as unsealed and too old to
    seal (--require-seal: exit 1); --backfill seals it on purpose."""
    store.add(staging("fresh"))
    old = staging("old")
    store.add(old)
    code, out, err = run("seal-all", store.location, "--key", keypair[0], *store.opts)
    assert code == 0 and rows(out) == {"fresh": "sealed", "old": "sealed"}, out + err
    aged = staging("aged")  # completed days ago, never sealed, unchanged
    _completed(aged, "2026-01-02T03:04:05Z")
    store.add(aged)
    # Days later: the attacker changes the old backup and deletes its seal.
    _completed(old, "2026-01-02T03:04:05Z")
    store.write("old", "velero-backup.json", (old / "velero-backup.json").read_bytes())
    store.tamper("old")
    if isinstance(store, Local):
        (store.folder("old") / "old-merkle.seal").unlink()
    else:
        store.client.delete_object(Bucket=store.bucket, Key=store.key("old", "old-merkle.seal"))
    code, out, err = run("seal-all", store.location, "--key", keypair[0], *store.opts)
    assert code == 0 and rows(out) == {"aged": "skipped", "fresh": "skipped", "old": "skipped"}
    assert "completed 2026-01-02T03:04:05Z, older than --max-age: not sealed" in out
    assert "note: 2 final backup(s) older than --max-age left unsealed" in out
    assert not store.exists("old", "old-merkle.seal")
    code, out, err = run("audit", store.location, "--trust", keypair[1], "--require-seal",
                         *store.opts)
    assert code == 1 and rows(out)["old"] == "unsealed", out + err
    assert "older than --max-age: not sealed" in out
    row = {r["name"]: r for r in json.loads(
        run("audit", store.location, "--trust", keypair[1], "--json", *store.opts)[1])["backups"]}
    assert row["old"]["status"] == "unsealed" and "older than --max-age" in row["old"]["detail"]
    # --backfill seals old backups on purpose, once a person checked them (this tampered one
    # is still refused, by the defence in depth: its sidecar made the two copies differ).
    code, out, err = run("seal-all", store.location, "--key", keypair[0], "--backfill", *store.opts)
    assert rows(out)["aged"] == "sealed" and "backfilled" in out, out + err
    assert rows(out)["old"] == "ERROR" and code == 3


def test_plugin_config_in_the_docs_is_one_the_plugin_accepts() -> None:
    """docs/velero.md §0.3: the BackupStorageLocation and the Helm chart's values name the
    plugin's provider and only config keys its Init accepts (an unknown key is refused there)."""
    from merkle_backup.plugin.config import parse_config
    from merkle_backup.plugin.protocol import PLUGIN_NAME

    docs = _yaml_blocks()
    bsl = next(d for d in docs if d.get("kind") == "BackupStorageLocation"
               and d["spec"]["provider"] == PLUGIN_NAME)
    storage = bsl["spec"]["objectStorage"]
    parsed = parse_config({"bucket": storage["bucket"], "prefix": storage["prefix"],
                           **bsl["spec"]["config"]})
    assert parsed.signing_key.startswith("/credentials/merkle-backup/")
    values = next(d for d in docs if "configuration" in d)
    (location,) = values["configuration"]["backupStorageLocation"]
    assert location["provider"] == PLUGIN_NAME
    parse_config({"bucket": location["bucket"], "prefix": location["prefix"],
                  **location["config"]})
    mounts = {m["mountPath"] for m in values["extraVolumeMounts"]}
    assert any(location["config"]["signingKey"].startswith(m + "/") for m in mounts)
