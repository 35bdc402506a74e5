"""docs/threat-model.md T71 and T74: URLs and endpoint settings, through the CLI.

T71: credentials written into a URL (``http://user:secret@host`` in ``--endpoint-url`` or a
BSL's ``s3Url``, ``s3://user:secret@bucket``) never reach a terminal, a CronJob log or
``--json``: such URLs are refused, and every URL shown is shown without its user and password.
T74: an endpoint that is not an http(s) URL with a host (the scheme forgotten, ``file://``, a
broken IPv6 literal, a port that is not a number, CR/LF) is refused at the edge with one line,
never a library's traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import run

SECRET = "s3cr3t-Pa55"
COMMANDS = [
    ("audit", "s3://bucket/velero", "--trust", "{pub}"),
    ("verify", "s3://bucket/velero/backups/nightly", "--trust", "{pub}"),
    ("seal-all", "s3://bucket/velero", "--key", "{key}"),
]


def _args(command: tuple[str, ...], keypair) -> list[str]:
    return [a.format(key=keypair[0], pub=keypair[1]) for a in command]


def _bsl(tmp_path: Path, s3url: str) -> Path:
    path = tmp_path / "bsl.json"
    path.write_text(json.dumps({
        "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": "default", "namespace": "velero"},
        "spec": {"provider": "aws", "objectStorage": {"bucket": "bucket", "prefix": "velero"},
                 "config": {"region": "us-east-1", "s3Url": s3url}}}))
    return path


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("url", [f"http://admin:{SECRET}@minio:9000",
                                 f"https://{SECRET}@minio.example",
                                 f"http://admin:{SECRET}@[::1"])
def test_t71_a_password_in_the_endpoint_url_is_refused_and_never_shown(command, url, keypair,
                                                                        tmp_path):
    for extra in (["--endpoint-url", url], ["--bsl", str(_bsl(tmp_path, url))]):
        for as_json in ([], ["--json"]):
            code, out, err = run(*_args(command, keypair), *extra, *as_json)
            assert code in (2, 3), out + err
            assert SECRET not in out + err
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1
            assert "***@" in err or "control character" in err or "not a URL" in err, err


def test_t71_a_password_in_an_s3_url_is_refused_and_never_shown(keypair, tmp_path):
    for where in (f"s3://admin:{SECRET}@bucket/velero", f"s3://{SECRET}@bucket"):
        code, out, err = run("audit", where, "--trust", keypair[1], "--json")
        assert code == 2 and SECRET not in out + err and "s3://***@" in err, out + err
        assert json.loads(out)["exit_code"] == 2
        (tmp_path / "backups").mkdir(exist_ok=True)
        code, out, err = run("audit", str(tmp_path), "--trust", keypair[1], "--log",
                             where + "/log")
        assert code == 2 and SECRET not in out + err, out + err


def test_t71_botocores_own_messages_lose_the_password(keypair, monkeypatch):
    """AWS_ENDPOINT_URL (read by botocore, not by us) with a password in it: the connection
    error botocore words itself is shown without it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://admin:{SECRET}@127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, out, err = run("audit", "s3://bucket/velero", "--trust", keypair[1], "--timeout", "2")
    assert code == 3 and SECRET not in out + err, out + err


@pytest.mark.parametrize("url, said", [
    ("minio:9000", "did you mean http://minio:9000?"),
    ("minio", "give an http:// or https:// URL"),
    ("file:///etc/passwd", "give an http:// or https:// URL"),
    ("ftp://minio:21", "give an http:// or https:// URL"),
    ("http://[::1", "not a URL"),
    ("http://[zz::1]:9000", "not a URL"),
    ("http://minio:port", "not a URL"),
    ("http://minio:99999", "not a URL"),
    ("http://minio:9000\r\nX-Injected: 1", "control character"),
    ("http://minio :9000", "control character"),
    ("http://", "no host"),
])
def test_t74_an_endpoint_that_is_not_an_http_url_is_one_line(url, said, keypair, tmp_path):
    code, out, err = run("audit", "s3://bucket/velero", "--trust", keypair[1],
                         "--endpoint-url", url)
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, out + err
    assert "Traceback" not in err and "\r" not in err
    code, out, err = run("audit", "s3://bucket/velero", "--trust", keypair[1],
                         "--bsl", _bsl(tmp_path, url))
    assert code == 3 and said in err and "s3Url" in err, out + err
    assert len(err.strip().splitlines()) == 1 and "\r" not in err
