"""Shared by the log tests: a bucket folder of fresh backups (completed now), the CLI."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from click.testing import CliRunner

from merkle_backup.cli import main
from tests.conftest import FIXTURES

T = "%Y-%m-%dT%H:%M:%SZ"


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def backup_json(name: str, uid: str, completed: datetime, expires: datetime) -> bytes:
    obj = json.loads((FIXTURES / "demo-small" / "velero-backup.json").read_bytes())
    obj["metadata"]["name"], obj["metadata"]["uid"] = name, uid
    obj["status"]["completionTimestamp"] = completed.strftime(T)
    obj["status"]["expiration"] = expires.strftime(T)
    return json.dumps(obj, indent=2).encode()


def stage(root: Path, name: str, uid: str, *, age: timedelta = timedelta(minutes=5),
          ttl: timedelta = timedelta(days=30)) -> Path:
    """demo-small's tarball as backup ``name`` under root/backups/, completed ``age`` ago."""
    folder = root / "backups" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    src = FIXTURES / "demo-small"
    for p in src.iterdir():
        if p.name.endswith(".seal") or p.name == "velero-backup.json":
            continue
        shutil.copyfile(p, folder / p.name.replace("demo-small", name))
    now = datetime.now(timezone.utc)
    (folder / "velero-backup.json").write_bytes(backup_json(name, uid, now - age, now - age + ttl))
    return folder


def findings(out: str) -> dict[str, str]:
    """BACKUP -> status from a table (statuses may hold one space: 'deleted early')."""
    table = {}
    for line in out.splitlines()[1:]:
        if line.startswith(" ") or ":" in line.split(" ")[0]:
            continue
        parts = line.split("  ")
        parts = [p.strip() for p in parts if p.strip()]
        if len(parts) >= 2:
            table[parts[0]] = parts[1]
    return table


def filler_seal(private, pub, i: int, created: datetime | None = None) -> bytes:
    """A log entry for tests that only need many valid entries: the seal entry of a made-up
    checkpoint of backup ``backup-<i>`` (one seal per name, so another writer's claim of them
    passes the log's name rules, docs/format.md §12.4)."""
    from merkle_backup.core.checkpoint import Checkpoint
    from merkle_backup.tlog.entries import seal_entry

    cp = Checkpoint(backup=f"backup-{i}", uid=f"uid-{i}", tree_size=1,
                    root=i.to_bytes(32, "big"), archive_digest=bytes(32), archive_size=1,
                    created=created or datetime(2026, 12, 1, tzinfo=timezone.utc),
                    key_id=pub.key_id)
    body = cp.body()
    return seal_entry(body, private.sign(body), pub.raw)
