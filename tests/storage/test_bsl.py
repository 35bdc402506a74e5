"""Connection settings from a Velero BackupStorageLocation manifest (--bsl), and URL parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from merkle_backup.errors import CannotCheck, UsageError
from merkle_backup.storage.bsl import load_bsl
from merkle_backup.storage.options import ConnectionOptions, S3Url, parse_s3_url
from merkle_backup.storage.resolve import split_backup_url
from merkle_backup.storage.yaml_subset import YamlSubsetError, parse_simple_yaml
from tests.cli import run
from tests.storage.conftest import Bucket, one_line_error

PEM = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"

# The shape of `velero install --backup-location-config ...` output and hand-written manifests.
HAND_WRITTEN = f"""\
# the default location
apiVersion: velero.io/v1
kind: BackupStorageLocation
metadata:
  name: default
  namespace: velero
spec:
  provider: aws
  default: true
  objectStorage:
    bucket: velero-backups   # the bucket
    prefix: "cluster-a"
    caCert: {base64.b64encode(PEM).decode()}
  config:
    region: minio
    s3ForcePathStyle: "true"
    s3Url: http://minio.velero.svc:9000
    profile: 'backup-reader'
    insecureSkipTLSVerify: "false"
    customerKeyEncryptionFile: /credentials/customer-key
    checksumAlgorithm: ""
  credential:
    name: cloud-credentials
    key: cloud
"""

# The shape of `kubectl get bsl default -o yaml`: block scalars, lists at the key's indentation,
# managedFields with "f:" keys and empty maps, status.
KUBECTL = """\
apiVersion: velero.io/v1
kind: BackupStorageLocation
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"velero.io/v1","kind":"BackupStorageLocation","metadata":{"annotations":{},"name":"default"}}
  creationTimestamp: "2026-11-20T10:00:00Z"
  generation: 3
  labels:
    component: velero
  managedFields:
  - apiVersion: velero.io/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        .: {}
        f:config:
          .: {}
          f:region: {}
    manager: velero-server
    operation: Update
    time: "2026-11-20T10:00:00Z"
  name: default
  namespace: velero
  resourceVersion: "12345"
  uid: 0b0c0d0e-0000-4000-8000-000000000001
spec:
  config:
    region: eu-west-1
    serverSideEncryption: aws:kms
    kmsKeyId: alias/velero
  default: true
  objectStorage:
    bucket: prod-velero
  provider: velero.io/aws
status:
  lastSyncedTime: "2026-11-28T03:00:00Z"
  lastValidationTime: "2026-11-28T03:00:00Z"
  phase: Available
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_hand_written_yaml(tmp_path: Path) -> None:
    bsl = load_bsl(write(tmp_path, "bsl.yaml", HAND_WRITTEN))
    assert bsl.name == "default"
    assert bsl.location == S3Url("velero-backups", "cluster-a")
    o = bsl.options
    assert (o.endpoint_url, o.region, o.profile) == ("http://minio.velero.svc:9000", "minio", "backup-reader")
    assert o.path_style is True and o.insecure_skip_tls_verify is False
    assert o.sse_c_key_file == Path("/credentials/customer-key")
    assert o.checksum_algorithm == "" and o.ca_cert_pem == PEM


def test_kubectl_yaml(tmp_path: Path) -> None:
    bsl = load_bsl(write(tmp_path, "bsl.yaml", KUBECTL))
    assert bsl.location == S3Url("prod-velero", "")
    assert (bsl.options.region, bsl.options.server_side_encryption, bsl.options.kms_key_id) == \
        ("eu-west-1", "aws:kms", "alias/velero")
    assert bsl.options.endpoint_url is None and bsl.options.path_style is None


def test_yaml_subset_agrees_with_a_real_yaml_parser() -> None:
    yaml = pytest.importorskip("yaml")  # moto depends on PyYAML; merkle-backup does not
    for text in (HAND_WRITTEN, KUBECTL):
        assert _stringly(parse_simple_yaml(text)) == _stringly([yaml.safe_load(text)])


def _stringly(value):
    """YAML 1.1 turns `true`, `3` and timestamps into non-strings; the subset keeps strings."""
    if isinstance(value, dict):
        return {str(k): _stringly(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringly(v) for v in value]
    return None if value is None else str(value).lower()


def test_json_and_kubectl_lists(tmp_path: Path) -> None:
    obj = {"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
           "metadata": {"name": "secondary"},
           "spec": {"provider": "aws", "objectStorage": {"bucket": "b-two", "prefix": "/p/q/"},
                    "config": {"s3ForcePathStyle": "True", "s3Url": "https://s3.example"}}}
    bsl = load_bsl(write(tmp_path, "one.json", json.dumps(obj)))
    assert bsl.location == S3Url("b-two", "p/q") and bsl.options.path_style is True
    listed = {"apiVersion": "v1", "kind": "List", "items": [obj]}
    assert load_bsl(write(tmp_path, "list.json", json.dumps(listed))).name == "secondary"
    two = {"apiVersion": "v1", "kind": "List", "items": [obj, obj]}
    with pytest.raises(CannotCheck, match="2 BackupStorageLocation objects"):
        load_bsl(write(tmp_path, "two.json", json.dumps(two)))
    multi = HAND_WRITTEN + "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n"
    assert load_bsl(write(tmp_path, "multi.yaml", multi)).name == "default"


@pytest.mark.parametrize("text, match", [
    ("kind: BackupStorageLocation\nspec:\n  provider: gcp\n  objectStorage:\n    bucket: b1\n", "not S3"),
    ("kind: BackupStorageLocation\nspec:\n  objectStorage:\n    prefix: x\n", "no spec.objectStorage.bucket"),
    (("kind: BackupStorageLocation\nspec:\n  objectStorage:\n    bucket: bkt\n  config:\n"
      "    s3ForcePathStyle: maybe\n"), "not true or false"),
    ("kind: Secret\n", "no BackupStorageLocation"),
    ("kind: BackupStorageLocation\nspec: &anchor\n  x: 1\n", "only simple YAML"),
    ("kind: BackupStorageLocation\nspec: {objectStorage: {bucket: b}}\n", "only simple YAML"),
    ("{not json", "not valid JSON"),
])
def test_bad_manifests(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(CannotCheck, match=match):
        load_bsl(write(tmp_path, "bad.yaml", text))


def test_yaml_subset_details() -> None:
    text = "a: |-\n  line one\n  line two\n\nb: >\n  folded\n  text\nc:\n- 1\n- x: y\n  z: 'it''s'\nd: ~\n"
    assert parse_simple_yaml(text) == [
        {"a": "line one\nline two", "b": "folded text\n", "c": ["1", {"x": "y", "z": "it's"}], "d": None}
    ]
    for bad in ("a: b\n  c: d\n", "a: 1\na: 2\n", "a:\n\t- x\n", "a: *ref\n", "a: 'open\n"):
        with pytest.raises(YamlSubsetError):
            parse_simple_yaml(bad)


def test_cli_options_win_over_the_bsl() -> None:
    bsl = ConnectionOptions(endpoint_url="http://from-bsl", region="r1", path_style=True)
    cli = ConnectionOptions(region="r2")
    merged = cli.over(bsl)
    assert (merged.endpoint_url, merged.region, merged.path_style) == ("http://from-bsl", "r2", True)


def test_url_parsing() -> None:
    assert split_backup_url("s3://bkt/a/b/backups/nightly-1/") == (S3Url("bkt", "a/b"), "nightly-1")
    assert split_backup_url("s3://bkt/backups/n") == (S3Url("bkt", ""), "n")
    assert parse_s3_url("s3://bkt") == S3Url("bkt", "")
    assert str(parse_s3_url("s3://bkt/velero/")) == "s3://bkt/velero"
    for bad in ("s3://bkt/a/b", "s3://bkt/backups/../x", "s3:///backups/x", "http://bkt/backups/x"):
        with pytest.raises(UsageError):
            split_backup_url(bad)


# --- --bsl on the command line, against the moto server ----------------------------------------


def bsl_for(bucket: Bucket, tmp_path: Path) -> Path:
    return write(tmp_path, "bsl.yaml", f"""\
apiVersion: velero.io/v1
kind: BackupStorageLocation
metadata:
  name: default
  namespace: velero
spec:
  provider: aws
  objectStorage:
    bucket: {bucket.name}
    prefix: {bucket.prefix}
  config:
    region: us-east-1
    s3ForcePathStyle: "true"
    s3Url: {bucket.endpoint}
""")


def test_bsl_gives_endpoint_bucket_and_prefix(bucket: Bucket, keypair, tmp_path: Path) -> None:
    bsl = bsl_for(bucket, tmp_path)
    code, out, err = run("seal", "demo-small", "--key", keypair[0], "--bsl", bsl)
    assert code == 0, err
    assert f"seal s3://{bucket.name}/velero/backups/demo-small/demo-small-merkle.seal" in out
    assert run("verify", "demo-small", "--trust", keypair[1], "--bsl", bsl)[0] == 0
    assert run("verify", bucket.url("demo-small"), "--trust", keypair[1], "--bsl", bsl)[0] == 0
    code, out, _ = run("audit", "--trust", keypair[1], "--bsl", bsl)
    assert code == 0 and "demo-small  verified" in out


def test_an_option_overrides_the_bsl(bucket: Bucket, keypair, tmp_path: Path) -> None:
    bsl = bsl_for(bucket, tmp_path)
    code, _, err = run("verify", "demo-small", "--trust", keypair[1], "--bsl", bsl,
                       "--endpoint-url", "http://127.0.0.1:9")
    assert code == 3 and "cannot connect to the endpoint http://127.0.0.1:9" in one_line_error(err)


def test_unreadable_bsl_is_one_line(keypair, tmp_path: Path) -> None:
    code, _, err = run("verify", "demo-small", "--trust", keypair[1], "--bsl", tmp_path / "missing.yaml")
    assert code == 3 and "cannot read" in one_line_error(err)
