"""PNG plots of one results.json: time, throughput, memory and proof size against items."""

from __future__ import annotations

from pathlib import Path

MiB = 2**20
STYLE = {
    "decompress": ("baseline: decompress-only", "k", "--"),
    "tarfile": ("baseline: tarfile loop", "0.5", "--"),
    "file_hash": ("baseline: BLAKE3 of the file", "0.7", ":"),
    "seal": ("seal", "C0", "-"),
    "seal_no_manifest_check": ("seal, no manifest JSON check", "C0", ":"),
    "verify_unchanged": ("verify whole, unchanged", "C2", "-"),
    "verify_changed": ("verify whole, changed", "C1", "-"),
    "verify_namespace": ("verify one namespace, changed", "C3", "-"),
}


def _series(results: dict, mix: str, value) -> tuple[list[int], dict[str, list[float]]]:
    runs = sorted((r for r in results["runs"] if r["mix"] == mix), key=lambda r: r["items"])
    items = [r["items"] for r in runs]
    return items, {name: [value(r, name) for r in runs] for name in STYLE}


def plot_all(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mixes = sorted({r["mix"] for r in results["runs"]})
    paths = []

    def figure(name: str, ylabel: str, value, *, logy: bool, extra=None) -> None:
        fig, axes = plt.subplots(1, len(mixes), figsize=(6 * len(mixes), 4.2), squeeze=False)
        for ax, mix in zip(axes[0], mixes):
            items, series = _series(results, mix, value)
            for scenario, ys in series.items():
                label, color, line = STYLE[scenario]
                ax.plot(items, ys, line, marker="o", color=color, label=label, markersize=4)
            if extra:
                extra(ax, mix, items)
            ax.set_xscale("log")
            if logy:
                ax.set_yscale("log")
            ax.set_xlabel("items (tar entries = 2 x items + 1)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{mix} mix")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{name} — {results['machine']['cpu']}, {results['machine']['cores']} cores "
                     f"(medians)", fontsize=9)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    figure("time", "seconds (median)", lambda r, n: r["scenarios"][n]["median_wall"], logy=True)
    figure("throughput", "MB/s of decompressed tar",
           lambda r, n: r["info"]["tar_bytes"] / r["scenarios"][n]["median_wall"] / 1e6, logy=True)

    def budget(ax, mix, items):
        runs = sorted((r for r in results["runs"] if r["mix"] == mix), key=lambda r: r["items"])
        ax.plot(items, [(64 * MiB + 200 * r["entries"]) / MiB for r in runs], "r:",
                label="target: 64 MiB + 200 B/entry")

    figure("memory", "peak RSS minus interpreter baseline, MiB",
           lambda r, n: r["scenarios"][n]["peak_minus_base_bytes"] / MiB, logy=True, extra=budget)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for mix, marker in zip(mixes, "os"):
        runs = sorted((r for r in results["runs"] if r["mix"] == mix), key=lambda r: r["items"])
        items = [r["items"] for r in runs]
        for scenario, label, color in (("verify_proof_resource", "resource proof", "C0"),
                                       ("verify_proof_namespace", "namespace proof", "C3")):
            ax.plot(items, [r["scenarios"][scenario]["facts"]["proof_bytes"] for r in runs],
                    marker=marker, color=color, label=f"{label} ({mix})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items")
    ax.set_ylabel("proof file bytes")
    ax.set_title("proof size (namespace: the largest namespace, all its records)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "proof_size.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths
