"""Run one scenario in this fresh interpreter and print one JSON line of measurements.

    python -m bench.child SCENARIO CONTEXT_JSON

``rss_base_kib`` is the peak resident set once every module is imported (the interpreter's
baseline); ``rss_peak_kib`` the peak at the end. Both are this process image's own high-water
mark (``VmHWM``): ``ru_maxrss`` is not used where /proc exists, since Linux carries the parent's
peak over into a child's ``ru_maxrss`` at fork/exec. Only the scenario is timed.
"""

from __future__ import annotations

import gc
import importlib
import json
import resource
import sys
import time


def peak_rss_kib() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    name, ctx = sys.argv[1], json.loads(sys.argv[2])
    from bench.scenarios import PRELOAD, SCENARIOS

    for module in PRELOAD:
        importlib.import_module(module)
    gc.collect()
    base = peak_rss_kib()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    from merkle_backup.tuning import bulk_pass

    with bulk_pass():  # as the command line's seal, verify and prove run (cli._single_pass)
        facts = SCENARIOS[name](ctx)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    peak = peak_rss_kib()
    print(json.dumps({"scenario": name, "wall": wall, "cpu": cpu, "rss_base_kib": base,
                      "rss_peak_kib": peak, "facts": facts}))


if __name__ == "__main__":
    main()
