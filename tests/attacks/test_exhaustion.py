"""T15 of docs/threat-model.md: resource exhaustion. Each attack runs the real CLI in a fresh
Python process, which reports its exit code, its time and its peak memory
(the child's VmHWM): a gzip bomb and a million empty entries are stopped by the
caps quickly, with bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

from isal import isal_zlib

from tests import tarcraft as tc
from tests.attacks import gotar
from tests.attacks.helpers import EXIT_CANNOT_CHECK, EXIT_NOT_AUTHENTIC, NS_A, tarball, verify

MIB = 1 << 20
GIB = 1 << 30
MAX_PEAK_MIB = 200
# "Quickly" is not asserted in seconds (a shared machine is noisy; speed is for bench/): the
# subprocess timeout of measure() is only a hang guard, and the bounded memory is the claim.

_MEASURE = r"""
import json, sys, time
start = time.monotonic()
from merkle_backup.cli import main
try:
    main(sys.argv[2:])
except SystemExit as e:
    code = e.code
# VmHWM, not ru_maxrss: Linux carries the forking parent's (pytest's) peak into a child's
# ru_maxrss, while exec gives the child a fresh address space whose high-water mark is its own.
with open("/proc/self/status") as status:
    hwm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "seconds": time.monotonic() - start, "peak_mib": hwm_kib / 1024}, f)
"""


def measure(tmp_path: Path, *args: str | Path) -> dict:
    """Run the CLI in a fresh process: its exit code, seconds, peak MiB and stderr."""
    out = tmp_path / "measure.json"
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(out), *map(str, args)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=120, check=False)
    result = json.loads(out.read_text())
    result["stderr"] = proc.stderr
    assert "Traceback" not in proc.stderr
    return result


def repeated_stream(prefix: bytes, piece: bytes, count: int, suffix: bytes) -> bytes:
    """gzip(prefix + piece * count + suffix), built in a moment: after a full flush the
    compressor starts afresh, so every copy of ``piece`` compresses to the same bytes."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = co.compress(prefix) + co.flush(zlib.Z_FULL_FLUSH)
    once = co.compress(piece) + co.flush(zlib.Z_FULL_FLUSH)
    tail = co.compress(suffix) + co.flush()
    crc = isal_zlib.crc32(prefix)
    for _ in range(count):
        crc = isal_zlib.crc32(piece, crc)
    crc = isal_zlib.crc32(suffix, crc)
    size = len(prefix) + len(piece) * count + len(suffix)
    trailer = crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + head + once * count + tail + trailer


def test_t15a_gzip_bomb(sealed: Path, tmp_path: Path, keypair) -> None:
    """T15a: the sealed entries, then one entry of 1 GiB of zeros (a 1 MiB file): refused at
    its header by max_entry_size (64 MiB by default) before any of it is inflated."""
    body = gotar.decompress(tarball(sealed))[: -2 * tc.BLOCK]
    bomb = f"resources/configmaps/namespaces/{NS_A}/bomb.json"
    blob = repeated_stream(body + tc.header(bomb, size=GIB), bytes(MIB), GIB // MIB,
                           tc.end_of_archive())
    assert len(blob) < 2 * MIB
    tarball(sealed).write_bytes(blob)

    runs = [
        measure(tmp_path, "verify", sealed, "--trust", keypair[1]),
        measure(tmp_path, "seal", sealed, "--key", keypair[0], "--seal", tmp_path / "s.seal"),
    ]
    assert [r["code"] for r in runs] == [EXIT_NOT_AUTHENTIC, EXIT_CANNOT_CHECK]
    assert f"{bomb}: entry data is {GIB} bytes, over the limit max_entry_size=67108864" \
        in runs[1]["stderr"]
    for run in runs:
        assert run["peak_mib"] < MAX_PEAK_MIB, run
    assert not (tmp_path / "s.seal").exists()
    # verify names the bomb too.
    code, report = verify(sealed, keypair[1])
    assert code == EXIT_NOT_AUTHENTIC
    # An unsealed path over the limit: the sealed backup had no such entry (by evidence).
    assert (bomb, "unexpected") in {(f["path"], f["problem"]) for f in report["failures"]}


def _empty_entries(sealed: Path, count: int = 1_000_000) -> None:
    """The sealed entries, then ``count`` empty entries of one unsealed path (a million: a
    1.5 MiB file, 512 MiB of tar)."""
    body = gotar.decompress(tarball(sealed))[: -2 * tc.BLOCK]
    headers = tc.header(f"resources/configmaps/namespaces/{NS_A}/e.json") * 2048  # 1 MiB
    tarball(sealed).write_bytes(repeated_stream(body, headers, -(-count // 2048),
                                                tc.end_of_archive()))


def test_t15b_a_million_empty_entries_stopped_by_max_entries(sealed: Path, tmp_path: Path,
                                                             keypair) -> None:
    """T15b: a million empty entries under --max-entries 100000: both commands stop at the cap
    within seconds and bounded memory."""
    _empty_entries(sealed)
    runs = [
        measure(tmp_path, "verify", sealed, "--trust", keypair[1], "--max-entries", "100000"),
        measure(tmp_path, "seal", sealed, "--key", keypair[0], "--seal", tmp_path / "s.seal",
                "--max-entries", "100000"),
    ]
    assert [r["code"] for r in runs] == [EXIT_NOT_AUTHENTIC, EXIT_CANNOT_CHECK]
    assert "more than max_entries=100000 entries" in runs[1]["stderr"]
    for run in runs:
        assert run["peak_mib"] < MAX_PEAK_MIB, run


def test_t15b_empty_entries_with_default_caps(sealed: Path, tmp_path: Path, keypair) -> None:
    """T15b with the default caps: the verifier's memory must not grow with the number of
    failures an attacker can produce (300,000 here, to keep the test short)."""
    _empty_entries(sealed, 300_000)
    result = measure(tmp_path, "verify", sealed, "--trust", keypair[1], "--json")
    assert result["code"] == EXIT_NOT_AUTHENTIC
    assert result["peak_mib"] < MAX_PEAK_MIB, result
