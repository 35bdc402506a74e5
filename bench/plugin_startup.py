"""python -m bench.plugin_startup [--frozen PATH] [--runs N]: the Velero plugin's start-up to its
handshake line, which Velero pays once per backup, restore and reconcile (issue 20), against
``python -c pass`` in the same run.

Each variant is started N times with Velero's environment (VELERO_PLUGIN=hello,
PLUGIN_PROTOCOL_VERSIONS=2); the time is from the spawn to the handshake line on stdout (for
``python -c pass``: to its exit). Medians and ratios are printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def to_handshake(command: list[str], socket_dir: str) -> float:
    env = {**os.environ, "VELERO_PLUGIN": "hello", "PLUGIN_PROTOCOL_VERSIONS": "2",
           "PLUGIN_UNIX_SOCKET_DIR": socket_dir}
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.kill()
    proc.wait()
    if not line.startswith(b"1|2|unix|"):
        raise SystemExit(f"{command}: no handshake line ({line!r})")
    return elapsed


def to_exit(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plugin_startup")
    parser.add_argument("--frozen", type=Path, help="the frozen build's executable")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    variants: dict[str, list[str]] = {
        "python -m merkle_backup.plugin.server": [sys.executable, "-m",
                                                  "merkle_backup.plugin.server"]}
    script = shutil.which("merkle-backup-velero-plugin",
                          path=str(Path(sys.executable).parent))
    if script:
        variants["console script"] = [script]
    if args.frozen:
        variants["frozen build"] = [str(args.frozen)]
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as sockets:
        base = [to_exit([sys.executable, "-c", "pass"]) for _ in range(args.runs)]
        results["python -c pass (to exit)"] = statistics.median(base)
        for name, command in variants.items():
            to_handshake(command, sockets)  # warm the page cache
            results[name] = statistics.median(to_handshake(command, sockets)
                                              for _ in range(args.runs))
    baseline = results["python -c pass (to exit)"]
    print(json.dumps({
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "runs": args.runs,
        "median_seconds": {k: round(v, 4) for k, v in results.items()},
        "ratio_to_python_c_pass": {k: round(v / baseline, 2) for k, v in results.items()},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
