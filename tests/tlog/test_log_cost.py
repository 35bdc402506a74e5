"""An append writes O(log n) objects, never a rewrite (docs/format.md §12.4, issue 13): the
object count of an append is deterministic, ``bench.tlog.objects_for_append``, checked here on a
real log at tile edges, against ``tiles.new_tiles`` up to 2^40 entries, and in bench/tlog.py for
every append of a 10^5-entry log. No timing here (bench/ measures time)."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from bench.tlog import CountingStore, objects_for_append, run_tlog
from merkle_backup.signing import generate_keypair, load_private_key, public_key_of
from merkle_backup.tlog import tiles
from merkle_backup.tlog.entries import tombstone_entry
from merkle_backup.tlog.log import Log, LogState
from merkle_backup.tlog.store import LocalLogStore

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.fixture
def signer(tmp_path):
    private = load_private_key(generate_keypair(tmp_path / "log.key")[0])
    return private, public_key_of(private)


def test_objects_written_per_append_on_a_real_log(signer, tmp_path):
    private, pub = signer
    store = CountingStore(LocalLogStore(tmp_path / "log"))
    log = Log(store, [pub], LogState(tmp_path / "s.json"))
    done = 0

    def append(k: int) -> list[str]:
        nonlocal done
        before = len(store.written)
        log.append(private, [tombstone_entry(private, f"b-{done + j}", "u", bytes(32), NOW, pub.key_id)
                             for j in range(k)])
        done += k
        return store.written[before:]

    assert append(1) == ["pending/0", "tile/entries/000.p/1", "tile/0/000.p/1", "checkpoint"]
    assert append(2) == ["pending/1", "tile/entries/000.p/3", "tile/0/000.p/3", "checkpoint"]
    assert len(append(251)) == 4  # 3 -> 254, within tile 0
    # 254 -> 256: level-0 tile 0 becomes full, so level 1 gets its first node.
    assert append(2) == ["pending/254", "tile/entries/000", "tile/0/000", "tile/1/000.p/1", "checkpoint"]
    assert append(2) == ["pending/256", "tile/entries/001.p/2", "tile/0/001.p/2", "checkpoint"]
    # 258 -> 600, across two level-0 tiles: 2 bundles, 2 level-0 tiles and the level-1 tile.
    assert append(342) == ["pending/258", "tile/entries/001", "tile/entries/002.p/88", "tile/0/001",
                           "tile/0/002.p/88", "tile/1/000.p/2", "checkpoint"]
    # Each count is the formula's, which bench/tlog.py checks for every append at 10^5 entries.
    sizes = [(0, 1), (1, 2), (3, 251), (254, 2), (256, 2), (258, 342)]
    assert [objects_for_append(n, k) for n, k in sizes] == [4, 4, 4, 5, 4, 7]
    assert log.reader(done).root() == log.head().root


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 65534, 65535, 65536, 10**5,
                                  16_777_215, 16_777_216, 2**32 - 1, 2**40 - 2])
@pytest.mark.parametrize("count", [1, 2, 300])
def test_formula_is_new_tiles_and_logarithmic(size, count):
    """The formula equals what the append code writes (tiles.new_tiles' tiles, plus the claim,
    the bundles and the head), at sizes far beyond a test log, and stays within
    ⌈log256 n⌉ + 5 for seal-all's two-entry appends: O(log n), not O(n)."""
    def read_tile(level: int, index: int, width: int) -> list[bytes]:
        return [bytes(32)] * width  # the tiles' contents do not change which tiles are written

    new = tiles.new_tiles(size, read_tile, [bytes(32)] * count)
    bundles = ((size + count - 1) >> 8) - (size >> 8) + 1
    assert objects_for_append(size, count) == 1 + bundles + len(new) + 1
    if count <= 2:
        levels = max(1, math.ceil(math.log(size + count, 256)))
        assert objects_for_append(size, count) <= levels + 5  # +1: two entries may straddle a tile edge


def test_bench_tlog_at_a_tiny_size_is_sane(tmp_path):
    """bench/tlog.py's code path (what `python -m bench --quick` runs at 4,000 entries)."""
    result = run_tlog(tmp_path / "w", 600, lambda message: None, window=5)
    assert result["sanity"] == []
    assert result["entries"] == 600 and result["append"]["batch_appends"] == 3
    assert 4 <= result["append"]["objects_per_append"]["min"] <= result["append"]["objects_per_append"]["max"] <= 5
    assert result["audit"]["per_backup_us"] > 0 and result["audit"]["objects_read"] >= 3


def test_name_index_indexes_each_entry_once(signer, tmp_path, monkeypatch):
    """seal-all's re-checks (a finding, or an error that another sealer may explain) look the
    name up in a NameIndex: each entry is indexed once per run, however many re-checks."""
    from merkle_backup.tlog import check

    private, pub = signer
    log = Log(LocalLogStore(tmp_path / "log"), [pub], LogState(tmp_path / "s.json"))
    log.append(private, [tombstone_entry(private, f"b-{j}", "u", bytes(32), NOW, pub.key_id)
                         for j in range(50)])
    calls = []
    real = check._index
    monkeypatch.setattr(check, "_index", lambda out, i, e: (calls.append(i), real(out, i, e)))
    index = check.NameIndex(log)
    for j in range(50):
        logged = index.fresh(f"b-{j}")
        assert logged is not None and logged.last is not None and logged.last[0] == j
    assert calls == list(range(50))
    log.append(private, [tombstone_entry(private, "b-7", "u", bytes(32), NOW, pub.key_id)])
    again = index.fresh("b-7")
    assert again is not None and again.last is not None and again.last[0] == 50
    assert calls == list(range(51))
