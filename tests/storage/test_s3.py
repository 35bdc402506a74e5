"""Seal and verify straight from S3 (moto's standalone server over real HTTP)."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.cli import run
from tests.conftest import FIXTURES
from tests.storage.conftest import Bucket, one_line_error
from tests.storage.server import clone_backup, keys
from tests.tamper import add_sidecar, first, targz

NAME = "demo-small"
SEAL = f"{NAME}-merkle.seal"


def seal(bucket: Bucket, key: Path, *extra: object) -> tuple[int, str, str]:
    return run("seal", bucket.url(NAME), "--key", key, *bucket.opts(), *extra)


def verify(bucket: Bucket, pub: Path, *extra: object) -> tuple[int, str, str]:
    return run("verify", bucket.url(NAME), "--trust", pub, *bucket.opts(), *extra)


def entries_of(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


# --- seal and verify --------------------------------------------------------------------------


def test_seal_lands_in_the_backup_folder_and_verifies(bucket: Bucket, keypair) -> None:
    before = keys(bucket.client, bucket.name)
    code, out, err = seal(bucket, keypair[0])
    assert code == 0, err
    assert f"seal s3://{bucket.name}/velero/backups/{NAME}/{SEAL}" in out
    # Exactly one new object, inside backups/NAME/: no new top-level folder (docs/format.md §7.3).
    assert sorted(set(keys(bucket.client, bucket.name)) - set(before)) == [bucket.key(NAME, SEAL)]
    code, out, err = verify(bucket, keypair[1], "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["verified"] and report["tree_size"] == 330 and report["checked"] == 330
    assert "tarball is byte-identical to the sealed one" in report["notes"]


def test_verify_one_namespace_from_s3(bucket: Bucket, keypair) -> None:
    assert seal(bucket, keypair[0])[0] == 0
    code, out, _ = verify(bucket, keypair[1], "--namespace", "payments-001",
                          "--include-cluster-resources")
    assert code == 0
    assert out.startswith("VERIFIED: backup demo-small")
    assert "restore of namespace payments-001; include-cluster-resources=true" in out


def test_t6_prefix_named_like_a_bare_tarball_swapped(bucket: Bucket, keypair, tmp_path: Path) -> None:
    """T6 on S3: a prefix is named by its own name, exactly. Backup `nightly-data`'s prefix
    filled with backup `nightly`'s validly signed objects (renamed) is not authentic."""
    for name in ("nightly", "nightly-data"):
        bucket.upload(clone_backup(FIXTURES / "restore-mix", tmp_path / name, name))
        assert run("seal", bucket.url(name), "--key", keypair[0], *bucket.opts())[0] == 0
    for key in keys(bucket.client, bucket.name, f"{bucket.prefix}/backups/nightly/"):
        filename = key.rsplit("/", 1)[1]
        renamed = filename.replace("nightly", "nightly-data", 1)
        bucket.put("nightly-data", renamed, bucket.get("nightly", filename))
    for extra in ((), ("--namespace", "prod-a")):
        code, out, err = run("verify", bucket.url("nightly-data"), "--trust", keypair[1],
                             *bucket.opts(), *extra)
        assert code == 1 and "VERIFIED" not in out
        assert "the seal is for backup 'nightly', not 'nightly-data'" in one_line_error(err)


def test_second_seal_is_refused_and_the_first_left_intact(bucket: Bucket, keypair, other_keypair) -> None:
    assert seal(bucket, keypair[0])[0] == 0
    first_seal = bucket.get(NAME, SEAL)
    code, out, err = seal(bucket, other_keypair[0])
    assert code == 3 and out == ""
    assert "already exists (use --replace" in one_line_error(err)
    assert bucket.get(NAME, SEAL) == first_seal
    assert verify(bucket, keypair[1])[0] == 0
    # --replace is the only way to overwrite it.
    assert seal(bucket, other_keypair[0], "--replace")[0] == 0
    assert bucket.get(NAME, SEAL) != first_seal
    assert verify(bucket, other_keypair[1])[0] == 0
    assert verify(bucket, keypair[1])[0] == 1


def test_moto_honours_if_none_match(bucket: Bucket) -> None:
    """The conditional create this relies on (If-None-Match: *) is enforced by the server."""
    from botocore.exceptions import ClientError

    bucket.put(NAME, "probe", b"one")
    with pytest.raises(ClientError) as e:
        bucket.client.put_object(Bucket=bucket.name, Key=bucket.key(NAME, "probe"), Body=b"two",
                                 IfNoneMatch="*")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert bucket.get(NAME, "probe") == b"one"


def test_a_seal_written_by_someone_else_after_our_check_is_not_overwritten(
        bucket: Bucket, proxy, keypair, other_keypair) -> None:
    """The race HEAD-then-PUT leaves open is closed by If-None-Match: another sealer's seal that
    appears between our HEAD (404) and our PUT survives, and we exit 3."""
    from tests.storage.server import Rule

    assert seal(bucket, other_keypair[0])[0] == 0
    theirs = bucket.get(NAME, SEAL)
    bucket.client.delete_object(Bucket=bucket.name, Key=bucket.key(NAME, SEAL))
    # Put it back right after our HEAD of the seal key has been answered "no such object".
    proxy.add(Rule("after-head", path=SEAL, method="HEAD",
                   action=lambda: bucket.put(NAME, SEAL, theirs)))
    code, _, err = run("seal", bucket.url(NAME), "--key", keypair[0], *bucket.opts(proxy.endpoint))
    assert code == 3
    assert "already exists" in one_line_error(err)
    assert bucket.get(NAME, SEAL) == theirs
    puts = [entry for entry in proxy.log if entry[0] == "PUT" and SEAL in entry[1]]
    assert len(puts) == 1  # our conditional PUT was sent, and refused


def test_seal_to_a_local_file_leaves_the_bucket_untouched(bucket: Bucket, keypair, tmp_path: Path) -> None:
    before = keys(bucket.client, bucket.name)
    local = tmp_path / "kept-elsewhere.seal"
    assert seal(bucket, keypair[0], "--seal", local)[0] == 0
    assert local.is_file() and keys(bucket.client, bucket.name) == before
    assert verify(bucket, keypair[1], "--seal", local)[0] == 0


def test_unfinished_backup_is_not_sealed(bucket: Bucket, keypair) -> None:
    obj = json.loads(bucket.get(NAME, "velero-backup.json"))
    obj["status"]["phase"] = "InProgress"
    bucket.put(NAME, "velero-backup.json", json.dumps(obj).encode())
    code, _, err = seal(bucket, keypair[0])
    assert code == 3 and "not final" in one_line_error(err)
    assert bucket.key(NAME, SEAL) not in keys(bucket.client, bucket.name)


# --- tampering in the bucket ------------------------------------------------------------------


def test_tampered_tarball_in_s3_is_not_authentic(bucket: Bucket, keypair) -> None:
    assert seal(bucket, keypair[0])[0] == 0
    entries = entries_of(bucket.get(NAME, f"{NAME}.tar.gz"))
    target = first(entries, "resources/deployments.apps/namespaces/")
    entries = [(n, add_sidecar(d) if n == target else d) for n, d in entries]
    bucket.put(NAME, f"{NAME}.tar.gz", targz(entries, level=9))
    code, out, _ = verify(bucket, keypair[1], "--json")
    assert code == 1
    report = json.loads(out)
    assert not report["verified"]
    assert [(f["path"], f["problem"]) for f in report["failures"]] == [(target, "modified")]


def test_tampered_sidecar_in_s3_is_not_authentic(bucket: Bucket, keypair) -> None:
    assert seal(bucket, keypair[0])[0] == 0
    bucket.put(NAME, f"{NAME}-volumesnapshots.json.gz", gzip.compress(b'[{"evil":1}]\n'))
    code, out, _ = verify(bucket, keypair[1])
    assert code == 1 and "modified" in out and "volumesnapshots" in out


# --- what users get wrong ---------------------------------------------------------------------


def test_no_such_bucket(bucket: Bucket, keypair) -> None:
    code, out, err = run("verify", f"s3://no-such-bucket-here/velero/backups/{NAME}", "--trust",
                         keypair[1], *bucket.opts())
    assert code == 3 and out == ""
    assert "no such bucket 'no-such-bucket-here'" in one_line_error(err)


def test_no_such_backup(bucket: Bucket, keypair) -> None:
    code, _, err = run("verify", bucket.url("nightly-missing"), "--trust", keypair[1], *bucket.opts())
    assert code == 3
    assert "no such backup" in one_line_error(err)


def test_no_seal_yet(bucket: Bucket, keypair) -> None:
    code, _, err = verify(bucket, keypair[1])
    assert code == 3
    assert f"no seal at s3://{bucket.name}/velero/backups/{NAME}/{SEAL}" in one_line_error(err)


def test_folder_without_tarball(bucket: Bucket, keypair) -> None:
    bucket.put("half-uploaded", "velero-backup.json", b"{}")
    code, _, err = run("seal", bucket.url("half-uploaded"), "--key", keypair[0], *bucket.opts())
    assert code == 3 and "has no half-uploaded.tar.gz" in one_line_error(err)


@pytest.mark.parametrize("url", [
    "s3://bucket-name/velero/demo-small",  # no backups/ segment
    "s3://bucket-name/velero/backups/Not_A_Name",
    "s3://bucket-name/velero//backups/demo-small",
    "s3://x/backups/demo-small",  # bucket name too short
])
def test_malformed_s3_urls_are_usage_errors(url: str, keypair) -> None:
    code, _, err = run("verify", url, "--trust", keypair[1])
    assert code == 2
    one_line_error(err)


def test_endpoint_down_fails_fast(bucket: Bucket, keypair) -> None:
    import time

    from tests.storage.server import free_port

    start = time.monotonic()
    code, _, err = verify(bucket, keypair[1], "--endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert code == 3
    assert "cannot connect to the endpoint http://127.0.0.1:" in one_line_error(err)
    assert time.monotonic() - start < 10  # AWS_MAX_ATTEMPTS=2 in the tests


def test_aws_chunked_object_is_named_and_never_sealed(bucket: Bucket, keypair) -> None:
    """Velero issue #9951: the object holds the upload's aws-chunked framing, not a gzip file."""
    data = bucket.get(NAME, f"{NAME}.tar.gz")
    framed = (f"{len(data):x};chunk-signature=" + "0" * 64 + "\r\n").encode() + data + \
        b"\r\n0;chunk-signature=" + b"0" * 64 + b"\r\n\r\n"
    bucket.put(NAME, f"{NAME}.tar.gz", framed)
    code, _, err = seal(bucket, keypair[0])
    assert code == 3
    assert "aws-chunked" in one_line_error(err)
    assert bucket.key(NAME, SEAL) not in keys(bucket.client, bucket.name)


def test_aws_chunked_object_after_sealing_is_never_verified(bucket: Bucket, keypair) -> None:
    assert seal(bucket, keypair[0])[0] == 0
    data = bucket.get(NAME, f"{NAME}.tar.gz")
    bucket.put(NAME, f"{NAME}.tar.gz", f"{len(data):x};chunk-signature={'0' * 64}\r\n".encode() + data)
    code, out, err = verify(bucket, keypair[1], "--json")
    # The sealed tarball was a gzip stream, so these bytes are not it: tampering by evidence
    # (exit 1, the tarball `modified`), with the cause named; never verified.
    report = json.loads(out)
    assert code == 1 and report["verified"] is False
    failure = next(f for f in report["failures"] if f["path"] == f"{NAME}.tar.gz")
    assert failure["problem"] == "modified" and "aws-chunked" in failure["detail"]


# --- the package's shape ----------------------------------------------------------------------


def test_cli_start_up_does_not_import_boto3() -> None:
    code = ("import sys, merkle_backup.cli, merkle_backup.fleet.sweep, merkle_backup.fleet.audit_run, merkle_backup.storage.resolve, "
            "merkle_backup.storage.s3; "
            "assert not {'boto3', 'botocore'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_only_storage_s3_imports_boto() -> None:
    """boto3 and botocore are imported by the storage/s3/ package only, and by the AWS KMS
    signer (signers/awskms.py, issue 22: another AWS service, lazily, when --key awskms://)."""
    package = Path(__file__).resolve().parents[2] / "merkle_backup"
    importers = sorted(
        str(p.relative_to(package)) for p in package.rglob("*.py")
        if any(word in p.read_text() for word in ("import boto3", "import botocore", "from botocore",
                                                   "from boto3"))
    )
    assert importers and all(p.startswith("storage/s3/") or p == "signers/awskms.py"
                             for p in importers), importers
