"""Whole-process seal and verify (the merkle-backup command) against a whole-process isal
decompress-only of the same tarball, interleaved, 3 rounds, on the cached 10^5-item archives:

    python -m bench.whole100k bench/cache

The quick check of issue 14's whole-process targets on a quiet machine (python -m bench runs
the full set; this takes about two minutes once the archives are cached)."""
import os
import statistics
import subprocess
import sys
import tempfile
import time
root = sys.argv[1]  # bench cache dir
rounds = 3
# The console script beside this interpreter (not a version manager's shim on PATH, which adds
# its own start-up to every run but not to the baseline's).
ENTRY = os.path.join(os.path.dirname(sys.executable), "merkle-backup")
tmp = tempfile.mkdtemp()
key = os.path.join(tmp, "k.key")
subprocess.run([ENTRY, "keygen", key], check=True, capture_output=True)
res = {}
for mix in ("realistic", "small"):
    folder = os.path.join(root, f"{mix}-100000", "unchanged", "backups", f"bench-{mix}-100000")
    tarball = os.path.join(folder, f"bench-{mix}-100000.tar.gz")
    seal = os.path.join(tmp, f"{mix}.seal")
    cmds = {
        # the bench's decompress baseline (bench/scenarios.py), as a process of its own
        "decompress": [sys.executable, "-c", "import isal.isal_zlib as z\no = z.decompressobj(31)\n"
                       f"f = open({tarball!r}, 'rb')\nwhile b := f.read(1 << 22): o.decompress(b)"],
        "seal": [ENTRY, "seal", folder, "--key", key, "--seal", seal, "--replace", "--max-age", "1e8"],
        "verify": [ENTRY, "verify", folder, "--trust", key + ".pub", "--seal", seal],
    }
    for r in range(rounds):
        for name, cmd in cmds.items():
            s = time.monotonic(); p = subprocess.run(cmd, capture_output=True); e = time.monotonic() - s
            assert p.returncode == 0, (mix, name, p.stderr[-400:])
            res.setdefault((mix, name), []).append(e)
    d = statistics.median(res[(mix, "decompress")])
    print(mix, " ".join(f"{n} {statistics.median(res[(mix, n)]):.2f}s ({statistics.median(res[(mix, n)])/d:.2f}x)" for n in cmds), flush=True)
