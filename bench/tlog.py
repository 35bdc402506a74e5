"""The transparency-log benchmark (issue 13): a log of 10^5 entries, built one append at a time
as ``seal-all --log`` builds it, then audited.

    python -m bench --tlog-only [--tlog-entries 100000]      (python -m bench runs it too)

* **append**: ``backups`` appends of two entries each (a seal entry and its expiry entry, what
  seal-all appends per backup), each through ``Log.append`` on a local folder: read and verify
  the head, check it against the sealer's state, claim, write the bundle and tiles, swap the head,
  save the state. Measured per append: wall time, objects written and bytes written. The object
  count is deterministic (``objects_for_append``) and checked for every append: O(log n) objects,
  never a rewrite; the time of the last window of appends is compared with the first's.
* **audit**: ``audit --log``'s own work on that log, cold (a new process's view: no cache, no
  state): read and verify the head, read every entry bundle, check every entry's signature,
  recompute the root, index the names, judge each logged backup (here all absent from the
  bucket and expired: one row each). Reported per logged backup.

Files are written under ``work`` (the bench's results folder, so the disk it is on); the
numbers are the log code's cost, with each write's fsync.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

WINDOW = 500  # single appends timed at the start and at the end
BATCH = 256   # entries per append while growing the log in between
CREATED = datetime(2026, 11, 1, tzinfo=timezone.utc)


class CountingStore:
    """A LocalLogStore that counts the objects (and bytes) written and the objects read."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.written: list[str] = []
        self.bytes_written = 0
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get(self, name: str) -> bytes | None:
        self.reads += 1
        return self.inner.get(name)  # type: ignore[no-any-return]

    def create(self, name: str, data: bytes) -> bool:
        written = self.inner.create(name, data)
        if written:
            self.written.append(name)
            self.bytes_written += len(data)
        return bool(written)

    def put(self, name: str, data: bytes) -> None:
        self.inner.put(name, data)
        self.written.append(name)
        self.bytes_written += len(data)

    def read_head(self) -> tuple[bytes | None, Any]:
        self.reads += 1
        return self.inner.read_head()  # type: ignore[no-any-return]

    def swap_head(self, token: Any, data: bytes) -> None:
        self.inner.swap_head(token, data)
        self.written.append("checkpoint")
        self.bytes_written += len(data)


def objects_for_append(size: int, count: int) -> int:
    """Objects one append of ``count`` entries to a log of ``size`` writes (docs/format.md
    §12.4): the claim, each entry bundle it touches, each hash tile ``tiles.new_tiles`` makes,
    the head. At most ⌈log256 n⌉ + 5 for one or two entries (two bundles and two level-0
    tiles when they straddle a tile edge)."""
    from merkle_backup.tlog.tiles import TILE_HEIGHT

    new = size + count
    bundles = ((new - 1) >> TILE_HEIGHT) - (size >> TILE_HEIGHT) + 1
    tiles = 0
    old_nodes, new_nodes, level = size, new, 0
    while new_nodes > old_nodes:  # a level gains nodes: each tile it touches is written
        tiles += ((new_nodes - 1) >> TILE_HEIGHT) - (old_nodes >> TILE_HEIGHT) + 1
        level += 1
        old_nodes, new_nodes = size >> (TILE_HEIGHT * level), new >> (TILE_HEIGHT * level)
    return 1 + bundles + tiles + 1


def _entries(private: Any, key_id: bytes, pub_raw: bytes, i: int) -> list[bytes]:
    from merkle_backup.core.checkpoint import Checkpoint
    from merkle_backup.tlog.entries import expiry_entry, seal_entry

    name, uid = f"nightly-{i:06d}", f"00000000-0000-4000-8000-{i:012d}"
    root = i.to_bytes(32, "big")
    cp = Checkpoint(name, uid, 330, root, bytes(32), 12345, CREATED + timedelta(minutes=i), key_id)
    body = cp.body()
    return [seal_entry(body, private.sign(body), pub_raw),
            expiry_entry(private, name, uid, root, CREATED + timedelta(days=1), key_id)]


def run_tlog(work: Path, entries: int, log: Callable[[str], None], window: int = WINDOW
             ) -> dict[str, Any]:
    """A log of ``entries`` entries (an even number): ``window`` single appends of one backup
    (2 entries) on the empty log, timed; appends of ``BATCH`` entries up to ``entries`` minus
    ``window`` backups; ``window`` single appends again at the end, timed. Every append's
    object count is checked against ``objects_for_append``."""
    from merkle_backup.fleet.sweep import AuditReport
    from merkle_backup.signing import generate_keypair, load_private_key, public_key_of
    from merkle_backup.storage.resolve import open_location
    from merkle_backup.tlog.check import EXPIRED, audit_logged
    from merkle_backup.tlog.log import Log, LogState
    from merkle_backup.tlog.store import LocalLogStore

    backups = entries // 2
    window = max(1, min(window, backups // 2))
    work.mkdir(parents=True, exist_ok=True)
    private = load_private_key(generate_keypair(work / "log.key")[0])
    pub = public_key_of(private)
    store = CountingStore(LocalLogStore(work / "log"))
    the_log = Log(store, [pub], LogState(work / "sealer-state.json"))
    sanity: list[str] = []
    times: list[float] = []
    cpu: list[float] = []
    objects: list[int] = []
    nbytes: list[int] = []
    batches: list[float] = []
    done = 0  # backups appended

    def append(count: int) -> float:
        nonlocal done
        raws = [r for i in range(done, done + count) for r in _entries(private, pub.key_id, pub.raw, i)]
        w0, b0 = len(store.written), store.bytes_written
        t0, c0 = time.perf_counter(), time.process_time()
        at, _ = the_log.append(private, raws)
        took, cpu_took = time.perf_counter() - t0, time.process_time() - c0
        written = len(store.written) - w0
        if at != 2 * done:
            sanity.append(f"append at {2 * done} landed at {at}")
        if written != objects_for_append(2 * done, 2 * count):
            sanity.append(f"append of {2 * count} at {2 * done} wrote {written} objects, expected "
                          f"{objects_for_append(2 * done, 2 * count)}")
        if count == 1:
            times.append(took)
            cpu.append(cpu_took)
            objects.append(written)
            nbytes.append(store.bytes_written - b0)
        done += count
        return took

    log(f"tlog: {window} single appends on the empty log")
    t_start = time.perf_counter()
    for _ in range(window):
        append(1)
    log(f"tlog: growing the log to {2 * (backups - window):,} entries in appends of {BATCH}")
    while done < backups - window:
        batches.append(append(min(BATCH // 2, backups - window - done)))
    log(f"tlog: {window} single appends at {2 * done:,} entries")
    for _ in range(window):
        append(1)
    append_seconds = time.perf_counter() - t_start
    entries = 2 * backups
    first, last = times[:window], times[window:]
    cpu_first, cpu_last = cpu[:window], cpu[window:]
    # audit --log's work, cold: a new Log (no cache) with a new state.
    folder = work / "bucket"
    (folder / "backups").mkdir(parents=True, exist_ok=True)
    location = open_location(str(folder))
    reader = Log(CountingStore(LocalLogStore(work / "log")), [pub], LogState(work / "auditor-state.json"))
    base = AuditReport(location.describe(), False, (), ())
    c0 = time.process_time()
    t0 = time.perf_counter()
    head = reader.head()
    t_head = time.perf_counter() - t0
    t1 = time.perf_counter()
    reader.entries(head)
    t_entries = time.perf_counter() - t1
    t2 = time.perf_counter()
    report = audit_logged(location, [pub], reader, report=base,
                          clock=lambda: CREATED + timedelta(days=3650))
    t_judge = time.perf_counter() - t2
    audit_seconds = time.perf_counter() - t0
    audit_cpu = time.process_time() - c0
    rows = len(report.backups)
    if rows != backups or len(report.with_status(EXPIRED)) != backups:
        sanity.append(f"audit found {rows} rows, {len(report.with_status(EXPIRED))} expired; "
                      f"expected {backups}")
    if head.size != entries:
        sanity.append(f"head has {head.size} entries, expected {entries}")
    return {
        "backups": backups,
        "entries": entries,
        "append": {
            "seconds_total": round(append_seconds, 2),
            "per_append_median_s": statistics.median(times),
            "first_window_median_s": statistics.median(first),
            "last_window_median_s": statistics.median(last),
            "last_vs_first": statistics.median(last) / statistics.median(first),
            "cpu_first_window_median_s": statistics.median(cpu_first),
            "cpu_last_window_median_s": statistics.median(cpu_last),
            "cpu_last_vs_first": statistics.median(cpu_last) / max(statistics.median(cpu_first), 1e-9),
            "window": window,
            "first_window_at": 0,
            "last_window_at": 2 * (backups - window),
            "batch_appends": len(batches),
            "objects_per_append": {"min": min(objects), "max": max(objects),
                                   "mean": statistics.fmean(objects),
                                   "last": objects[-1]},
            "bytes_per_append_mean": statistics.fmean(nbytes),
            "bytes_per_append_max": max(nbytes),
            "log_objects": sum(1 for p in (work / "log").rglob("*") if p.is_file()),
        },
        "audit": {
            "seconds": round(audit_seconds, 3),
            "head_s": round(t_head, 4),
            "read_and_verify_entries_s": round(t_entries, 3),
            "judge_s": round(t_judge, 3),
            "per_backup_us": audit_seconds / backups * 1e6,
            "cpu_seconds": round(audit_cpu, 3),
            "cpu_per_backup_us": audit_cpu / backups * 1e6,
            "objects_read": reader.store.reads,
        },
        "sanity": sanity,
    }


def summary_line(r: dict[str, Any]) -> str:
    a, u = r["append"], r["audit"]
    return (f"tlog {r['entries']:,} entries: append median {a['per_append_median_s'] * 1e3:.2f} ms, "
            f"last {a['window']} vs first {a['last_vs_first']:.2f}x (CPU "
            f"{a['cpu_first_window_median_s'] * 1e3:.2f} -> {a['cpu_last_window_median_s'] * 1e3:.2f} ms, "
            f"{a['cpu_last_vs_first']:.2f}x), objects per append "
            f"{a['objects_per_append']['min']}-{a['objects_per_append']['max']} "
            f"(mean {a['objects_per_append']['mean']:.2f}), {a['bytes_per_append_mean']:.0f} B; "
            f"audit --log {u['seconds']:.2f} s = {u['per_backup_us']:.0f} us per backup "
            f"(CPU {u['cpu_per_backup_us']:.0f} us) "
            f"({u['objects_read']} objects read)")
