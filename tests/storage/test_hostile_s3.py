"""Issue 11 on S3 (docs/threat-model.md T23, T25): the seal's temporary copy, a full temporary
folder, an oversized seal object and a seal object that does not decode; moto's standalone
server over real HTTP, the real CLI, tiny tmpfs mounts as the temporary folder."""

from __future__ import annotations

import json
import tempfile

import pytest

from tests.cli import run
from tests.conftest import tiny_tmpfs
from tests.storage.conftest import Bucket, one_line_error
from tests.storage.server import keys

NAME = "demo-small"
SEAL = f"{NAME}-merkle.seal"


def test_t23_s3_verify_with_a_full_temporary_folder(bucket: Bucket, keypair,
        tmp_path, monkeypatch) -> None:
    code, _, err = run("seal", bucket.url(NAME), "--key", keypair[0], *bucket.opts())
    assert code == 0, err
    with tiny_tmpfs(tmp_path / "tmp", "16k") as tmp:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        code, out, err = run("verify", bucket.url(NAME), "--trust", keypair[1], *bucket.opts())
        assert code == 3 and out == ""
        line = one_line_error(err)
        assert line == (f"merkle-backup: error: cannot copy {bucket.url(NAME)}/{SEAL} to a "
                        f"temporary file in {tmp}: No space left on device")
        assert list(tmp.iterdir()) == []


def test_t23_s3_seal_size_is_checked_before_any_copy(bucket: Bucket, keypair,
        tmp_path, monkeypatch) -> None:
    code, _, err = run("seal", bucket.url(NAME), "--key", keypair[0], *bucket.opts())
    assert code == 0, err
    size = len(bucket.get(NAME, SEAL))
    monkeypatch.setattr("merkle_backup.storage.s3.store.MAX_SEAL_BYTES", size - 1)
    # A temporary folder far too small for the seal: a copy would fail with ENOSPC first.
    with tiny_tmpfs(tmp_path / "tmp", "4k") as tmp:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        code, _, err = run("verify", bucket.url(NAME), "--trust", keypair[1], *bucket.opts())
        assert code == 3
        assert one_line_error(err) == (f"merkle-backup: error: {bucket.url(NAME)}/{SEAL} is "
                                       f"{size} bytes, over the {size - 1} byte limit of a seal")


def test_t23_s3_seal_with_a_full_temporary_folder(bucket: Bucket, keypair,
        tmp_path, monkeypatch) -> None:
    before = keys(bucket.client, bucket.name)
    with tiny_tmpfs(tmp_path / "tmp", "16k") as tmp:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        code, _, err = run("seal", bucket.url(NAME), "--key", keypair[0], *bucket.opts())
        assert code == 3
        assert one_line_error(err) == (f"merkle-backup: error: cannot write the seal to a "
                                       f"temporary file in {tmp}: No space left on device")
    assert keys(bucket.client, bucket.name) == before  # no seal object


@pytest.mark.parametrize("broken", ["empty", "garbage", "cut-in-its-head"])
def test_t25_s3_seal_all_reports_a_seal_object_that_does_not_decode(bucket: Bucket, keypair,
        broken) -> None:
    code, _, err = run("seal", bucket.url(NAME), "--key", keypair[0], *bucket.opts())
    assert code == 0, err
    good = bucket.get(NAME, SEAL)
    # A whole seal is not downloaded: its head is read with one ranged GET.
    code, out, err = run("seal-all", bucket.url(), "--key", keypair[0], *bucket.opts(), "--json")
    assert code == 0, err
    assert json.loads(out)["backups"][0]["detail"] == "already sealed"
    content = {"empty": b"", "garbage": b"\xc0" * 10, "cut-in-its-head": good[:100]}[broken]
    bucket.put(NAME, SEAL, content)
    code, out, err = run("seal-all", bucket.url(), "--key", keypair[0], *bucket.opts(), "--json")
    assert code == 1, err
    row = json.loads(out)["backups"][0]
    assert row["status"] == "tampered" and "existing seal is not a seal" in row["detail"]
    assert bucket.get(NAME, SEAL) == content  # never replaced
