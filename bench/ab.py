"""A/B: whole-process seal and verify of one backup folder by two source trees, interleaved.

    python -m bench.ab old=/path/to/old/checkout new=/path/to/new/checkout BACKUP_DIR [ROUNDS]

Each round runs `merkle-backup seal` then `verify` (the CLI, `python -m merkle_backup.cli`) with
PYTHONPATH set to each tree in turn, alternating which goes first; the medians and the ratio
new/old are printed. For changes that must not slow anything down (issue 12's restructuring),
on a machine as shared as this one: both trees see the same noise.
"""
import os, statistics, subprocess, sys, tempfile, time
trees = dict(a.split("=", 1) for a in sys.argv[1:3])
archive = os.path.abspath(sys.argv[3])
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 7
tmp = tempfile.mkdtemp()
key = os.path.join(tmp, "k.key")
subprocess.run([sys.executable, "-m", "merkle_backup.cli", "keygen", key], check=True, capture_output=True,
               env={**os.environ, "PYTHONPATH": list(trees.values())[0]}, cwd=list(trees.values())[0])
name = os.path.basename(archive.rstrip("/"))
times = {(t, op): [] for t in trees for op in ("seal", "verify")}
for r in range(rounds):
    for t, path in (list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]):
        env = {**os.environ, "PYTHONPATH": path}
        seal = os.path.join(tmp, f"{t}.seal")
        for op, args in (("seal", ["seal", archive, "--key", key, "--seal", seal, "--replace"]),
                         ("verify", ["verify", archive, "--trust", key + ".pub", "--seal", seal])):
            s = time.monotonic()
            # cwd=path: `python -m` puts the working directory first on sys.path, before
            # PYTHONPATH (run from a checkout, both sides would otherwise import that one)
            p = subprocess.run([sys.executable, "-m", "merkle_backup.cli", *args], env=env,
                               capture_output=True, cwd=path)
            times[(t, op)].append(time.monotonic() - s)
            assert p.returncode == 0, (t, op, p.stderr[-500:])
for op in ("seal", "verify"):
    a, b = (statistics.median(times[(t, op)]) for t in trees)
    print(f"{op}: " + ", ".join(f"{t} {statistics.median(times[(t, op)]):.3f}s" for t in trees) + f", ratio {b/a:.3f}")
