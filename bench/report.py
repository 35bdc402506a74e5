"""Markdown tables from a results.json (for docs/benchmarks.md).

    python -m bench.report bench/results/<run>/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MiB = 2**20
COLUMNS = [
    ("decompress", "decompress-only"), ("tarfile", "tarfile loop"), ("file_hash", "BLAKE3 of file"),
    ("seal", "seal"), ("seal_no_manifest_check", "seal w/o JSON check"),
    ("verify_unchanged", "verify, unchanged"), ("verify_changed", "verify, changed"),
    ("verify_namespace", "verify 1 namespace"),
]
# Issue 14: whole process, native engine and pure path.
ENGINE_COLUMNS = [
    ("seal", "seal"), ("seal_pure", "seal, pure"), ("seal_cli", "seal, process"),
    ("seal_cli_pure", "seal, process, pure"), ("verify_unchanged_cli", "verify unchanged, process"),
    ("verify_changed", "verify changed"), ("verify_changed_pure", "verify changed, pure"),
    ("verify_changed_cli", "verify changed, process"),
    ("verify_changed_cli_pure", "verify changed, process, pure"),
]


def tables(results: dict) -> str:
    runs = sorted(results["runs"], key=lambda r: (r["mix"], r["items"]))
    out = []
    m = results["machine"]
    out.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, Python {m['python']}, "
               f"blake3 {m['libraries']['blake3']}, isal {m['libraries']['isal']}, zlib "
               f"{m['libraries']['zlib']}; commit {m['git_commit']}; load average "
               f"{m['load_average_start'][0]:.1f} at start, {m['load_average_end'][0]:.1f} at end; "
               f"{results['seconds'] / 60:.0f} min.\n")
    out.append("Median wall time in seconds (runs per cell in the CSV):\n")
    out.append("| mix | items | entries | tar MiB | gz MiB | " + " | ".join(c[1] for c in COLUMNS) + " |")
    out.append("|---|---:|---:|---:|---:|" + "---:|" * len(COLUMNS))
    for r in runs:
        s = r["scenarios"]
        cells = [f"{s[c]['median_wall']:.3g}" for c, _ in COLUMNS]
        out.append(f"| {r['mix']} | {r['items']:,} | {r['entries']:,} | "
                   f"{r['info']['tar_bytes'] / MiB:,.0f} | {r['info']['gz_bytes'] / MiB:,.0f} | "
                   + " | ".join(cells) + " |")
    out.append("\nRatios (medians; lower is better except the tarfile column):\n")
    out.append("| mix | items | seal / decompress | tarfile / seal | seal w/o JSON check / decompress "
               "| JSON check share of seal | verify unchanged / decompress | verify changed / seal "
               "| namespace / whole | seal peak B/entry | verify changed peak B/entry "
               "| verify-proof ms/resource |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        q = r["ratios"]
        out.append(
            f"| {r['mix']} | {r['items']:,} | {q['seal_vs_decompress']:.2f} | "
            f"{q['tarfile_vs_seal']:.2f} | {q['seal_no_manifest_check_vs_decompress']:.2f} | "
            f"{q['manifest_check_share_of_seal']:.0%} | {q['verify_unchanged_vs_decompress']:.2f} | "
            f"{q['verify_changed_vs_seal']:.2f} | {q['verify_namespace_vs_verify_changed']:.2f} | "
            f"{q['seal_memory_bytes_per_entry']:,.0f} | "
            f"{q['verify_changed_memory_bytes_per_entry']:,.0f} | {q['verify_proof_resource_ms']:.3f} |"
        )
    out.append(f"\nEngines (issue 14; this run's default engine: {m.get('engine', '?')}): median "
               "wall seconds, and / decompress-only (verify changed: / seal of the same kind):\n")
    out.append("| mix | items | " + " | ".join(c[1] for c in ENGINE_COLUMNS) + " |")
    out.append("|---|---:|" + "---:|" * len(ENGINE_COLUMNS))
    for r in runs:
        s = r["scenarios"]
        base = s["decompress"]["median_wall"]
        cells = []
        for c, _ in ENGINE_COLUMNS:
            t = s[c]["median_wall"]
            if c.startswith("verify_changed"):
                seal = {"verify_changed": "seal", "verify_changed_pure": "seal_pure",
                        "verify_changed_cli": "seal_cli",
                        "verify_changed_cli_pure": "seal_cli_pure"}[c]
                cells.append(f"{t:.3g} ({t / s[seal]['median_wall']:.2f}x seal)")
            else:
                cells.append(f"{t:.3g} ({t / base:.2f}x)")
        out.append(f"| {r['mix']} | {r['items']:,} | " + " | ".join(cells) + " |")
    out.append("\nProofs (the largest namespace; its proof carries every record of it):\n")
    out.append("| mix | items | resource proof bytes | namespace | namespace leaves | namespace proof "
               "bytes | verify-proof, resource (ms) | verify-proof, namespace (ms/resource) |")
    out.append("|---|---:|---:|---|---:|---:|---:|---:|")
    for r in runs:
        s, info = r["scenarios"], r["info"]
        out.append(
            f"| {r['mix']} | {r['items']:,} | {s['verify_proof_resource']['facts']['proof_bytes']:,} | "
            f"{info['verify_namespace']} | {info['namespace_leaves']:,} | "
            f"{s['verify_proof_namespace']['facts']['proof_bytes']:,} | "
            f"{s['verify_proof_resource']['facts']['per_call_ms']:.3f} | "
            f"{s['verify_proof_namespace']['facts']['per_resource_ms']:.4f} |"
        )
    c = results["cli_startup"]
    out.append(f"\nCLI start-up: `{c['command']}` {c['cli_seconds'] * 1e3:.0f} ms vs `python -c pass` "
               f"{c['python_seconds'] * 1e3:.0f} ms ({c['ratio']:.2f}x, "
               f"+{c['overhead_seconds'] * 1e3:.0f} ms).\n")
    out.append("Targets:\n")
    out.append("| target | where | measured | limit | met |")
    out.append("|---|---|---:|---:|---|")
    for t in results["targets"]:
        out.append(f"| {t['target']} | {t['where']} | {t['measured']:.3g} {t['unit']} | "
                   f"{t['limit']:.3g} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(tables(json.loads(Path(sys.argv[1]).read_text())))
