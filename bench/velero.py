"""Velero-sized manifests, written by Go (issue 23): whole-process seal and verify against a
whole-process isal decompress-only of the same tarball, interleaved, in one run.

    python -m bench --velero-only [--velero-entries 100000,1000000] [--repeats N]

The archives are written by ``tests/tools/velerogen`` (Go ``archive/tar`` + ``compress/gzip``, Go's
``encoding/json`` re-marshalling every object, as Velero's backupper writes them), built here with
the ``go`` command (skipped, with a message, when Go is missing). Entry sizes follow what Velero
stores for real objects: the authored size of a real object of ``data/sizes.tsv`` plus ~350 bytes
of server metadata (uid, resourceVersion, creationTimestamp, generation, labels), so the median
entry is under 1 KB (~0.75 KB) with a long tail of CRDs, rules and dashboards (mean ~8 KB), as in
the 100,801-entry backup of issue 23 (median 712 bytes). Every item twice (classic and
``-preferredversion`` copy), ordered by resource type then namespace, sidecars beside the tarball;
the *changed* archive is the same backup with one item's ``resourceVersion`` changed by one digit,
written by Go again.

Each scenario is a process of its own, timed from outside, start-up included, as a user (or a
CronJob) pays it; repeats are interleaved (round 1 of every scenario, then round 2, ...):

* ``decompress``: isal decompress-only of the tarball (``python -c``, the bench's baseline code);
* ``seal``: ``merkle-backup seal``; ``verify_unchanged``, ``verify_changed``: ``merkle-backup
  verify`` of the sealed and of the changed archive;
* ``tarfile``: Python's tarfile + BLAKE3 loop (``python -c``), what a user would write.
"""

from __future__ import annotations

import bisect
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from bench import generate as gen

ROOT = Path(__file__).resolve().parent
VELEROGEN_SRC = ROOT.parent / "tests" / "tools" / "velerogen"
GENERATOR_VERSION = 1
SEED = 20261206
SERVER_METADATA = 350  # bytes the API server adds to an authored object (uid, versions, time)
MTIME = 1764979200  # velerogen -mtime: 2025-12-06T00:00:00Z

SCENARIOS = ("decompress", "seal", "verify_unchanged", "verify_changed", "tarfile")
DESCRIPTIONS = {
    "decompress": "baseline: isal decompress-only of the tarball, a python -c process of its own",
    "seal": "merkle-backup seal, whole process (start-up, imports, key, read, sort, root, sign, write)",
    "verify_unchanged": "merkle-backup verify --json, whole process, the archive that was sealed",
    "verify_changed": "merkle-backup verify --json, whole process, one item's bytes changed (entry by entry)",
    "tarfile": "Python's tarfile (r:gz) + BLAKE3 of each member, a python -c process of its own",
}
DECOMPRESS = ("import sys\nfrom isal import isal_zlib as z\no = z.decompressobj(31)\nn = 0\n"
              "f = open(sys.argv[1], 'rb')\nwhile b := f.read(1 << 20): n += len(o.decompress(b))\n"
              "print(n + len(o.flush()))")
TARFILE = ("import sys, tarfile, blake3\nn = 0\nwith tarfile.open(sys.argv[1], 'r:gz') as tf:\n"
           "    for m in tf:\n        if m.isfile():\n"
           "            blake3.blake3(tf.extractfile(m).read()).digest(); n += 1\nprint(n)")


def cache_dir(entries: int, cache: Path) -> Path:
    return cache / f"velero-go-{entries}"


def velerogen_binary(cache: Path) -> Path:
    """tests/tools/velerogen built with the local Go toolchain (offline), once per cache."""
    out = cache / "bin" / "velerogen"
    if out.exists():
        return out
    if shutil.which("go") is None:
        raise RuntimeError("the Velero-sized scenario needs Go (apt-get install golang-go)")
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOPROXY="off")
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=VELEROGEN_SRC, env=env, check=True)
    return out


def generate(entries: int, *, cache: Path = gen.CACHE, log: Callable[[str], None] | None = None
             ) -> dict:
    """Generate (or reuse) the Go-written backup of about ``entries`` tar entries."""
    out = cache_dir(entries, cache)
    want = {"generator_version": GENERATOR_VERSION, "target_entries": entries, "seed": SEED}
    info = gen.cached(out, want)
    if info is not None:
        return info
    info_path = out / "info.json"
    started = time.perf_counter()
    binary = velerogen_binary(cache)
    name = f"bench-velero-{entries}"
    folders = {v: out / v / "backups" / name for v in ("unchanged", "changed")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    rng = random.Random(f"{SEED}-{entries}")
    rows = gen._load_rows()
    corpus = gen._load_corpus()
    pad = gen._padding_text(corpus)
    pad = pad * (1 + 2 * 1024 * 1024 // len(pad))

    items = (entries - 1) // 2
    n_ns = min(gen.namespace_count(items), max(1, items // 2))
    namespaces = [f"{rng.choice(gen.TEAMS)}-{rng.choice(gen.ENVS)}-{gen._base36(i)}"
                  for i in range(n_ns)]
    cumulative, total_w = [], 0.0
    for i in range(n_ns):
        total_w += 1 / (i + 1) ** 0.8
        cumulative.append(total_w)
    priority = {gr: i for i, gr in enumerate(gen.PRIORITY)}
    others = sorted({r[1] for r in rows} - set(gen.PRIORITY))
    priority.update({gr: len(gen.PRIORITY) + i for i, gr in enumerate(others)})
    ns_row = len(rows)
    rows.append(("Namespace", "namespaces", "v1", True, 120))
    objects = [(priority["namespaces"], ns, ns_row, namespaces[ns]) for ns in range(n_ns)]
    for i in range(items - n_ns):
        r = rng.randrange(ns_row)
        kind, gr, _, cluster, _ = rows[r]
        ns = -1 if cluster else min(bisect.bisect_left(cumulative, rng.random() * total_w), n_ns - 1)
        objects.append((priority[gr], ns, r, gen._name(rng, i, kind)))
    objects.sort(key=lambda o: (o[0], o[1]))

    procs = {v: subprocess.Popen([str(binary), "-o", str(f / f"{name}.tar.gz"), "-mtime", str(MTIME)],
                                 stdin=subprocess.PIPE, stderr=subprocess.PIPE)
             for v, f in folders.items()}
    pipes: dict[str, IO[bytes]] = {v: p.stdin for v, p in procs.items()}  # type: ignore[misc]
    flipped = resource = flipped_copy = None
    verify_ns = namespaces[0]
    resource_list: dict[str, list[str]] = {}
    sizes: list[int] = []
    try:
        version = b'{"path":"metadata/version","raw_b64":"MS4xLjAK"}\n'  # "1.1.0\n"
        for pipe in pipes.values():
            pipe.write(version)
        for _, ns, r, obj_name in objects:
            kind, gr, ver, cluster, authored = rows[r]
            api = gen._api_version(gr, ver)
            if kind == "Namespace":
                where, ns_field, obj_ns = "cluster", b"", obj_name
            elif cluster:
                where, ns_field, obj_ns = "cluster", b"", ""
            else:
                obj_ns = namespaces[ns]
                where, ns_field = f"namespaces/{obj_ns}", b'"namespace":"%s",' % obj_ns.encode()
            rv = rng.randrange(10**8, 10**9)
            head = (b'{"apiVersion":"%s","kind":"%s","metadata":{"creationTimestamp":'
                    b'"2025-1%d-%02dT%02d:%02d:00Z","generation":%d,"labels":{"app":"%s"},'
                    b'"name":"%s",%s"resourceVersion":"%%d","uid":"%s"},"spec":{"items":') % (
                api.encode(), kind.encode(), rng.randint(0, 1), rng.randint(1, 28),
                rng.randint(0, 23), rng.randint(0, 59), rng.randint(1, 40),
                obj_name.split("-")[0].encode(), obj_name.encode(), ns_field, gen._uid(rng).encode())
            size = authored + SERVER_METADATA
            body = gen._fill(rng.random, corpus, pad, max(8, size - len(head) - 3)) + b"}}"
            obj = (head % rv) + body
            changed_obj = obj
            if flipped is None and obj_ns == verify_ns and kind != "Namespace":
                changed_obj = (head % (rv + 1)) + body
            paths = (f"resources/{gr}/{where}/{obj_name}.json",
                     f"resources/{gr}/{ver}-preferredversion/{where}/{obj_name}.json")
            for path in paths:
                line = b'{"path":"%s","obj":' % path.encode()
                pipes["unchanged"].write(line + obj + b"}\n")
                pipes["changed"].write(line + changed_obj + b"}\n")
                sizes.append(len(obj))
            if changed_obj is not obj:
                flipped = resource = paths[0]
                flipped_copy = paths[1]
            resource_list.setdefault(f"{api}/{kind}", []).append(
                f"{obj_ns}/{obj_name}" if obj_ns and kind != "Namespace" else obj_name)
    finally:
        for pipe in pipes.values():
            pipe.close()
        for v, p in procs.items():
            err = p.stderr.read() if p.stderr else b""  # type: ignore[union-attr]
            if p.wait() != 0:
                raise RuntimeError(f"velerogen failed ({v}): {err.decode(errors='replace')[-2000:]}")
    uid = gen._uid(rng)
    n_entries = 1 + 2 * len(objects)
    sidecars = gen._bucket_objects(name, uid, resource_list, n_entries)
    for folder in folders.values():
        for filename, data in sidecars.items():
            (folder / filename).write_bytes(data)
    sizes.sort()
    tarball = folders["unchanged"] / f"{name}.tar.gz"
    tar_bytes = int(subprocess.run([sys.executable, "-c", DECOMPRESS, str(tarball)],
                                   capture_output=True, text=True, check=True).stdout)
    info = dict(want)
    info.update(
        name=name, uid=uid, entries=n_entries, items=len(objects), namespaces=n_ns,
        verify_namespace=verify_ns, resource=resource, flipped=flipped, flipped_copy=flipped_copy,
        # the sizes of the JSON we handed to Go (Go's re-marshalled bytes differ by a few bytes)
        median_entry_bytes=sizes[len(sizes) // 2], mean_entry_bytes=round(sum(sizes) / len(sizes)),
        tar_bytes=tar_bytes, gz_bytes=tarball.stat().st_size,
        unchanged=str(folders["unchanged"]), changed=str(folders["changed"]),
        seconds=round(time.perf_counter() - started, 2),
    )
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    if log:
        log(f"generated {name} with Go: {n_entries} entries (median {info['median_entry_bytes']} B), "
            f"{tar_bytes / 2**20:.0f} MiB tar, {info['gz_bytes'] / 2**20:.1f} MiB gz in "
            f"{info['seconds']} s")
    return info


def _command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "merkle-backup")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "import sys; from merkle_backup._entry import main; "
            "sys.exit(main())"]


def commands(info: dict, key: Path, seal: Path) -> dict[str, list[str]]:
    tarball = str(Path(info["unchanged"]) / f"{info['name']}.tar.gz")
    cli = _command()
    return {
        "decompress": [sys.executable, "-c", DECOMPRESS, tarball],
        "seal": [*cli, "seal", info["unchanged"], "--key", str(key), "--seal", str(seal),
                 "--replace", "--max-age", "1e8"],
        "verify_unchanged": [*cli, "verify", info["unchanged"], "--trust", f"{key}.pub",
                             "--seal", str(seal), "--json"],
        "verify_changed": [*cli, "verify", info["changed"], "--trust", f"{key}.pub",
                           "--seal", str(seal), "--json"],
        "tarfile": [sys.executable, "-c", TARFILE, tarball],
    }


def compile_bytecode(*trees: str) -> None:
    """Write merkle_backup's .pyc files (this one's and those of ``trees``), as ``pip install``
    does for a user. Without them (an editable install run with PYTHONDONTWRITEBYTECODE, as on
    the development machine) every process compiles ~90 modules first: measured 57 ms of a
    0.27 s verify."""
    import importlib.util

    spec = importlib.util.find_spec("merkle_backup")
    places = [str(Path(t) / "merkle_backup") for t in trees]
    if spec is not None and spec.origin:
        places.append(str(Path(spec.origin).parent))
    for place in places:
        subprocess.run([sys.executable, "-m", "compileall", "-q", place], check=True,
                       capture_output=True)


def _check(name: str, info: dict, done: subprocess.CompletedProcess[str]) -> str | None:
    """What must hold whatever the timings (the run's outputs are those of a correct run)."""
    if name == "decompress":
        return None if done.stdout.strip() == str(info["tar_bytes"]) else "wrong tar size"
    if name == "tarfile":
        return None if done.stdout.strip() == str(info["entries"]) else "wrong member count"
    if name == "seal":
        return None if done.returncode == 0 else f"seal exited {done.returncode}: {done.stderr[-500:]}"
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return f"{name}: no JSON report (exit {done.returncode}): {done.stderr[-500:]}"
    failures = [[f["path"], f["problem"]] for f in report.get("failures", [])]
    if name == "verify_unchanged":
        return None if done.returncode == 0 and not failures else f"unchanged did not verify: {failures}"
    # The changed item's two copies (classic and -preferredversion) both differ.
    want = [[info["flipped"], "modified"], [info["flipped_copy"], "modified"]]
    return None if failures == want else f"changed: failures {failures}, expected {want}"


def run_velero(work: Path, sizes: list[int], repeats: int, cache: Path,
               log: Callable[[str], None], *, tarfile_rounds: int = 1,
               trees: dict[str, str] | None = None) -> dict:
    """Every size, every scenario ``repeats`` times interleaved (the tarfile loop, 10-20x
    slower than the rest, ``tarfile_rounds`` times); medians, ratios and targets.

    ``trees`` (name -> source tree) adds, in the same rounds, ``seal@name``,
    ``verify_unchanged@name`` and ``verify_changed@name``: the commands of that tree
    (``python -c`` with PYTHONPATH=tree), for A/B comparisons against another checkout."""
    work, cache = work.resolve(), cache.resolve()  # the trees' commands run in other folders
    work.mkdir(parents=True, exist_ok=True)
    trees = {name: os.path.abspath(tree) for name, tree in (trees or {}).items()}
    compile_bytecode(*trees.values())
    key = work / "velero.key"
    subprocess.run([*_command(), "keygen", str(key)], check=True, capture_output=True)
    runs = []
    for entries in sizes:
        info = generate(entries, cache=cache, log=log)
        seal = work / f"{info['name']}.seal"
        cmds = commands(info, key, seal)
        envs: dict[str, dict[str, str]] = {}
        # `python -c` puts the working directory first on sys.path, before PYTHONPATH: each
        # tree's commands run in that tree, so that they import it and no other
        cwds: dict[str, str] = {}
        entry = [sys.executable, "-c", "import sys; from merkle_backup._entry import main; "
                 "sys.exit(main())"]
        for tree_name, tree in trees.items():
            other = commands(info, key, work / f"{info['name']}.{tree_name}.seal")
            for s in ("seal", "verify_unchanged", "verify_changed"):
                cmds[f"{s}@{tree_name}"] = entry + other[s][len(_command()):]
                envs[f"{s}@{tree_name}"] = dict(os.environ, PYTHONPATH=tree)
                cwds[f"{s}@{tree_name}"] = tree
        scenarios = list(cmds)
        subprocess.run(cmds["seal"], check=True, capture_output=True)  # warm-up: page cache
        samples: dict[str, list[float]] = {s: [] for s in scenarios}
        cpu: dict[str, list[float]] = {s: [] for s in scenarios}
        load = [os.getloadavg()[0]]
        sanity: list[str] = []
        for r in range(repeats):
            for name in scenarios:
                if name == "tarfile" and r >= tarfile_rounds:
                    continue
                before = os.times()
                start = time.perf_counter()
                done = subprocess.run(cmds[name], capture_output=True, text=True, check=False,
                                      env=envs.get(name), cwd=cwds.get(name))
                samples[name].append(time.perf_counter() - start)
                after = os.times()
                cpu[name].append((after.children_user - before.children_user)
                                 + (after.children_system - before.children_system))
                problem = _check(name.split("@")[0], info, done)
                if problem and problem not in sanity:
                    sanity.append(problem)
            load.append(os.getloadavg()[0])
            log(f"  velero {entries}: round {r + 1}/{repeats} done (load {load[-1]:.2f})")
        medians = {s: statistics.median(v) for s, v in samples.items()}
        d = medians["decompress"]
        ratios = {
            "seal_vs_decompress": medians["seal"] / d,
            "verify_unchanged_vs_decompress": medians["verify_unchanged"] / d,
            "tarfile_vs_seal": medians["tarfile"] / medians["seal"],
            "verify_changed_vs_seal": medians["verify_changed"] / medians["seal"],
        }
        # Per round, each scenario against the decompress-only run of its own round: the
        # spread of the ratio says how far the machine's noise reaches.
        per_round = {s: [t / b for t, b in zip(samples[s], samples["decompress"])]
                     for s in ("seal", "verify_unchanged")}
        runs.append({"entries": info["entries"], "info": info, "wall": samples, "cpu": cpu,
                     "median_wall": medians, "median_cpu": {s: statistics.median(v) for s, v in cpu.items()},
                     "ratios": ratios, "per_round_vs_decompress": per_round, "load_average": load,
                     "sanity": sanity})
        log(summary_line(runs[-1]))
    return {"runs": runs, "descriptions": DESCRIPTIONS, "repeats": repeats,
            "targets": evaluate(runs), "sanity": [p for r in runs for p in r["sanity"]]}


TARGETS = (  # issue 23, whole process, against isal decompress-only in the same run
    ("seal <= 1.6x decompress-only", "seal_vs_decompress", 1.6, "x", False),
    ("verify unchanged <= 0.35x decompress-only", "verify_unchanged_vs_decompress", 0.35, "x", False),
    ("tarfile loop >= 5x slower than seal", "tarfile_vs_seal", 5.0, "x slower", True),
    ("verify changed <= 1.2x seal", "verify_changed_vs_seal", 1.2, "x", False),
)


def evaluate(runs: list[dict]) -> list[dict]:
    targets = []
    for run in runs:
        for text, ratio, limit, unit, at_least in TARGETS:
            measured = run["ratios"][ratio]
            targets.append({"target": f"{text} (issue 23)",
                            "where": f"velero-sized (Go), {run['entries']:,} entries",
                            "measured": measured, "limit": limit, "unit": unit,
                            "met": measured >= limit if at_least else measured <= limit})
    return targets


def summary_line(run: dict) -> str:
    m, q = run["median_wall"], run["ratios"]
    return (f"velero-sized {run['entries']:>9,} entries: decompress {m['decompress']:.2f}s, seal "
            f"{m['seal']:.2f}s = {q['seal_vs_decompress']:.2f}x, verify unchanged "
            f"{q['verify_unchanged_vs_decompress']:.2f}x, changed {q['verify_changed_vs_seal']:.2f}x "
            f"seal, tarfile {q['tarfile_vs_seal']:.1f}x slower than seal")


def plot(result: dict, out: Path, machine: str = "") -> list[Path]:
    """velero_time.png: seconds per scenario against entries; velero_ratio.png: seal and
    verify against decompress-only per round (the noise), with the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(result["runs"], key=lambda r: r["entries"])
    xs = [r["entries"] for r in runs]
    style = {"decompress": ("baseline: isal decompress-only", "k", "--"),
             "tarfile": ("baseline: tarfile + BLAKE3 loop", "0.5", "--"),
             "seal": ("seal", "C0", "-"), "verify_unchanged": ("verify, unchanged", "C2", "-"),
             "verify_changed": ("verify, changed", "C1", "-")}
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    for name, (label, color, line) in style.items():
        ax.plot(xs, [r["median_wall"][name] for r in runs], line, marker="o", color=color,
                label=label, markersize=4)
    others = sorted({k for r in runs for k in r["median_wall"] if "@" in k})
    for name in others:  # another tree's seal and verify, run in the same rounds (--tree)
        scenario, tree = name.split("@", 1)
        label, color, _ = style[scenario]
        ax.plot(xs, [r["median_wall"].get(name, float("nan")) for r in runs], ":", marker="x",
                color=color, label=f"{label} ({tree})", markersize=5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tar entries (Go-written, median entry < 1 KB)")
    ax.set_ylabel("seconds, whole process (median)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    for name, color, limit in (("seal", "C0", 1.6), ("verify_unchanged", "C2", 0.35)):
        for r in runs:
            ys = r["per_round_vs_decompress"][name]
            ax.plot([r["entries"]] * len(ys), ys, "o", color=color, alpha=0.35, markersize=4)
        ax.plot(xs, [r["median_wall"][name] / r["median_wall"]["decompress"] for r in runs], "-",
                marker="s", color=color, label=f"{style[name][0]} / decompress-only")
        ax.axhline(limit, color=color, linestyle=":", label=f"target <= {limit}x")
    ax.set_xscale("log")
    ax.set_xlabel("tar entries")
    ax.set_ylabel("x decompress-only (dots: each round)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"Velero-sized manifests (issue 23), whole process — {machine}", fontsize=9)
    fig.tight_layout()
    path = out / "velero.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:  # python -m bench.velero [ENTRIES...]
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.velero", description=__doc__.splitlines()[0])
    parser.add_argument("entries", nargs="*", type=int, default=[10**5])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=gen.CACHE)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "velero")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="also run seal and verify of another source tree (A/B), in the "
                        "same rounds")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run_velero(args.out / "work", args.entries, args.repeats, args.cache,
                        lambda m: print(m, flush=True),
                        trees=dict(t.split("=", 1) for t in args.tree))
    result["load_average_end"] = os.getloadavg()
    (args.out / "velero.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out)
    for run in result["runs"]:
        d = run["median_wall"]["decompress"]
        print(f"{run['entries']:,} entries, medians (x decompress-only {d:.3f}s): " + ", ".join(
            f"{s} {v:.3f}s ({v / d:.2f}x)" for s, v in run["median_wall"].items()))
    for t in result["targets"]:
        print(f"  {'met          ' if t['met'] else 'target missed'}  {t['target']} [{t['where']}]: "
              f"{t['measured']:.3g} {t['unit']} (limit {t['limit']:.3g})")
    for problem in result["sanity"]:
        print(f"INSANE velero: {problem}", file=sys.stderr)
    return 1 if result["sanity"] else 0


if __name__ == "__main__":
    sys.exit(main())

