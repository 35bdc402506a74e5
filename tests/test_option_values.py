"""docs/threat-model.md T74: values that reach a library unchecked. Each option is checked once,
at the edge: exit 2 and a usage line, never a traceback (the endpoint URL's cases are in
tests/storage/test_urls.py). A backup folder whose name is not UTF-8 is shown escaped in the
table, --json and --metrics (no lone surrogate anywhere, no crash)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli import run
from tests.conftest import FIXTURES, short_id
from tests.storage.server import clone_backup

BAD_NUMBERS = ["nan", "NaN", "-nan", "inf", "-inf", "1e400"]


def usage_error(result: tuple[int, str, str], said: str) -> None:
    code, out, err = result
    assert code == 2 and "Traceback" not in err and said in err, (code, out, err)


@pytest.fixture
def location(tmp_path, keypair):
    clone_backup(FIXTURES / "demo-small", tmp_path / "bucket" / "backups", "nightly")
    assert run("seal-all", tmp_path / "bucket", "--key", keypair[0])[0] == 0
    return tmp_path / "bucket"


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_t74_max_age_and_timeout_must_be_finite(value, location, keypair):
    backup = location / "backups" / "nightly"
    for command in (["seal", backup, "--key", keypair[0], "--replace"],
                    ["seal-all", location, "--key", keypair[0]],
                    ["audit", location, "--trust", keypair[1]]):
        usage_error(run(*command, f"--max-age={value}"), "--max-age")
        usage_error(run(*command, f"--timeout={value}"), "--timeout")


@pytest.mark.parametrize("value", ["99999999999999999999999d", "9" * 400, "0s", "1s" * 9],
                         ids=short_id)
def test_t74_recheck_after_is_a_bounded_duration(value, location, keypair, tmp_path):
    code, out, err = run("audit", location, "--trust", keypair[1], "--state",
                         tmp_path / "state.json", "--recheck-after", value)
    assert code == 2 and "Traceback" not in err and "duration" in err, (code, out, err)


def test_t74_a_folder_name_that_is_not_utf8(location, keypair, tmp_path):
    os.mkdir(os.path.join(os.fsencode(location / "backups"), b"bad\xff\x1bname"))
    metrics = tmp_path / "audit.prom"
    code, out, err = run("audit", location, "--trust", keypair[1], "--metrics", metrics)
    assert code == 3 and "Traceback" not in err, (out, err)
    # listed as its escaped text (injective: two bad names never merge), shown escaped again
    assert "bad\\\\xff\\\\x1bname" in out and "\x1b" not in out
    text = metrics.read_text(encoding="utf-8")  # written, and valid UTF-8
    assert 'backup="bad\\\\xff\\\\x1bname"' in text
    code, out, err = run("audit", location, "--trust", keypair[1], "--json")
    assert code == 3
    names = [r["name"] for r in json.loads(out)["backups"]]
    assert "bad\\xff\\x1bname" in names and "nightly" in names
    out.encode("utf-8")  # no lone surrogate in the output
    assert "\\udc" not in out
    code, out, err = run("seal-all", location, "--key", keypair[0], "--json")
    assert code == 0 and "\\udc" not in out, (out, err)
    assert Path(location / "backups" / "nightly").is_dir()
