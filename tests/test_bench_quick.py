"""The benchmark's code path at a tiny size: generator, every scenario, results, plots.

Runs what ``python -m bench`` runs (each scenario in a fresh interpreter), at 10^2 items with one
repeat, and checks that the outputs exist and are sane. No timing assertions: timings on a
shared CI machine say nothing; docs/benchmarks.md has the measured ones.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from bench import generate as gen
from bench.run import TIMED, run_all
from merkle_backup.archive import ArchiveReader


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    base = tmp_path_factory.mktemp("bench")
    out = base / "results"
    found = run_all(sizes=[100], mixes=list(gen.MIXES), repeats=lambda size: 1, out=out,
                    cache=base / "cache", cli_runs=1, plots=True, log=lambda message: None,
                    tlog_entries=200, tlog_window=5)
    return found, out


def test_every_scenario_ran_and_the_outputs_are_sane(results: tuple[dict, Path]) -> None:
    found, _ = results
    assert [(r["mix"], r["items"]) for r in found["runs"]] == [("realistic", 100), ("small", 100)]
    for run in found["runs"]:
        assert run["sanity"] == [], run["sanity"]
        assert run["entries"] == 2 * 100 + 1
        assert set(run["scenarios"]) == set(TIMED)
        for name, scenario in run["scenarios"].items():
            assert len(scenario["wall"]) == 1 and scenario["median_wall"] > 0, name
            assert scenario["rss_peak_bytes"] >= scenario["rss_base_bytes"] > 0, name
        for name, ratio in run["ratios"].items():
            assert math.isfinite(ratio), name  # a share can be < 0 from noise at this size
        assert 0 < run["scenarios"]["verify_proof_resource"]["facts"]["proof_bytes"] < 10_000
    assert found["cli_startup"]["cli_seconds"] > 0
    assert {t["target"].split(" (")[0] for t in found["targets"]} >= {
        "seal <= 1.3x decompress-only", "seal <= 2.0x decompress-only",
        "verify whole, unchanged < decompress-only", "verify-proof well under 1 ms per resource",
    }
    assert found["machine"]["cores"] >= 1 and found["machine"]["libraries"]["blake3"]
    assert found["tlog"]["sanity"] == [] and found["tlog"]["entries"] == 200  # bench/tlog.py


def test_results_files_and_plots_are_written(results: tuple[dict, Path]) -> None:
    _, out = results
    assert json.loads((out / "results.json").read_text())["config"]["sizes"] == [100]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 * len(TIMED)
    for name in ("time", "throughput", "memory", "proof_size"):
        png = (out / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5_000, name


def test_the_generator_is_deterministic_and_writes_velero_s_layout(
    results: tuple[dict, Path], tmp_path: Path
) -> None:
    found, _ = results
    info = found["runs"][0]["info"]
    tarball = Path(info["unchanged"]) / f"{info['name']}.tar.gz"
    again = gen.generate(100, "realistic", cache=tmp_path)
    assert gen.fingerprint(Path(again["unchanged"]) / f"{info['name']}.tar.gz") == gen.fingerprint(tarball)
    raw = tarball.read_bytes()
    assert raw.startswith(gen.GO_GZIP_HEADER)
    # Python's tarfile reads it too, every entry a regular file with mode 0755.
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tf:
        members = tf.getmembers()
    assert all(m.isreg() and m.mode == 0o755 and m.uid == 0 for m in members)
    names = [m.name for m in members]
    assert names[0] == "metadata/version"
    assert any("-preferredversion/" in n for n in names)
    assert any("/cluster/" in n for n in names) and any("/namespaces/" in n for n in names)
    # ...and the strict reader accepts it; the changed copy differs in the flipped entry only.
    with open(tarball, "rb") as f:
        entries = {e.path: e.data for e in ArchiveReader(f)}
    with open(Path(info["changed"]) / tarball.name, "rb") as f:
        changed = {e.path: e.data for e in ArchiveReader(f)}
    assert entries.keys() == changed.keys()
    assert [p for p in entries if entries[p] != changed[p]] == [info["flipped"]]


def test_long_names_take_ustar_prefix_or_pax_as_go_writes_them() -> None:
    short = gen.tar_entry_header(b"resources/pods/namespaces/a/b.json", 5)
    assert len(short) == 512 and short[257:265] == b"ustar\x0000"
    split = b"resources/pods/v1-preferredversion/namespaces/" + b"n" * 40 + b"/" + b"x" * 60 + b".json"
    header = gen.tar_entry_header(split, 5)
    assert len(header) == 512 and header[345:345 + 10] == b"resources/"
    long = b"resources/pods/namespaces/ns/" + b"y" * 200 + b".json"
    pax = gen.tar_entry_header(long, 5)
    assert len(pax) == 3 * 512 and pax[156:157] == b"x"
    assert pax[:100].rstrip(b"\0").startswith(b"resources/pods/namespaces/ns/PaxHeaders.0/")
    assert b" path=" + long + b"\n" in pax[512:1024]
    blocks = pax + gen._pad(b"hello") + bytes(1024)
    with tarfile.open(fileobj=io.BytesIO(blocks)) as tf:
        assert tf.getnames() == [long.decode()]


def test_velero_sized_scenario_at_a_tiny_size(tmp_path: Path) -> None:
    """bench/velero.py (issue 23) end to end at 41 entries: Go writes both archives, every
    whole-process scenario runs once and is checked (sizes, member count, seal, verify of the
    unchanged and changed archive), the targets are judged and the plot is written."""
    import shutil

    if shutil.which("go") is None:
        pytest.skip("go is not installed (the Velero-sized archives are written by Go)")
    from bench import velero

    found = velero.run_velero(tmp_path / "work", [41], 1, tmp_path / "cache", lambda m: None)
    assert found["sanity"] == [], found["sanity"]
    run = found["runs"][0]
    info = run["info"]
    assert run["entries"] == info["entries"] == 41 and info["median_entry_bytes"] < 1024
    assert set(run["median_wall"]) == set(velero.SCENARIOS)
    assert {t["target"] for t in found["targets"]} == {f"{t[0]} (issue 23)" for t in velero.TARGETS}
    # Go wrote it: Go's gzip header, and the changed archive differs in one item's two copies.
    tarball = Path(info["unchanged"]) / f"{info['name']}.tar.gz"
    assert tarball.read_bytes()[:3] == b"\x1f\x8b\x08"
    with open(tarball, "rb") as f:
        entries = {e.path: e.data for e in ArchiveReader(f)}
    with open(Path(info["changed"]) / tarball.name, "rb") as f:
        changed = {e.path: e.data for e in ArchiveReader(f)}
    assert sorted(p for p in entries if entries[p] != changed[p]) == sorted(
        [info["flipped"], info["flipped_copy"]])
    png = velero.plot(found, tmp_path)[0].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
