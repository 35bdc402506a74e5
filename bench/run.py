"""Run the benchmark matrix: generate, measure every scenario in fresh processes, evaluate targets.

Every number is a median over repeats that are interleaved (repeat 1 of every scenario, then
repeat 2, ...), so that the noise of this shared 2-core machine falls on baselines and scenarios
alike; targets are judged on ratios against baselines measured in the same run on the same
archive (../shared/STYLE.md, "Benchmarks").
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import generate as gen
from bench.scenarios import DESCRIPTIONS, PURE_SUFFIX

ROOT = Path(__file__).resolve().parent
MiB = 2**20
MEMORY_FIXED = 64 * MiB
MEMORY_PER_ENTRY = 200

# The order of one repeat. "seal" writes the seal the verifiers read; the provers write the
# proof files the proof verifiers read.
TIMED = [
    "decompress", "tarfile", "file_hash", "seal", "seal_no_manifest_check", "verify_unchanged", "verify_changed",
    "verify_namespace", "verify_namespace_unchanged", "prove_resource", "verify_proof_resource",
    "prove_namespace", "verify_proof_namespace", "seal_cli", "verify_unchanged_cli",
    "verify_changed_cli", "seal_pure", "verify_changed_pure", "seal_cli_pure",
    "verify_changed_cli_pure",
]
# Scenarios too slow to repeat at the largest sizes (medians of fewer runs there).
SLOW = {"tarfile"}


def run_child(scenario: str, ctx: dict, timeout: float = 3600) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MERKLE_BACKUP_PURE", None)
    if scenario.endswith(PURE_SUFFIX):  # the same scenario on the pure-Python path
        scenario = scenario[: -len(PURE_SUFFIX)]
        env["MERKLE_BACKUP_PURE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.child", scenario, json.dumps(ctx)],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT.parent, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scenario {scenario} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    def first(path: str, prefix: str) -> str:
        try:
            for line in open(path):  # noqa: SIM115 - a short read of /proc
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    versions = {}
    for module in ("blake3", "isal", "msgpack", "cryptography", "click"):
        try:
            from importlib.metadata import version

            versions[module] = version(module)
        except Exception:  # noqa: BLE001 - a description, never fatal
            versions[module] = "?"
    versions["zlib"] = zlib.ZLIB_RUNTIME_VERSION
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT.parent,
                                capture_output=True, text=True, check=False).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "merkle_backup"],
                                    cwd=ROOT.parent, capture_output=True, text=True, check=False).stdout.strip())
    except OSError:
        commit, dirty = "?", False
    return {
        "cpu": first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "ram": first("/proc/meminfo", "MemTotal"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "libraries": versions,
        "git_commit": commit + ("+dirty" if dirty else ""),
        "engine": engine_name(),
        "load_average_start": os.getloadavg(),
    }


def engine_name() -> str:
    """The per-entry engine a child process runs without MERKLE_BACKUP_PURE ("native" or
    "pure": "pure" here means the extension was not built, and the *_pure rows say nothing)."""
    env = {k: v for k, v in os.environ.items() if k != "MERKLE_BACKUP_PURE"}
    done = subprocess.run([sys.executable, "-c", "from merkle_backup.archive import ENGINE; "
                           "print(ENGINE)"], capture_output=True, text=True, env=env,
                          cwd=ROOT.parent, check=False)
    return done.stdout.strip() or "?"


def cli_startup(runs: int) -> dict:
    exe = shutil.which("merkle-backup")
    command = [exe, "--help"] if exe else [sys.executable, "-m", "merkle_backup.cli", "--help"]

    def median_of(cmd: list[str]) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    cli, python = [], []
    for _ in range(2):  # interleave, as everywhere
        cli.append(median_of(command))
        python.append(median_of([sys.executable, "-c", "pass"]))
    cli_s, python_s = min(cli), min(python)
    return {"command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command)),
            "cli_seconds": cli_s, "python_seconds": python_s, "overhead_seconds": cli_s - python_s,
            "ratio": cli_s / python_s}


def measure(items: int, mix: str, repeats: int, cache: Path, work: Path,
            log: Callable[[str], None]) -> dict:
    info = gen.generate(items, mix, cache=cache, log=log)
    work.mkdir(parents=True, exist_ok=True)
    ctx = {
        "unchanged": info["unchanged"], "changed": info["changed"],
        "seal": str(work / f"{info['name']}.seal"),
        "private_key": str(work.parent / "bench.key"), "public_key": str(work.parent / "bench.key.pub"),
        "namespace": info["verify_namespace"], "resource": info["resource"],
        "resource_proof": str(work / "resource.proof"), "namespace_proof": str(work / "namespace.proof"),
    }
    samples: dict[str, list[dict]] = {s: [] for s in TIMED}
    run_child("seal", ctx)  # warm-up: writes the seal, fills the page cache
    for r in range(repeats):
        for scenario in TIMED:
            if scenario in SLOW and r > 0 and items >= 10**6:
                continue
            samples[scenario].append(run_child(scenario, ctx))
        log(f"  {mix} {items}: repeat {r + 1}/{repeats} done")
    scenarios = {}
    for scenario, runs in samples.items():
        walls = [s["wall"] for s in runs]
        peaks = [(s["rss_peak_kib"] - s["rss_base_kib"]) * 1024 for s in runs]
        scenarios[scenario] = {
            "description": DESCRIPTIONS[scenario],
            "wall": walls, "cpu": [s["cpu"] for s in runs],
            "median_wall": statistics.median(walls), "min_wall": min(walls),
            "median_cpu": statistics.median(s["cpu"] for s in runs),
            "rss_base_bytes": max(s["rss_base_kib"] for s in runs) * 1024,
            "rss_peak_bytes": max(s["rss_peak_kib"] for s in runs) * 1024,
            "peak_minus_base_bytes": max(peaks),
            "facts": runs[-1]["facts"],
        }
    sanity = check_sanity(info, scenarios)
    return {"items": items, "mix": mix, "entries": info["entries"], "info": info,
            "scenarios": scenarios, "sanity": sanity}


def check_sanity(info: dict, s: dict) -> list[str]:
    """What must hold whatever the timings: the outputs are those of a correct run."""
    problems = []
    leaves = info["entries"] + 8  # + velero-backup.json and the 7 sidecars
    if s["seal"]["facts"]["leaves"] != leaves:
        problems.append(f"seal has {s['seal']['facts']['leaves']} leaves, expected {leaves}")
    if s["tarfile"]["facts"]["members"] != info["entries"]:
        problems.append("tarfile saw another number of members")
    if s["decompress"]["facts"]["tar_bytes"] != info["tar_bytes"]:
        problems.append("decompress-only produced another number of bytes")
    for name in ("verify_unchanged", "verify_unchanged_cli"):
        if not s[name]["facts"]["verified"]:
            problems.append(f"{name}: the unchanged archive did not verify")
    for name in ("seal_pure",):
        if s[name]["facts"]["leaves"] != leaves:
            problems.append(f"{name} has {s[name]['facts']['leaves']} leaves, expected {leaves}")
    expected = [[info["flipped"], "modified"]]
    for name in ("verify_changed", "verify_namespace", "verify_changed_pure",
                 "verify_changed_cli", "verify_changed_cli_pure"):
        found = [list(f) for f in s[name]["facts"]["failures"]]
        if found != expected:
            problems.append(f"{name}: failures {found}, expected {expected}")
    if s["verify_proof_resource"]["facts"]["resources"] != 1:
        problems.append("the resource proof did not prove one resource")
    if s["verify_proof_namespace"]["facts"]["resources"] != info["namespace_leaves"]:
        problems.append("the namespace proof did not prove every entry of the namespace")
    return problems


def ratios(run: dict) -> dict:
    s = {k: v["median_wall"] for k, v in run["scenarios"].items()}
    entries = run["entries"]
    return {
        "seal_vs_decompress": s["seal"] / s["decompress"],
        "tarfile_vs_seal": s["tarfile"] / s["seal"],
        "seal_vs_file_hash": s["seal"] / s["file_hash"],
        "seal_no_manifest_check_vs_decompress": s["seal_no_manifest_check"] / s["decompress"],
        "manifest_check_share_of_seal": 1 - s["seal_no_manifest_check"] / s["seal"],
        "verify_unchanged_vs_decompress": s["verify_unchanged"] / s["decompress"],
        "verify_changed_vs_seal": s["verify_changed"] / s["seal"],
        "verify_namespace_vs_verify_changed": s["verify_namespace"] / s["verify_changed"],
        "verify_namespace_unchanged_vs_verify_unchanged":
            s["verify_namespace_unchanged"] / s["verify_unchanged"],
        "seal_memory_bytes_per_entry": run["scenarios"]["seal"]["peak_minus_base_bytes"] / entries,
        "verify_changed_memory_bytes_per_entry":
            run["scenarios"]["verify_changed"]["peak_minus_base_bytes"] / entries,
        "verify_proof_resource_ms": run["scenarios"]["verify_proof_resource"]["facts"]["per_resource_ms"],
        # issue 14: whole process, and the pure path beside the native engine
        "seal_cli_vs_decompress": s["seal_cli"] / s["decompress"],
        "seal_cli_pure_vs_decompress": s["seal_cli_pure"] / s["decompress"],
        "seal_pure_vs_decompress": s["seal_pure"] / s["decompress"],
        "verify_unchanged_cli_vs_decompress": s["verify_unchanged_cli"] / s["decompress"],
        "verify_changed_cli_vs_seal_cli": s["verify_changed_cli"] / s["seal_cli"],
        "verify_changed_cli_pure_vs_seal_cli_pure":
            s["verify_changed_cli_pure"] / s["seal_cli_pure"],
        "tarfile_vs_seal_cli": s["tarfile"] / s["seal_cli"],
        "verify_proof_namespace_ms_per_resource":
            run["scenarios"]["verify_proof_namespace"]["facts"]["per_resource_ms"],
    }


def evaluate(runs: list[dict]) -> list[dict]:
    """Each target of issue 4, judged at 10^5 items (or the largest size measured)."""
    targets = []

    def add(target: str, where: str, measured: float, limit: float, unit: str, met: bool) -> None:
        targets.append({"target": target, "where": where, "measured": measured, "limit": limit,
                        "unit": unit, "met": met})

    by = {(r["mix"], r["items"]): r for r in runs}
    for mix in sorted({r["mix"] for r in runs}):
        sizes = sorted(i for m, i in by if m == mix)
        at = 10**5 if 10**5 in sizes else sizes[-1]
        r = by[(mix, at)]
        q = ratios(r)
        where = f"{mix}, {at:,} items"
        limit = 1.3 if mix == "realistic" else 2.0
        add(f"seal <= {limit}x decompress-only", where, q["seal_vs_decompress"], limit, "x",
            q["seal_vs_decompress"] <= limit)
        add("seal >= 5x faster than the tarfile loop", where, q["tarfile_vs_seal"], 5, "x faster",
            q["tarfile_vs_seal"] >= 5)
        add("verify whole, unchanged < decompress-only", where,
            q["verify_unchanged_vs_decompress"], 1, "x", q["verify_unchanged_vs_decompress"] < 1)
        add("verify whole, changed <= 1.2x seal", where, q["verify_changed_vs_seal"], 1.2, "x",
            q["verify_changed_vs_seal"] <= 1.2)
        add("verify one namespace no slower than verify whole (changed)", where,
            q["verify_namespace_vs_verify_changed"], 1.0, "x",
            q["verify_namespace_vs_verify_changed"] <= 1.0)
        add("verify-proof well under 1 ms per resource", where, q["verify_proof_resource_ms"],
            1.0, "ms", q["verify_proof_resource_ms"] < 1.0)
        # issue 14: whole process (the command spawned), native engine
        limit = 1.6 if mix == "realistic" else 7.0
        add(f"seal, whole process <= {limit}x decompress-only (issue 14)", where,
            q["seal_cli_vs_decompress"], limit, "x", q["seal_cli_vs_decompress"] <= limit)
        add("seal, whole process >= 5x faster than the tarfile loop (issue 14)", where,
            q["tarfile_vs_seal_cli"], 5, "x faster", q["tarfile_vs_seal_cli"] >= 5)
        add("verify unchanged, whole process <= 0.35x decompress-only (issue 14)", where,
            q["verify_unchanged_cli_vs_decompress"], 0.35, "x",
            q["verify_unchanged_cli_vs_decompress"] <= 0.35)
        add("verify changed, whole process <= 1.2x seal (issue 14)", where,
            q["verify_changed_cli_vs_seal_cli"], 1.2, "x", q["verify_changed_cli_vs_seal_cli"] <= 1.2)
        for size in sizes:
            run = by[(mix, size)]
            entries = run["entries"]
            budget = MEMORY_FIXED + MEMORY_PER_ENTRY * entries
            worst = max(("seal", "verify_changed", "verify_namespace", "verify_unchanged"),
                        key=lambda n: run["scenarios"][n]["peak_minus_base_bytes"])
            peak = run["scenarios"][worst]["peak_minus_base_bytes"]
            add(f"peak memory <= 64 MiB + 200 B/entry (worst: {worst})", f"{mix}, {size:,} items",
                peak / MiB, budget / MiB, "MiB", peak <= budget)
        if 10**5 in sizes and 10**6 in sizes:
            for scenario in ("seal", "verify_changed"):
                t5 = by[(mix, 10**5)]["scenarios"][scenario]["median_wall"]
                t6 = by[(mix, 10**6)]["scenarios"][scenario]["median_wall"]
                add(f"{scenario}: 10^6 items <= 12x the time of 10^5", mix, t6 / t5, 12, "x",
                    t6 / t5 <= 12)
    return targets


def write_csv(path: Path, runs: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mix", "items", "entries", "tar_bytes", "gz_bytes", "scenario", "runs",
                    "median_wall_s", "min_wall_s", "median_cpu_s", "gz_MBps", "tar_MBps",
                    "vs_decompress", "peak_minus_base_MiB", "bytes_per_entry", "proof_bytes"])
        for run in runs:
            info = run["info"]
            base = run["scenarios"]["decompress"]["median_wall"]
            for name, s in run["scenarios"].items():
                t = s["median_wall"]
                w.writerow([
                    run["mix"], run["items"], run["entries"], info["tar_bytes"], info["gz_bytes"],
                    name, len(s["wall"]), f"{t:.4f}", f"{s['min_wall']:.4f}",
                    f"{s['median_cpu']:.4f}", f"{info['gz_bytes'] / t / 1e6:.1f}",
                    f"{info['tar_bytes'] / t / 1e6:.1f}", f"{t / base:.3f}",
                    f"{s['peak_minus_base_bytes'] / MiB:.1f}",
                    f"{s['peak_minus_base_bytes'] / run['entries']:.0f}",
                    s["facts"].get("proof_bytes", ""),
                ])


def run_all(*, sizes: list[int], mixes: list[str], repeats: Callable[[int], int], out: Path,
            cache: Path, cli_runs: int, plots: bool, log: Callable[[str], None],
            fleet_backups: int = 0, fleet_repeats: int = 1, tlog_entries: int = 0,
            tlog_work: Path | None = None, tlog_window: int = 500,
            velero_entries: list[int] | None = None, velero_repeats: int = 5) -> dict:
    from merkle_backup.signing import generate_keypair

    from bench.velero import compile_bytecode

    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    generate_keypair(work / "bench.key")
    # Every scenario is a fresh interpreter: with .pyc written first, as pip install writes
    # them for a user, none of them compiles our ~90 modules again (PYTHONDONTWRITEBYTECODE).
    compile_bytecode()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "config": {"sizes": sizes, "mixes": mixes, "repeats": {s: repeats(s) for s in sizes},
                   "seed": gen.SEED, "generator_version": gen.GENERATOR_VERSION},
        "descriptions": DESCRIPTIONS,
    }
    results["cli_startup"] = cli_startup(cli_runs)
    log(f"CLI start-up: {results['cli_startup']['cli_seconds'] * 1e3:.0f} ms vs python "
        f"{results['cli_startup']['python_seconds'] * 1e3:.0f} ms")
    runs = []
    for size in sizes:
        for mix in mixes:
            run = measure(size, mix, repeats(size), cache, work / f"{mix}-{size}", log)
            run["ratios"] = ratios(run)
            runs.append(run)
            log(summary_line(run))
    results["runs"] = runs
    if fleet_backups:  # bench/fleet.py: audit of many small backups (issue 16)
        from bench.fleet import run_fleet
        from bench.fleet import summary_line as fleet_line

        results["fleet"] = run_fleet(work / "fleet", fleet_backups, fleet_repeats, log)
        log(fleet_line(results["fleet"]))
    if tlog_entries:  # bench/tlog.py: a log of 10^5 entries appended and audited (issue 13)
        from bench.tlog import run_tlog
        from bench.tlog import summary_line as tlog_line

        place = (tlog_work / f"tlog-{os.getpid()}") if tlog_work else work / "tlog"
        try:
            results["tlog"] = run_tlog(place, tlog_entries, log, tlog_window)
        finally:
            shutil.rmtree(place, ignore_errors=True)
        log(tlog_line(results["tlog"]))
    if velero_entries:  # bench/velero.py: Go-written, Velero-sized manifests (issue 23)
        results["velero"] = velero_run(work / "velero", velero_entries, velero_repeats, cache, log)
    results["targets"] = evaluate(runs) + results.get("velero", {}).get("targets", [])
    results["machine"]["load_average_end"] = os.getloadavg()
    results["seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_csv(out / "results.csv", runs)
    if plots:
        from bench.plots import plot_all

        if runs:
            plot_all(results, out)
        if results.get("velero", {}).get("runs"):
            from bench.velero import plot as velero_plot

            velero_plot(results["velero"], out, f"{results['machine']['cpu']}, "
                        f"{results['machine']['cores']} cores")
    shutil.rmtree(work, ignore_errors=True)
    return results


def velero_run(work: Path, entries: list[int], repeats: int, cache: Path,
               log: Callable[[str], None]) -> dict:
    """The Velero-sized scenario (bench/velero.py), or why it did not run (no Go)."""
    import shutil as _shutil

    from bench import velero

    if _shutil.which("go") is None and not (cache / "bin" / "velerogen").exists():
        log("velero-sized scenario skipped: it needs Go (apt-get install golang-go)")
        return {"skipped": "go is not installed", "runs": [], "targets": [], "sanity": []}
    return velero.run_velero(work, entries, repeats, cache, log)


def summary_line(run: dict) -> str:
    q = run["ratios"]
    s = run["scenarios"]
    return (f"{run['mix']:>9} {run['items']:>8,}: seal {s['seal']['median_wall']:.2f}s = "
            f"{q['seal_vs_decompress']:.2f}x decompress, tarfile {q['tarfile_vs_seal']:.1f}x slower; "
            f"verify unchanged {q['verify_unchanged_vs_decompress']:.2f}x decompress, changed "
            f"{q['verify_changed_vs_seal']:.2f}x seal, namespace "
            f"{q['verify_namespace_vs_verify_changed']:.2f}x whole; seal mem "
            f"{q['seal_memory_bytes_per_entry']:.0f} B/entry; whole process: seal "
            f"{q['seal_cli_vs_decompress']:.2f}x (pure {q['seal_cli_pure_vs_decompress']:.2f}x), "
            f"verify unchanged {q['verify_unchanged_cli_vs_decompress']:.2f}x decompress")
