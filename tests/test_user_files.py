"""docs/threat-model.md T72: every file merkle-backup reads goes through one no-follow (or, for
a file the user named, follow-then-check), non-blocking, size-capped open. A FIFO (which would
block the open or the read forever) or a link to /dev/zero (which would be read until memory
runs out) in place of a local log's checkpoint, tile or entry bundle, of --state, --log-state,
--bsl, --restore, --trust, a BSL's credentialsFile or --ca-bundle is refused with one line.

Each run is a real process with a timeout, so a hang fails the test instead of stalling it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from merkle_backup.signing import generate_keypair
from tests.tlog.helpers import stage

TIMEOUT = 60


def cli(*args: object) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "merkle_backup", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, "MERKLE_BACKUP_NO_PROGRESS": "1"})
    return done.returncode, done.stdout, done.stderr


def refused(result: tuple[int, str, str], *said: str) -> None:
    code, out, err = result
    lines = err.strip().splitlines()
    assert code in (1, 2, 3), (code, out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert any(s in lines[0] for s in said), lines[0]


def plant(path: Path, kind: str) -> None:
    if path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


KINDS = ["fifo", "zero"]
SAID = ("FIFO", "symbolic link", "character device")


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A location with one backup sealed through seal-all --log, and its log (local)."""
    root = tmp_path_factory.mktemp("logged")
    key, pub = generate_keypair(root / "signer.key")
    stage(root / "bucket", "nightly-a", "uid-a")
    code, out, err = cli("seal-all", root / "bucket", "--key", key, "--log", root / "log",
                         "--log-state", root / "sealer-state.json")
    assert code == 0, out + err
    return root, key, pub


@pytest.fixture
def site(logged, tmp_path):
    import shutil

    root, key, pub = logged
    shutil.copytree(root / "bucket", tmp_path / "bucket")
    shutil.copytree(root / "log", tmp_path / "log")
    return tmp_path, key, pub


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("obj", ["checkpoint", "tile/0/000.p/2", "tile/entries/000.p/2"])
def test_t72_log_objects(site, obj, kind):
    tmp, _, pub = site
    plant(tmp / "log" / obj, kind)
    commands = [["verify", tmp / "bucket/backups/nightly-a"]]  # its inclusion proof: the tile
    if not obj.startswith("tile/0/"):
        commands.append(["audit", tmp / "bucket"])
    for command in commands:
        refused(cli(*command, "--trust", pub, "--log", tmp / "log", "--log-state",
                    tmp / "fresh-state.json"), *SAID)


@pytest.mark.parametrize("kind", KINDS)
def test_t72_state_files(site, kind):
    tmp, _, pub = site
    plant(tmp / "named", kind)
    refused(cli("audit", tmp / "bucket", "--trust", pub, "--log", tmp / "log",
                "--log-state", tmp / "named"), *SAID)
    refused(cli("audit", tmp / "bucket", "--trust", pub, "--state", tmp / "named"), *SAID)


@pytest.mark.parametrize("kind", KINDS)
def test_t72_manifests_and_keys(site, kind):
    tmp, _, pub = site
    plant(tmp / "named", kind)
    backup = tmp / "bucket/backups/nightly-a"
    refused(cli("verify", backup, "--trust", pub, "--restore", tmp / "named"), *SAID)
    refused(cli("verify", backup, "--trust", tmp / "named"), *SAID)
    refused(cli("audit", "--bsl", tmp / "named", "--trust", pub), *SAID)
    refused(cli("audit", "s3://bucket/velero", "--trust", pub, "--ca-bundle", tmp / "named"),
            *SAID)
    bsl = tmp / "bsl.json"
    bsl.write_text(json.dumps({
        "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": "default"},
        "spec": {"provider": "aws", "objectStorage": {"bucket": "bucket", "prefix": "velero"},
                 "config": {"region": "us-east-1", "credentialsFile": str(tmp / "named")}}}))
    refused(cli("audit", "--bsl", bsl, "--trust", pub), *SAID)
