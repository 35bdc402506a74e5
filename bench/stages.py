"""Where a seal's and a verification's time goes, stage by stage (issue 23's profile), for one
or more source trees, interleaved:

    python -m bench.stages BACKUP_DIR [CHANGED_DIR] [name=TREE ...] [--rounds N]

Each round runs, for each tree in turn (a fresh interpreter with PYTHONPATH=TREE), the seal's
stages as ``seal_backup`` runs them and, given CHANGED_DIR, the verification of that changed
archive against the seal just written. Every stage reports its wall time and the main thread's
CPU time (``time.thread_time``: what the inflater thread does beside it is not counted), and
the process its total CPU time (both threads). Medians over the rounds are printed as a table.
The imports are timed in the child too, from an interpreter that has imported nothing of ours.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r'''
import json, sys, time, io, os
t0 = time.perf_counter(); c0 = time.thread_time()
from merkle_backup import builder, verifier
from merkle_backup.archive import Limits
import merkle_backup.cli  # what the command imports besides
from merkle_backup.storage.local import LocalBackup
from merkle_backup.signing import generate_keypair, load_private_key, load_public_key
from merkle_backup.tuning import bulk_pass
from datetime import datetime, timezone
from pathlib import Path
out = {"imports": (time.perf_counter() - t0, time.thread_time() - c0)}
print("tree:", os.path.dirname(os.path.dirname(builder.__file__)), file=sys.stderr)
backup, changed, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
key = Path(tmp) / "k.key"
if not key.exists():
    generate_keypair(key)
private = load_private_key(key)
seal_path = Path(tmp) / "seal"

def stage(name, f):
    t = time.perf_counter(); c = time.thread_time()
    r = f()
    out[name] = (time.perf_counter() - t, time.thread_time() - c)
    return r

with bulk_pass():
    src = LocalBackup(Path(backup), seal_path=seal_path)
    found = []
    leaves, digest, size = stage("seal: read, hash, check (stream)",
                                 lambda: builder.hash_tarball(src, Limits(), None, found))
    stage("seal: sort", leaves.sort)
    from merkle_backup.core.checkpoint import Checkpoint
    cp = Checkpoint(backup=src.name, uid="-", tree_size=len(leaves), root=bytes(32),
                    archive_digest=digest, archive_size=size,
                    created=datetime(2026, 1, 1, tzinfo=timezone.utc), key_id=bytes(32))
    f = open(seal_path, "w+b")
    stage("seal: records, root, sign, write", lambda: builder.write_seal(
        leaves, cp, private, found, True, f))
    f.close()
    if changed != "-":
        result = builder.seal_backup(LocalBackup(Path(backup), seal_path=seal_path), private,
                                     created_at=datetime.now(timezone.utc), replace=True)
        trusted = [load_public_key(Path(str(key) + ".pub"))]
        report = stage("verify changed (whole)", lambda: verifier.verify_backup(
            LocalBackup(Path(changed), seal_path=seal_path), trusted))
        out["failures"] = len(report.failures)
t = os.times()
out["process cpu"] = (0.0, t.user + t.system)
print(json.dumps(out))
'''


def main(argv: list[str]) -> int:
    rounds = 3
    if "--rounds" in argv:
        i = argv.index("--rounds")
        rounds = int(argv[i + 1])
        del argv[i:i + 2]
    backup = argv[0]
    changed = argv[1] if len(argv) > 1 and "=" not in argv[1] else "-"
    trees = dict(a.split("=", 1) for a in argv[1:] if "=" in a) or {"this": ""}
    samples: dict[str, list[dict]] = {t: [] for t in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
            for name, path in order:
                env = dict(os.environ)
                if path:
                    env["PYTHONPATH"] = path
                # cwd: `python -c` puts the working directory first on sys.path, before
                # PYTHONPATH; run in the tree itself (or a neutral folder) so it is the one used
                done = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(backup),
                                       os.path.abspath(changed) if changed != "-" else "-",
                                       tmp], env=env, capture_output=True, text=True,
                                      check=True, cwd=path or tmp)
                sample = json.loads(done.stdout.strip().splitlines()[-1])
                sample["tree"] = done.stderr
                samples[name].append(sample)
                continue
    stages = [k for k in samples[next(iter(trees))][0] if k not in ("failures", "tree")]
    for t in trees:
        print(f"{t}: {samples[t][0]['tree'].strip()}")
    print(f"load average {os.getloadavg()[0]:.2f}; medians of {rounds} interleaved rounds; "
          "wall s / main-thread CPU s")
    print("| stage | " + " | ".join(trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for s in stages:
        cells = []
        for t in trees:
            wall = statistics.median(x[s][0] for x in samples[t])
            cpu = statistics.median(x[s][1] for x in samples[t])
            cells.append(f"{cpu:.3f} (CPU, both threads)" if s == "process cpu"
                         else f"{wall:.3f} / {cpu:.3f}")
        print(f"| {s} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
