"""A seeded, deterministic generator of Velero-layout backups, cached on disk.

``generate(items, mix)`` writes, under ``bench/cache/<mix>-<items>/``:

* ``unchanged/backups/<name>/``: ``<name>.tar.gz``, ``velero-backup.json`` (phase Completed) and
  the small gzipped sidecars Velero uploads beside it;
* ``changed/backups/<name>/``: the same folder, but one byte of one entry's data is flipped (an
  entry of the namespace the benchmark verifies) and the tarball re-gzipped;
* ``info.json``: what was generated (counts, sizes, the namespace, a resource, the flipped entry).

The tarball is written the way Velero's backupper writes it (../shared/VELERO.md §1, Go
``archive/tar`` + ``compress/gzip``): every item twice (the classic copy and the
``<version>-preferredversion`` copy, same bytes, one after the other), ``metadata/version`` first,
the Namespace object of every namespace, cluster-scoped items; regular-file headers in USTAR
format with mode 0755, uid/gid 0, empty uname/gname; a name over 100 bytes split into prefix +
name at a ``/`` when Go can, else a PAX ``x`` header with a ``path`` record only (named
``<dir>/PaxHeaders.0/<file>``, as Go names it); two zero blocks at the end; one gzip member with
Go's gzip header, deflate level 6 (zlib, Go's default level).

One difference from Go, for speed: the deflate stream is compressed in independent 4 MiB segments
on two threads, each primed with the previous 32 KiB (as pigz does) and ended by a sync flush.
It is still one gzip member of level-6 deflate that any gzip reader inflates in one pass; only
the compressed bytes differ from Go's (by well under 1% in size). The segments also let the
changed archive be written by re-compressing a single segment.

Item sizes: *realistic* draws (kind, size) rows from ``data/sizes.tsv`` (476 real objects) and
models what the API server adds (managedFields repeat the field set, plus metadata and status):
stored = 2 x authored + 600 bytes, so mostly 1-20 KB, ~3% between 80 KB and 1 MB. *small* draws
the kinds the same way but sizes uniformly in 768-1280 bytes. Every item is valid JSON whose
``metadata`` matches its path (seal checks it): a unique head (name, namespace, uid,
resourceVersion), then real objects of ``data/corpus.json.gz`` from a seeded start, then real
manifest text as a string to reach the exact size; so items parse and compress like real ones.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import json
import random
import shutil
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from isal import isal_zlib

DATA = Path(__file__).parent / "data"
CACHE = Path(__file__).parent / "cache"
GENERATOR_VERSION = 4  # bump when the output changes: cached backups are then rebuilt

MIXES = ("realistic", "small")
SEED = 20261128
MTIME = 1764288000  # 2025-11-28T00:00:00Z, every entry (Velero writes the wall clock)
SEGMENT = 4 << 20
WINDOW = 32 << 10
GO_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # Go compress/gzip, no name/mtime
BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)

# The order Velero's item collector backs resources up in (pkg/backup: high-priority resources
# first, then the rest alphabetically); our kinds not listed here follow, sorted.
PRIORITY = [
    "namespaces", "persistentvolumes", "persistentvolumeclaims", "secrets", "configmaps",
    "serviceaccounts", "limitranges", "pods", "replicasets.apps",
]
APPS = [
    "api", "web", "worker", "cache", "db", "queue", "gateway", "auth", "billing", "search",
    "frontend", "backend", "scheduler", "metrics", "ingest", "notifier", "payments", "catalog",
    "checkout", "cart", "ledger", "reports", "export", "importer", "mailer", "cron", "proxy",
]
TEAMS = ["payments", "shop", "data", "platform", "ml", "infra", "risk", "growth", "core", "edge"]
ENVS = ["prod", "staging", "dev", "qa", "perf", "sandbox"]


# -- the tar layer (Go archive/tar's Writer, for regular files) ---------------------------------

def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


_ZERO8 = _octal(0, 8)
_MODE = _octal(0o755, 8)
_MTIME = _octal(MTIME, 12)
_MTIME0 = _octal(0, 12)
_USTAR = b"ustar\x0000"


def _header(name: bytes, size: int, *, prefix: bytes = b"", typeflag: bytes = b"0",
            mode: bytes = _MODE, mtime: bytes = _MTIME, dev: bytes = _ZERO8) -> bytes:
    """One header block as Go's templateV7Plus + setFormat(USTAR|PAX) writes it."""
    block = b"".join((
        name[:100].ljust(100, b"\x00"), mode, _ZERO8, _ZERO8, _octal(size, 12), mtime,
        b"        ", typeflag, bytes(100), _USTAR, bytes(64), dev, dev,
        prefix.ljust(155, b"\x00"), bytes(12),
    ))
    checksum = sum(block)  # the checksum field counted as eight spaces
    return block[:148] + b"%06o\x00 " % checksum + block[156:]


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """Go's splitUSTARPath: (prefix, name) when a long ASCII name fits the two fields."""
    length = len(name)
    if length > 156:
        length = 156
    elif name.endswith(b"/"):
        length -= 1
    i = name.rfind(b"/", 0, length)
    if i <= 0 or len(name) - i - 1 > 100 or len(name) - i - 1 == 0 or i > 155:
        return None
    return name[:i], name[i + 1:]


def _pax_record(key: bytes, value: bytes) -> bytes:
    size = len(key) + len(value) + 3
    size += len(str(size))
    record = b"%d %s=%s\n" % (size, key, value)
    if len(record) != size:
        record = b"%d %s=%s\n" % (len(record), key, value)
    return record


def tar_entry_header(path: bytes, size: int) -> bytes:
    """Header block(s) Go writes before a regular file's data (names are ASCII here)."""
    if len(path) <= 100:
        return _header(path, size)
    split = _split_ustar(path)
    if split is not None:
        return _header(split[1], size, prefix=split[0])
    directory, _, file = path.rpartition(b"/")
    pax_name = (directory + b"/PaxHeaders.0/" + file if directory else b"PaxHeaders.0/" + file)
    record = _pax_record(b"path", path)
    pax = _header(pax_name[:100].rstrip(b"/"), len(record), typeflag=b"x", mode=_ZERO8,
                  mtime=_MTIME0, dev=b"\x00" * 8)
    return pax + _pad(record) + _header(path[:100], size)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


# -- the gzip layer: one member, level-6 deflate in primed, sync-flushed segments -------------

def _compress(segment: bytes, zdict: bytes, last: bool) -> tuple[bytes, int]:
    c = zlib.compressobj(6, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, *([zdict] if zdict else []))
    out = c.compress(segment) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return out, zlib.crc32(segment)


class _TwinGzipWriter:
    """Writes one tar stream into two gzip files that differ in one flipped byte."""

    def __init__(self, unchanged: Path, changed: Path, pool: ThreadPoolExecutor) -> None:
        self._files = [open(unchanged, "wb"), open(changed, "wb")]  # noqa: SIM115 - closed by close()
        for f in self._files:
            f.write(GO_GZIP_HEADER)
        self._pool = pool
        self._parts: list[bytes] = []
        self._have = 0
        self._pending: list[Any] = []  # (future, future of the changed file or None, length)
        self._zdict = b""  # the previous segment's last 32 KiB
        self._zdict_changed = b""
        self._crc = [0, 0]
        self.total = 0
        self.flip_at: int | None = None  # absolute tar offset of the byte to flip

    def write(self, data: bytes) -> None:
        self._parts.append(data)
        self._have += len(data)
        if self._have >= SEGMENT:
            joined = b"".join(self._parts)
            cut = len(joined) - len(joined) % SEGMENT
            for start in range(0, cut, SEGMENT):
                self._segment(joined[start:start + SEGMENT], last=False)
            self._parts = [joined[cut:]] if cut < len(joined) else []
            self._have = len(joined) - cut

    def _segment(self, data: bytes, *, last: bool) -> None:
        start = self.total
        self.total += len(data)
        changed = data
        if self.flip_at is not None and start <= self.flip_at < self.total:
            flipped = bytearray(data)
            flipped[self.flip_at - start] ^= 0x01
            changed = bytes(flipped)
        future = self._pool.submit(_compress, data, self._zdict, last)
        future_changed = None
        if changed is not data or self._zdict_changed != self._zdict:
            future_changed = self._pool.submit(_compress, changed, self._zdict_changed, last)
        self._zdict = data[-WINDOW:]
        self._zdict_changed = changed[-WINDOW:]
        self._pending.append((future, future_changed, len(data)))
        while len(self._pending) > 4:
            self._drain_one()

    def _drain_one(self) -> None:
        future, future_changed, length = self._pending.pop(0)
        result = future.result()
        results = (result, future_changed.result() if future_changed is not None else result)
        for i, (out, crc) in enumerate(results):
            self._files[i].write(out)
            self._crc[i] = isal_zlib.crc32_combine(self._crc[i], crc, length)

    def close(self) -> None:
        self._segment(b"".join(self._parts), last=True)
        while self._pending:
            self._drain_one()
        for i, f in enumerate(self._files):
            f.write(struct.pack("<II", self._crc[i], self.total & 0xFFFFFFFF))
            f.close()


# -- the items --------------------------------------------------------------------------------

def _load_rows() -> list[tuple[str, str, str, bool, int]]:
    """(kind, group-resource, version, cluster-scoped, authored bytes) of each real object."""
    rows = []
    with open(DATA / "sizes.tsv") as f:
        next(f)
        for line in f:
            kind, gr, version, cluster, size, _source = line.rstrip("\n").split("\t")
            rows.append((kind, gr, version, cluster == "1", int(size)))
    return rows


def _load_corpus() -> list[bytes]:
    """The compact JSON text of each real object of data/corpus.json.gz."""
    with gzip.open(DATA / "corpus.json.gz", "rb") as f:
        return [line for line in f.read().split(b"\n") if line]


def _padding_text(corpus: list[bytes]) -> bytes:
    """Manifest text that is safe inside a JSON string: quotes, backslashes, non-ASCII removed."""
    text = b",".join(corpus).replace(b'"', b"'").replace(b"\\", b"/")
    return bytes(c for c in text if 0x20 <= c < 0x7F)


def _fill(rng_random: Any, corpus: list[bytes], pad: bytes, budget: int) -> bytes:
    """Valid JSON of exactly ``budget`` bytes (budget >= 2): real objects from the corpus, from a
    seeded start, in an array, then a string of manifest text: ``[obj,obj,...,"text"]``."""
    parts = []
    left = budget - 4  # '[' + '"' + '"' + ']'
    n = len(corpus)
    i = int(rng_random() * n)
    misses = 0
    while misses < n and left > 64:
        obj = corpus[i]
        if len(obj) + 1 <= left - 64:
            parts.append(obj)
            left -= len(obj) + 1
            misses = 0
        else:
            misses += 1
        i = (i + 1) % n
    start = int(rng_random() * (len(pad) - left - 1)) if len(pad) > left + 1 else 0
    while len(pad) < start + left:
        pad += pad
    parts.append(b'"' + pad[start:start + left] + b'"')
    return b"[" + b",".join(parts) + b"]"


def stored_size(authored: int) -> int:
    """The size the API server stores (and Velero backs up) for an authored manifest: a model,
    managedFields repeating the field set plus ~600 bytes of metadata and status, capped at
    etcd's default 1.5 MiB request limit."""
    return min(2 * authored + 600, 1536 * 1024)


def _api_version(gr: str, version: str) -> str:
    group = gr.partition(".")[2]
    return f"{group}/{version}" if group else version


def _name(rng: random.Random, i: int, kind: str) -> str:
    """A unique, realistic object name; 0.5% are long (110-253 chars: PAX headers)."""
    app = rng.choice(APPS)
    suffix = _base36(i)
    if rng.random() < 0.005:
        target = rng.randint(110, 253)
        words = [app]
        while sum(len(w) + 1 for w in words) + len(suffix) < target:
            words.append(rng.choice(APPS + TEAMS))
        return ("-".join(words) + "-")[: target - len(suffix)] + suffix
    if kind == "Pod":
        return f"{app}-{rng.getrandbits(40):010x}-{suffix}"
    if kind == "PersistentVolumeClaim":
        return f"data-{app}-{rng.randint(0, 5)}-{suffix}"
    return f"{app}-{suffix}"


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def _uid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def namespace_count(items: int) -> int:
    return max(2, round(1.5 * items ** 0.5))


def backup_name(items: int, mix: str) -> str:
    return f"bench-{mix}-{items}"


def cache_dir(items: int, mix: str, cache: Path = CACHE) -> Path:
    return cache / f"{mix}-{items}"


def cached(out: Path, want: dict) -> dict | None:
    """The info of the cached backup in ``out`` when it was generated with ``want``; else None,
    and ``out`` is cleared for a new one."""
    info_path = out / "info.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if all(info.get(k) == v for k, v in want.items()):
            return info
    if out.exists():
        shutil.rmtree(out)
    return None


def generate(items: int, mix: str, *, cache: Path = CACHE, seed: int = SEED,
             log: Any = None) -> dict:
    """Generate (or reuse from the cache) one backup of ``items`` Kubernetes objects."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}")
    out = cache_dir(items, mix, cache)
    want = {"generator_version": GENERATOR_VERSION, "items": items, "mix": mix, "seed": seed}
    info = cached(out, want)
    if info is not None:
        return info
    info_path = out / "info.json"
    import time

    started = time.perf_counter()
    name = backup_name(items, mix)
    folders = {v: out / v / "backups" / name for v in ("unchanged", "changed")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    rng = random.Random(f"{seed}-{mix}-{items}")
    rows = _load_rows()
    corpus = _load_corpus()

    def size_of(authored: int) -> int:
        return stored_size(authored) if mix == "realistic" else rng.randint(768, 1280)

    biggest = max(stored_size(r[4]) for r in rows) + 1024
    pad_text = _padding_text(corpus)
    pad_text = pad_text * (1 + (biggest + len(pad_text)) // len(pad_text))

    # 1. The objects: Namespace objects, then items drawn from the real rows.
    n_ns = min(namespace_count(items), max(1, items // 2))
    namespaces = [f"{rng.choice(TEAMS)}-{rng.choice(ENVS)}-{_base36(i)}" for i in range(n_ns)]
    weights = [1 / (i + 1) ** 0.8 for i in range(n_ns)]  # a few big namespaces, many small
    cumulative = []
    total_w = 0.0
    for w in weights:
        total_w += w
        cumulative.append(total_w)
    objects: list[tuple[int, int, int, str, int]] = []  # (priority, ns, row, name, size)
    priority = {gr: i for i, gr in enumerate(PRIORITY)}
    others = sorted({r[1] for r in rows} - set(PRIORITY))
    priority.update({gr: len(PRIORITY) + i for i, gr in enumerate(others)})
    ns_row = len(rows)
    rows.append(("Namespace", "namespaces", "v1", True, 120))
    for ns in range(n_ns):
        objects.append((priority["namespaces"], ns, ns_row, namespaces[ns], size_of(120)))
    for i in range(items - n_ns):
        r = rng.randrange(ns_row)
        kind, gr, _, cluster, authored = rows[r]
        ns = -1 if cluster else bisect.bisect_left(cumulative, rng.random() * total_w)
        ns = min(ns, n_ns - 1)
        objects.append((priority[gr], ns, r, _name(rng, i, kind), size_of(authored)))
    objects.sort(key=lambda o: (o[0], o[1]))  # by resource type, then namespace (stable)

    # 2. The tarball (both variants), written as Velero writes it.
    verify_ns = 0
    flip_path = resource_path = None
    ns_leaves = 0
    tar_gz = {v: f / f"{name}.tar.gz" for v, f in folders.items()}
    resource_list: dict[str, list[str]] = {}
    with ThreadPoolExecutor(2) as pool:
        writer = _TwinGzipWriter(tar_gz["unchanged"], tar_gz["changed"], pool)
        version = b"1.1.0\n"
        writer.write(tar_entry_header(b"metadata/version", len(version)) + _pad(version))
        entries = 1
        randrange = rng.randrange
        random_float = rng.random
        for _, ns, r, obj_name, size in objects:
            kind, gr, ver, cluster, _ = rows[r]
            api = _api_version(gr, ver)
            if kind == "Namespace":
                where, ns_field = "cluster", b""
                obj_ns = obj_name
            elif cluster:
                where, ns_field, obj_ns = "cluster", b"", ""
            else:
                obj_ns = namespaces[ns]
                where, ns_field = f"namespaces/{obj_ns}", b'"namespace":"%s",' % obj_ns.encode()
            head = b'{"apiVersion":"%s","kind":"%s","metadata":{"name":"%s",%s"resourceVersion":"%d","uid":"%s"},"spec":{"items":' % (
                api.encode(), kind.encode(), obj_name.encode(), ns_field, randrange(10**9),
                _uid(rng).encode())
            data = head + _fill(random_float, corpus, pad_text, max(8, size - len(head) - 3)) + b"}}"
            padded = _pad(data)
            in_ns = obj_ns == namespaces[verify_ns] and (kind == "Namespace" or not cluster)
            for path in (f"resources/{gr}/{where}/{obj_name}.json",
                         f"resources/{gr}/{ver}-preferredversion/{where}/{obj_name}.json"):
                header = tar_entry_header(path.encode(), len(data))
                if in_ns:
                    ns_leaves += 1
                    if flip_path is None and kind != "Namespace":
                        flip_path = resource_path = path
                        writer.flip_at = writer.total + writer._have + len(header) + len(data) // 2
                writer.write(header + padded)
                entries += 1
            resource_list.setdefault(f"{api}/{kind}", []).append(
                f"{obj_ns}/{obj_name}" if obj_ns and kind != "Namespace" else obj_name)
        writer.write(ZERO_BLOCK + ZERO_BLOCK)
        writer.close()
        tar_bytes = writer.total

    # 3. velero-backup.json and the sidecars, the same in both folders.
    uid = _uid(rng)
    sidecars = _bucket_objects(name, uid, resource_list, entries)
    for folder in folders.values():
        for filename, data in sidecars.items():
            (folder / filename).write_bytes(data)
    info = dict(want)
    info.update(
        name=name, uid=uid, entries=entries, namespaces=n_ns,
        cluster_items=sum(1 for o in objects if o[1] < 0),
        verify_namespace=namespaces[verify_ns], namespace_leaves=ns_leaves,
        resource=resource_path, flipped=flip_path,
        tar_bytes=tar_bytes, gz_bytes=tar_gz["unchanged"].stat().st_size,
        unchanged=str(folders["unchanged"]), changed=str(folders["changed"]),
        seconds=round(time.perf_counter() - started, 2),
    )
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    if log:
        log(f"generated {name}: {entries} entries, {tar_bytes / 2**20:.0f} MiB tar, "
            f"{info['gz_bytes'] / 2**20:.0f} MiB gz in {info['seconds']} s")
    return info


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, 6, mtime=0)


def _bucket_objects(name: str, uid: str, resource_list: dict, entries: int) -> dict[str, bytes]:
    backup = {
        "kind": "Backup", "apiVersion": "velero.io/v1",
        "metadata": {"name": name, "namespace": "velero", "uid": uid,
                     "resourceVersion": "136544158", "generation": 5,
                     "creationTimestamp": "2025-11-27T23:00:00Z",
                     "labels": {"velero.io/storage-location": "default"}},
        "spec": {"metadata": {}, "ttl": "720h0m0s", "hooks": {}, "storageLocation": "default",
                 "defaultVolumesToFsBackup": False, "csiSnapshotTimeout": "10m0s",
                 "itemOperationTimeout": "4h0m0s", "snapshotMoveData": False},
        "status": {"version": 1, "formatVersion": "1.1.0", "expiration": "2025-12-27T23:00:00Z",
                   "phase": "Completed", "startTimestamp": "2025-11-27T23:00:00Z",
                   "completionTimestamp": "2025-11-28T00:00:00Z",
                   "progress": {"totalItems": entries // 2, "itemsBackedUp": entries // 2}},
    }
    listing = {k: sorted(v) for k, v in sorted(resource_list.items())}
    compact = {"separators": (",", ":")}
    log = "".join(f'time="2025-11-27T23:00:{i % 60:02d}Z" level=info msg="Backed up {i} items" '
                  f'backup=velero/{name} logSource="pkg/backup/backup.go:500"\n'
                  for i in range(0, entries // 2, max(1, entries // 200)))
    return {
        "velero-backup.json": (json.dumps(backup, indent=2) + "\n").encode(),
        f"{name}-logs.gz": _gz(log.encode()),
        f"{name}-podvolumebackups.json.gz": _gz(b"[]\n"),
        f"{name}-volumesnapshots.json.gz": _gz(b"[]\n"),
        f"{name}-itemoperations.json.gz": _gz(b"[]\n"),
        f"{name}-resource-list.json.gz": _gz((json.dumps(listing, **compact) + "\n").encode()),
        f"{name}-results.gz": _gz(b'{"errors":{},"warnings":{}}\n'),
        f"{name}-volumeinfo.json.gz": _gz(b"[]\n"),
    }


def fingerprint(path: Path) -> str:
    """SHA-256 of a file (the determinism check)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


if __name__ == "__main__":  # python -m bench.generate ITEMS MIX
    import sys

    print(json.dumps(generate(int(sys.argv[1]), sys.argv[2], log=print), indent=1))

