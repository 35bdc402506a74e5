"""Go's golang.org/x/mod/sumdb/tlog and note read our log; two writers race; a crash at every
step of an append leaves a head that matches its tiles."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from merkle_backup.core.tree import verify_consistency
from merkle_backup.signing import generate_keypair, load_private_key, public_key_of
from merkle_backup.tlog import note as notes
from merkle_backup.tlog import tiles
from merkle_backup.tlog.log import SHA256, Log, LogState
from merkle_backup.tlog.store import LocalLogStore
from tests.tlog.helpers import filler_seal

TOOL = Path(__file__).parent.parent / "tools" / "tlogcheck"
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def tlogcheck(tmp_path_factory) -> Path:
    if shutil.which("go") is None or not Path("/usr/share/gocode/src/golang.org/x/mod/sumdb/tlog").is_dir():
        pytest.skip("needs go and golang-golang-x-mod-dev")
    out = tmp_path_factory.mktemp("go") / "tlogcheck"
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", CGO_ENABLED="0",
               GOCACHE=str(out.parent / "cache"), GOPROXY="off")
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=TOOL, env=env, check=True)
    return out


@pytest.fixture
def signer(tmp_path):
    key, _ = generate_keypair(tmp_path / "log.key")
    private = load_private_key(key)
    return private, public_key_of(private)


def entry(private, pub, i: int) -> bytes:
    return filler_seal(private, pub, i)


# 1 entry; 256 (one full level-0 tile, in four appends); 4,417 (17 full level-0 tiles and a
# partial one, so a level-1 tile of width 18, in appends that cross tile edges). The tile code
# has no rule that only a level-1 tile of 256 hashes (65,536 entries) would reach.
@pytest.mark.parametrize("sizes", [[1], [3, 250, 2, 1], [300, 4097, 20]])
def test_go_verifies_our_heads_tiles_and_proofs(tlogcheck, signer, tmp_path, sizes):
    private, pub = signer
    log = Log(LocalLogStore(tmp_path / "log"), [pub], LogState(tmp_path / "s.json"))
    done = 0
    for step in sizes:
        log.append(private, [entry(private, pub, done + j) for j in range(step)])
        done += step
    head = log.head()
    reader = log.reader(head.size)
    leaves = [tiles.leaf_hash(e.raw) for e in log.entries(head)]
    b64 = lambda h: base64.b64encode(h).decode()
    picks = sorted({0, head.size - 1, head.size // 2, min(255, head.size - 1)})
    ours = {
        "inclusion": [{"index": i, "size": head.size, "root": b64(head.root), "leaf": b64(leaves[i]),
                       "proof": [b64(h) for h in reader.inclusion_proof(i)]} for i in picks],
        "consistency": [{"old": m, "old_root": b64(tiles.root_of(leaves[:m])), "size": head.size,
                         "root": b64(head.root), "proof": [b64(h) for h in reader.consistency_proof(m)]}
                        for m in sorted({1, head.size // 3 or 1, max(1, head.size - 1)})],
    }
    (tmp_path / "proofs.json").write_text(json.dumps(ours))
    vkey = notes.vkey(head.checkpoint.origin, pub.raw)
    result = subprocess.run([tlogcheck, tmp_path / "log", vkey, tmp_path / "proofs.json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["size"] == out["entries"] == head.size
    assert out["ours"] == len(ours["inclusion"]) + len(ours["consistency"])


def test_go_refuses_a_tampered_tile_and_a_foreign_key(tlogcheck, signer, tmp_path):
    private, pub = signer
    log = Log(LocalLogStore(tmp_path / "log"), [pub], LogState(tmp_path / "s.json"))
    log.append(private, [entry(private, pub, j) for j in range(5)])
    head = log.head()
    other = public_key_of(load_private_key(generate_keypair(tmp_path / "o.key")[0]))
    r = subprocess.run([tlogcheck, tmp_path / "log", notes.vkey(head.checkpoint.origin, other.raw)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    tile = tmp_path / "log" / tiles.tile_path(0, 0, 5)
    data = bytearray(tile.read_bytes())
    data[0] ^= 1
    tile.write_bytes(bytes(data))
    r = subprocess.run([tlogcheck, tmp_path / "log", notes.vkey(head.checkpoint.origin, pub.raw)],
                       capture_output=True, text=True)
    assert r.returncode == 1


def test_two_writers_race(signer, tmp_path):
    """Two logs (two processes' worth of state) append to one folder at once: every entry is
    logged exactly once and the head matches the tiles."""
    private, pub = signer
    errors = []

    def writer(w: int) -> None:
        log = Log(LocalLogStore(tmp_path / "log"), [pub], LogState(tmp_path / f"s{w}.json"))
        try:
            for i in range(40):
                log.append(private, [entry(private, pub, 1000 * w + i)])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    log = Log(LocalLogStore(tmp_path / "log"), [pub], LogState(tmp_path / "check.json"))
    head = log.head()
    names = [e.backup for e in log.entries(head)]
    assert head.size == 80 and len(set(names)) == 80
    assert log.reader(head.size).root() == head.root


class Crash(Exception):
    pass


def test_crash_at_every_step_of_an_append(signer, tmp_path):
    private, pub = signer
    base = tmp_path / "base"
    log = Log(LocalLogStore(base), [pub], LogState(tmp_path / "s.json"))
    log.append(private, [entry(private, pub, j) for j in range(255)])  # next append fills tile 0
    steps = []
    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    Log(LocalLogStore(probe), [pub], None).append(private, [entry(private, pub, 900), entry(private, pub, 901)],
                                                  crash=steps.append)
    assert steps[0] == "pending/255" and steps[-1] == "checkpoint" and len(steps) >= 5
    for k, step in enumerate(steps):
        where = tmp_path / f"crash{k}"
        shutil.copytree(base, where)

        def crash(path, stop=step):
            if path == stop:
                raise Crash(path)

        crashed = Log(LocalLogStore(where), [pub], None)
        with pytest.raises(Crash):
            crashed.append(private, [entry(private, pub, 900), entry(private, pub, 901)], crash=crash)
        # A reader sees a head that matches its tiles and its entries.
        reader = Log(LocalLogStore(where), [pub], LogState(tmp_path / f"r{k}.json"))
        head = reader.head()
        assert head.size in (255, 257)
        assert reader.reader(head.size).root() == head.root
        assert len(reader.entries(head)) == head.size
        # The next writer finishes the crashed claim first, then appends its own.
        reader.append(private, [entry(private, pub, 902)])
        after = reader.head()
        names = [e.backup for e in reader.entries(after)]
        assert names[-3:] == ["backup-900", "backup-901", "backup-902"], step
        verify_consistency(size1=255, size2=after.size, root1=log.head().root, root2=after.root,
                           proof=reader.reader(after.size).consistency_proof(255), hasher=SHA256)
