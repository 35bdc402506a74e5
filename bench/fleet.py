"""The fleet benchmark (issue 16): ``audit`` of many small sealed backups in one location.

    python -m bench --fleet-only [--fleet-backups 1000]     (python -m bench runs it too)

Three scenarios, each the real command line in fresh processes, timed from outside (start-up
included, as a CronJob pays it), interleaved over the repeats:

* ``unsharded``: ``audit LOC --jobs 2``;
* ``sharded_2``: ``audit LOC --shard I/2 --results R --jobs 1`` as two concurrent processes (two
  shards on the machine's 2 cores), then ``audit-merge R``; timed until the merge ends;
* ``incremental``: ``audit LOC --state S --jobs 2`` when nothing changed since the run that
  wrote S (every backup skipped: the cost of the listing and the fingerprints).

Each backup is small (``ITEMS`` ConfigMaps, a few KiB), so the numbers are the per-backup
overhead of an audit (listing, seal, HEADs/opens, the verifier's set-up), not hashing speed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ITEMS = 10
CLI = [sys.executable, "-c", "from merkle_backup._entry import main; main()"]


def make_fleet(location: Path, count: int, items: int = ITEMS) -> None:
    """``count`` Velero-layout backups of ``items`` ConfigMaps each under ``location/backups``."""
    template = json.loads((resources.files("merkle_backup") / "demo_data" / "demo-small"
                           / "velero-backup.json").read_text())
    for i in range(count):
        name = f"fleet-{i:05d}"
        folder = location / "backups" / name
        folder.mkdir(parents=True)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=1) as tar:
            def add(path: str, data: bytes) -> None:
                info = tarfile.TarInfo(path)
                info.size, info.mode, info.mtime = len(data), 0o644, 1764221678
                tar.addfile(info, io.BytesIO(data))

            add("metadata/version", b"1.1.0\n")
            for j in range(items):
                manifest = {"apiVersion": "v1", "data": {"k": f"{i}-{j}"}, "kind": "ConfigMap",
                            "metadata": {"name": f"cm-{j}", "namespace": "app"}}
                add(f"resources/configmaps/namespaces/app/cm-{j}.json",
                    json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
        (folder / f"{name}.tar.gz").write_bytes(buf.getvalue())
        obj = json.loads(json.dumps(template))
        obj["metadata"]["name"] = name
        obj["metadata"]["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"merkle-backup-bench/{name}"))
        obj["status"]["phase"] = "Completed"
        (folder / "velero-backup.json").write_text(json.dumps(obj))


def _cli(*args: object) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=ROOT.parent)


def _done(proc: subprocess.Popen, codes: tuple[int, ...] = (0,)) -> str:
    out, err = proc.communicate(timeout=3600)
    if proc.returncode not in codes:
        raise RuntimeError(f"exit {proc.returncode}: {err.decode()[-2000:]}")
    return out.decode()


def run_fleet(work: Path, count: int, repeats: int, log: Callable[[str], None]) -> dict:
    from merkle_backup.fleet.sweep import seal_all
    from merkle_backup.signing import generate_keypair, load_private_key
    from merkle_backup.storage.local import LocalBucket

    if work.exists():
        shutil.rmtree(work)
    location = work / "location"
    t0 = time.perf_counter()
    make_fleet(location, count)
    generated = time.perf_counter() - t0
    key, pub = generate_keypair(work / "fleet.key")
    from datetime import datetime, timezone

    t0 = time.perf_counter()
    sealed = seal_all(LocalBucket(location), load_private_key(key), jobs=2,
                      clock=lambda: datetime(2026, 12, 1, tzinfo=timezone.utc))
    seal_seconds = time.perf_counter() - t0
    if sealed.summary["sealed"] != count:
        raise RuntimeError(f"sealed {sealed.summary}, expected {count}")
    log(f"  fleet: {count} backups generated in {generated:.1f}s, sealed (library, 2 threads) "
        f"in {seal_seconds:.1f}s")
    state = work / "state.json"
    _done(_cli("audit", location, "--trust", pub, "--state", state, "--jobs", "2"))  # writes S
    samples: dict[str, list[float]] = {"unsharded": [], "sharded_2": [], "incremental": []}
    facts: dict[str, dict] = {}
    for r in range(repeats):
        t0 = time.perf_counter()
        out = _done(_cli("audit", location, "--trust", pub, "--jobs", "2", "--json"))
        samples["unsharded"].append(time.perf_counter() - t0)
        whole = json.loads(out)
        facts["unsharded"] = {"summary": whole["summary"]}

        results = work / f"results-{r}"
        t0 = time.perf_counter()
        procs = [_cli("audit", location, "--trust", pub, "--jobs", "1", "--shard", f"{i}/2",
                      "--results", results, "--run-id", f"bench-{r}") for i in range(2)]
        for p in procs:
            _done(p)
        merged = json.loads(_done(_cli("audit-merge", results, "--json", "--shards", 2)))
        samples["sharded_2"].append(time.perf_counter() - t0)
        facts["sharded_2"] = {"summary": merged["summary"],
                              "equals_unsharded": merged["backups"] == whole["backups"]}

        t0 = time.perf_counter()
        out = _done(_cli("audit", location, "--trust", pub, "--state", state, "--jobs", "2", "--json"))
        samples["incremental"].append(time.perf_counter() - t0)
        facts["incremental"] = {"not_reread": json.loads(out)["not_reread"]}
        log(f"  fleet: repeat {r + 1}/{repeats} done")
    scenarios = {}
    for name, walls in samples.items():
        median = statistics.median(walls)
        scenarios[name] = {"wall": walls, "median_wall": median, "min_wall": min(walls),
                           "ms_per_backup": median / count * 1e3, "facts": facts[name]}
    sanity = []
    if facts["unsharded"]["summary"]["verified"] != count:
        sanity.append(f"unsharded audit: {facts['unsharded']['summary']}")
    if not facts["sharded_2"]["equals_unsharded"]:
        sanity.append("the merged 2-shard audit differs from the unsharded one")
    if facts["incremental"]["not_reread"] != count:
        sanity.append(f"incremental skipped {facts['incremental']['not_reread']} of {count}")
    shutil.rmtree(work, ignore_errors=True)
    return {"backups": count, "items_per_backup": ITEMS, "repeats": repeats,
            "seal_all_seconds": seal_seconds, "scenarios": scenarios, "sanity": sanity,
            "cores": os.cpu_count()}


def summary_line(fleet: dict) -> str:
    s = fleet["scenarios"]
    return (f"fleet of {fleet['backups']:,} small backups: audit {s['unsharded']['ms_per_backup']:.1f} "
            f"ms/backup unsharded (--jobs 2), {s['sharded_2']['ms_per_backup']:.1f} ms/backup with "
            f"2 shards + merge, {s['incremental']['ms_per_backup']:.2f} ms/backup incremental "
            f"(nothing changed)")
