"""Archives aimed at the native per-entry engine (merkle_backup/archive/_engine.c), and the
outcome of reading and sealing one, for the differential tests (tests/test_engine.py) and the
AddressSanitizer run (``python -m tests.engine_corpus SO``, started by test_engine.py).

Each archive sits on an edge of what the engine takes itself: header shapes just inside and
just outside headers.FAST_HEADER, names and prefixes at their field widths, paths inside and
outside Velero's layout (core/table.VELERO_PATH), manifests that agree, disagree or are odd,
entries whose data or header crosses a decompressed piece, runs long enough to fill the
engine's batches, and every limit. The outcome is everything a caller sees: the entries or the
error (class, message, path, limit), and a seal's bytes or its refusal.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests import tarcraft as tc

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WHEN = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
FIXTURES = Path(__file__).parent / "fixtures" / "bucket" / "backups"


def manifest(name: str, namespace: str | None = None, **extra: object) -> bytes:
    meta: dict[str, object] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return json.dumps({"kind": "X", "metadata": meta, **extra}).encode()


def item(gr: str, name: str, ns: str | None = None, *, version: str = "",
         data: bytes | None = None) -> tuple[str, bytes]:
    where = f"namespaces/{ns}/{name}.json" if ns is not None else f"cluster/{name}.json"
    path = f"resources/{gr}/{version + '/' if version else ''}{where}"
    return path, data if data is not None else manifest(name, ns)


def velero_tar(n: int, *, preferred: bool = True, seed: int = 1) -> bytes:
    """n items as Velero writes them (classic copy, then the -preferredversion copy)."""
    rnd = random.Random(seed)
    parts = [tc.entry("metadata/version", b"1.1.0\n")]
    for i in range(n):
        ns = f"ns-{i % 7}"
        name = f"obj-{i}"
        body = manifest(name, ns, pad="x" * rnd.randrange(0, 900))
        path, data = item("configmaps", name, ns, data=body)
        parts.append(tc.entry(path, data))
        if preferred:
            path, data = item("configmaps", name, ns, version="v1-preferredversion", data=body)
            parts.append(tc.entry(path, data))
    return tc.tar(*parts)


def _entries(*pairs: tuple[str, bytes]) -> list[bytes]:
    return [tc.entry(p, d) for p, d in pairs]


def crafted() -> dict[str, bytes]:
    """Named tar streams (not yet gzipped)."""
    ok = item("pods", "web", "app")
    pv = item("persistentvolumes", "pv1")
    long_name = "n" * 100  # fills the name field: no NUL
    out: dict[str, bytes] = {
        "velero-small": velero_tar(5),
        # more entries than one batch of the engine, in pieces of the inflater
        "velero-batches": velero_tar(1500, seed=2),
        "no-preferred": velero_tar(40, preferred=False),
        "cluster-and-namespace-objects": tc.tar(*_entries(
            pv, item("namespaces", "app"), item("namespaces", "app", version="v1"),
            item("namespaces", "app", version="v1-preferredversion"), ok)),
        "metadata-version-only": tc.tar(tc.entry("metadata/version", b"1\n")),
        "empty-archive": tc.tar(),
        "zero-and-block-sizes": tc.tar(*[
            tc.entry(f"resources/cm/namespaces/a/s{n}.json", manifest(f"s{n}", "a")[:0] + b"x" * n)
            for n in (0, 1, 511, 512, 513, 1024)]),
        "prefix": tc.tar(tc.entry("web.json", ok[1], prefix="resources/pods/namespaces/app")),
        "prefix-full-width": tc.tar(tc.entry(long_name, b"{}", prefix="p" * 155)),
        "name-full-width": tc.tar(tc.entry(long_name, b"{}")),
        "name-100-velero": tc.tar(tc.entry(
            "resources/cm/namespaces/app/" + "m" * 67 + ".json", manifest("m" * 67, "app"))),
        "gnu-magic": tc.tar(tc.entry(ok[0], ok[1], magic=tc.GNU)),
        "legacy-typeflag": tc.tar(tc.entry(ok[0], ok[1], typeflag=b"\x00")),
        "legacy-directory": tc.tar(tc.entry("resources/", b"", typeflag=b"\x00")),
        "directory": tc.tar(tc.header("resources/", typeflag=b"5"), *_entries(ok)),
        "symlink": tc.tar(tc.header("l", typeflag=b"2", linkname=b"/etc"), *_entries(ok)),
        "unknown-type": tc.tar(tc.entry("resources/x.json", b"1", typeflag=b"Z")),
        "dot-segment": tc.tar(*_entries(ok, ("resources/./x.json", b"{}"))),
        "dotdot-segment": tc.tar(*_entries(("resources/../x.json", b"{}"))),
        "dotdot-name": tc.tar(*_entries(("..", b"{}"))),
        "dots-ok": tc.tar(*_entries(("resources/.../x.json", b"{}"), ("a/.b/..c", b"{}"))),
        "empty-segment": tc.tar(*_entries(("resources//x.json", b"{}"))),
        "absolute": tc.tar(*_entries(("/etc/passwd", b"x"))),
        "trailing-slash": tc.tar(*_entries(("resources/x/", b"x"))),
        "not-utf8": tc.tar(tc.entry(b"resources/\xff\xfe.json", b"{}")),
        "utf8-surrogate": tc.tar(tc.entry(b"resources/\xed\xa0\x80.json", b"{}")),
        "utf8-non-ascii": tc.tar(tc.entry("resources/cm/namespaces/app/caf\u00e9.json",
                                          manifest("caf\u00e9", "app"))),
        "backslash-and-controls": tc.tar(tc.entry("resources/cm/namespaces/a/x\\y\t.json",
                                                  manifest("x\\y\t", "a"))),
        "bad-checksum": tc.tar(*_entries(ok), tc.entry("resources/x.json", b"1", chksum=1)),
        "checksum-spaces": tc.tar(tc.entry(ok[0], ok[1], fields={"chksum": b" 12345 \x00"})),
        "size-with-spaces": tc.tar(tc.entry(ok[0], ok[1], fields={
            "size": b"%11o " % len(ok[1])})),
        "size-base256": tc.tar(tc.entry(ok[0], ok[1], fields={"size": b"\x80" + bytes(11)})),
        "mode-8-digits": tc.tar(tc.entry(ok[0], ok[1], fields={"mode": b"00000755"})),
        "devmajor-digits": tc.tar(tc.entry(ok[0], ok[1], fields={
            "devmajor": b"0000000\x00", "devminor": b"0000000\x00"})),
        "devmajor-half": tc.tar(tc.entry(ok[0], ok[1], fields={"devmajor": b"0000000\x00"})),
        "star-trailer": tc.tar(tc.entry(ok[0], ok[1], fields={"pad": bytes(8) + b"tar\x00"})),
        "bad-version": tc.tar(tc.entry(ok[0], ok[1], magic=b"ustar\x0001")),
        "v7-magic": tc.tar(tc.entry(ok[0], ok[1], magic=bytes(8))),
        "pax-path": tc.tar(tc.pax_header([("path", "resources/cm/namespaces/a/" + "q" * 120
                                           + ".json")]),
                           tc.entry("short", manifest("q" * 120, "a")), *_entries(ok)),
        "pax-size": tc.tar(tc.pax_header([("size", "3")]), tc.entry(ok[0], b"abc", size=0)),
        "pax-then-end": tc.tar(tc.pax_header([("path", "x")])),
        "gnu-long-name": tc.tar(tc.gnu_long_name("resources/cm/namespaces/a/" + "g" * 110
                                                 + ".json"),
                                tc.entry("g", manifest("g" * 110, "a"), magic=tc.GNU)),
        "global-pax": tc.tar(tc.pax_header([("path", "x")], typeflag=b"g"), *_entries(ok)),
        "sparse": tc.tar(tc.entry(ok[0], b"", typeflag=b"S")),
        "truncated-data": tc.tar(*_entries(ok), end=False)[:-100],
        "truncated-header": tc.tar(*_entries(ok), end=False) + tc.header("x")[:300],
        # cut 12 bytes short of a whole clean header: the engine must not read past the end
        "truncated-header-500": tc.tar(*_entries(ok), end=False) + tc.header(ok[0])[:500],
        "truncated-in-padding": tc.tar(*_entries(ok), end=False)[:-8],
        "one-zero-block": tc.tar(*_entries(ok), end=False) + bytes(512),
        "nonzero-after-end": tc.tar(*_entries(ok)) + b"\x01",
        "duplicate-path": tc.tar(*_entries(ok, pv, ok)),
        "duplicate-differing": tc.tar(*_entries(ok, pv, (ok[0], manifest("web", "app", a=1)))),
        "preferred-differs": tc.tar(*_entries(ok, item("pods", "web", "app",
                                                       version="v1-preferredversion",
                                                       data=manifest("web", "app", b=2)))),
        "preferred-alone": tc.tar(*_entries(item("pods", "web", "app",
                                                 version="v1-preferredversion"))),
        "outside-layout": tc.tar(*_entries(ok, ("resources/pods/app/web.json", b"{}"))),
        "seven-segments": tc.tar(*_entries(("resources/a/b/namespaces/c/d/e.json", b"{}"))),
        "scope-as-version": tc.tar(*_entries(("resources/a/cluster/cluster/x.json", b"{}"),
                                             ("resources/a/namespaces/namespaces/n/x.json",
                                              b"{}"))),
        "version-named-like-scope": tc.tar(*_entries(
            item("a", "x", version="clusterX"), item("a", "y", "n", version="namespacesY"))),
        "json-only-name": tc.tar(*_entries(("resources/a/cluster/.json", b"{}"))),
        "dot-name": tc.tar(*_entries(("resources/a/cluster/.x.json", manifest(".x")))),
        "no-json-suffix": tc.tar(*_entries(("resources/a/cluster/x.yaml", b"{}"))),
        "odd-segment-chars": tc.tar(*_entries(("resources/a+b/cluster/x.json", manifest("x")),
                                              ("resources/a/cluster/x@y.json",
                                               manifest("x@y")))),
        "manifest-name-differs": tc.tar(*_entries(
            ok, item("pods", "db", "app", data=manifest("other", "app")))),
        "manifest-namespace-differs": tc.tar(*_entries(
            item("pods", "db", "app", data=manifest("db", "prod")))),
        "manifest-namespace-on-cluster": tc.tar(*_entries(
            item("nodes", "n1", data=manifest("n1", "x")))),
        "manifest-namespace-empty": tc.tar(*_entries(
            item("nodes", "n1", data=manifest("n1", "")),
            item("pods", "p", "app", data=manifest("p", "")))),
        "manifest-namespace-falsy": tc.tar(*_entries(
            item("nodes", "n1", data=b'{"metadata":{"name":"n1","namespace":0}}'),
            item("nodes", "n2", data=b'{"metadata":{"name":"n2","namespace":[]}}'))),
        "manifest-name-not-str": tc.tar(*_entries(
            item("nodes", "n1", data=b'{"metadata":{"name":1}}'))),
        "manifest-name-non-ascii": tc.tar(*_entries(
            item("nodes", "n1", data=manifest("n\u00e9")))),
        "manifest-not-json": tc.tar(*_entries(item("nodes", "n1", data=b"{nope"))),
        "manifest-not-object": tc.tar(*_entries(item("nodes", "n1", data=b"[1]"))),
        "manifest-metadata-null": tc.tar(*_entries(item("nodes", "n1", data=b'{"metadata":null}'))),
        "manifest-deep": tc.tar(*_entries(item("nodes", "n1",
                                               data=b'{"metadata":' + b"[" * 5000 + b"]" * 5000
                                               + b"}"))),
        "manifest-bad-utf8-name": tc.tar(*_entries(
            item("nodes", "n1", data=b'{"metadata":{"name":"\xff"}}'))),
        "manifest-escaped-name": tc.tar(*_entries(
            item("nodes", "n1", data=b'{"metadata":{"name":"n\\u0031"}}'))),
    }
    # An entry whose data crosses the inflater's 4 MiB pieces, between small ones.
    big = manifest("big", "app", pad="b" * (4 << 20) + "c" * 1000)
    out["crosses-pieces"] = tc.tar(*_entries(ok, item("cm", "big", "app", data=big), pv))
    return out


# Limits that the crafted archives reach (each on its own; the defaults need gigabytes).
LIMITS = {
    "default": {},
    "entries": {"max_entries": 3},
    "path": {"max_path_length": 40},
    "size": {"max_entry_size": 100},
    "total": {"max_total_size": 4000},
    "pax": {"max_pax_size": 10},
}


def gz(tar: bytes) -> bytes:
    return tc.gzip_member(tar, level=1)


def read_outcome(blob: bytes, limits: dict[str, int] | None = None,
                 as_tuples: bool = False) -> tuple[object, ...]:
    """Everything a reader's caller sees: each entry, or the error."""
    from merkle_backup.archive import ArchiveReader, Limits
    from merkle_backup.errors import ArchiveError

    reader = ArchiveReader(io.BytesIO(blob), Limits(**(limits or {})))
    try:
        if as_tuples:
            entries = list(reader.tuples())
        else:
            entries = [(e.path, e.data, e.problem) for e in reader]
    except ArchiveError as e:
        return ("error", type(e).__name__, str(e), e.path, getattr(e, "limit", None))
    return ("ok", entries, reader.archive_digest, reader.archive_size)


def seal_outcome(blob: bytes, *, force: bool = False, check: bool = True,
                 folder: Path | None = None) -> tuple[object, ...]:
    """Everything a sealer's caller sees: the seal's bytes and the result, or the refusal."""
    from merkle_backup.builder import seal_backup
    from merkle_backup.errors import Error
    from merkle_backup.storage.local import LocalBackup

    with tempfile.TemporaryDirectory() as tmp:
        if folder is None:
            path = Path(tmp) / "backup.tar.gz"
            path.write_bytes(blob)
            source = LocalBackup(path)
        else:  # a copy: the seal is written into the folder
            copy = Path(tmp) / "backups" / folder.name
            shutil.copytree(folder, copy)
            source = LocalBackup(copy)
        try:
            result = seal_backup(source, KEY, created_at=WHEN, force=force,
                                 check_manifests=check, replace=True)
        except Error as e:
            return ("error", type(e).__name__, str(e), getattr(e, "path", None))
        sealed = source.seal_path.read_bytes()
        return ("ok", sealed, result.leaf_count, result.entries,
                [(i.path, i.problem) for i in result.inconsistencies])


def verify_outcome(sealed: bytes, blob: bytes) -> tuple[object, ...]:
    """Everything a verifier's caller sees when ``blob`` stands where the archive ``sealed``
    was sealed (forced, so any archive seals): the whole report, or the error. A changed
    archive takes the record-by-record table pass and the entry-by-entry pass."""
    from merkle_backup.builder import seal_backup
    from merkle_backup.errors import Error
    from merkle_backup.signing import public_key_of
    from merkle_backup.storage.local import LocalBackup
    from merkle_backup.verifier import verify_backup

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "backup.tar.gz"
        path.write_bytes(sealed)
        source = LocalBackup(path)
        try:
            seal_backup(source, KEY, created_at=WHEN, force=True, replace=True)
        except Error as e:
            return ("not sealed", type(e).__name__, str(e))
        path.write_bytes(blob)
        try:
            report = verify_backup(LocalBackup(path), [public_key_of(KEY)])
        except Error as e:
            return ("error", type(e).__name__, str(e))
        return ("ok", json.dumps(report.to_json(), sort_keys=True).replace(tmp, "TMP"))


def table_outcome(records: list[bytes]) -> tuple[object, ...]:
    """trust.open_table over a validly signed seal that holds ``records``, whatever they are,
    as a whole verification of a changed archive runs it (record by record): the leaf table,
    scope, bucket objects and findings it returns, or the error."""
    import dataclasses

    import blake3

    from merkle_backup import trust
    from merkle_backup.archive import engine
    from merkle_backup.core import tree
    from merkle_backup.core.checkpoint import Checkpoint
    from merkle_backup.errors import Error
    from merkle_backup.formats.seal import encode_seal_head, leaf_frame
    from merkle_backup.signing import public_key_of, sign

    root = tree.RootBuilder()
    for record in records:
        root.add_unchecked(blake3.blake3(tree.LEAF_PREFIX + record).digest())
    section = b"".join(leaf_frame(len(r)) + r for r in records)
    checkpoint = Checkpoint(backup="b", uid="-", tree_size=len(records), root=root.root(),
                            archive_digest=bytes(32), archive_size=0, created=WHEN,
                            key_id=public_key_of(KEY).key_id,
                            leaves_digest=blake3.blake3(section).digest())
    body = checkpoint.body()
    f = io.BytesIO(encode_seal_head(body, sign(KEY, body), len(records)) + section)
    try:
        seal = trust.open_table(f, trust.open_signed(f, [public_key_of(KEY)]),
                                native=engine.native)
    except Error as e:
        return ("error", type(e).__name__, str(e))
    leaves = seal.leaves
    return ("ok", [leaves.items[i] for i in range(len(leaves))], bytes(seal.in_scope),
            seal.bucket, sorted(seal.namespaces), sorted(seal.resources),
            [dataclasses.astuple(c) for c in seal.copies])  # type: ignore[call-overload]


def record_mutations(blob: bytes, count: int, seed: int) -> Iterator[list[bytes]]:
    """The records of the seal of ``blob``, then ``count`` deterministic mutations of them (a
    byte flipped or set, a record cut short, grown, repeated or two swapped): the record
    tables of the AddressSanitizer run."""
    from merkle_backup.builder import seal_backup
    from merkle_backup.formats.seal import read_leaf_list, read_seal_head
    from merkle_backup.storage.local import LocalBackup

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "backup.tar.gz"
        path.write_bytes(blob)
        source = LocalBackup(path)
        seal_backup(source, KEY, created_at=WHEN, force=True, replace=True)
        with open(source.seal_path, "rb") as f:
            records = read_leaf_list(f, read_seal_head(f))
    yield list(records)
    rnd = random.Random(seed)
    for _ in range(count):
        table = list(records)
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(len(table))
            r = bytearray(table[i])
            kind = rnd.randrange(5)
            if kind == 0 and r:
                r[rnd.randrange(len(r))] ^= 1 << rnd.randrange(8)
            elif kind == 1 and r:
                r[rnd.randrange(len(r))] = rnd.choice((0, 1, 0x2F, 0x7F, 0x80, 0xFF))
            elif kind == 2:
                del r[rnd.randrange(len(r) + 1):]
            elif kind == 3:
                r += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 40)))
            else:
                j = rnd.randrange(len(table))
                table[i], table[j] = table[j], table[i]
                continue
            table[i] = bytes(r)
        yield table


def mutations(tar: bytes, count: int, seed: int) -> Iterator[bytes]:
    """Deterministic header-aimed mutations of a tar stream, half with the checksums fixed
    (so they reach the field checks): the corpus of the AddressSanitizer run."""
    rnd = random.Random(seed)
    starts = [i for i in range(0, len(tar) - 511, 512) if tar[i + 257 : i + 262] == b"ustar"]
    for _ in range(count):
        t = bytearray(tar)
        for _ in range(rnd.randint(1, 4)):
            if rnd.random() < 0.8 and starts:
                pos = rnd.choice(starts) + rnd.randrange(512)
            else:
                pos = rnd.randrange(len(t))
            kind = rnd.randrange(4)
            if kind == 0:
                t[pos] = rnd.choice((0, 0x20, 0x2E, 0x2F, 0x30, 0x37, 0x38, 0x80, 0xFF))
            elif kind == 1:
                t[pos] ^= 1 << rnd.randrange(8)
            elif kind == 2:
                del t[pos : pos + rnd.randint(1, 600)]
            else:
                t[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        if rnd.random() < 0.5:
            for s in starts:
                if s + 512 <= len(t) and t[s + 257 : s + 262] == b"ustar":
                    t[s + 148 : s + 156] = b"%06o\x00 " % (tc.checksum(bytes(t[s : s + 512]))
                                                           & 0o777777)
        yield bytes(t)


def fixture_tarballs() -> list[Path]:
    return sorted(FIXTURES.glob("*/*.tar.gz"))


def _asan_main(so_path: str, count: int) -> None:
    """Load the engine built at so_path (with AddressSanitizer) in place of the installed one,
    then read and seal the whole corpus and ``count`` mutations through it."""
    import importlib.util

    name = "merkle_backup.archive._engine"
    spec = importlib.util.spec_from_file_location(name, so_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    from merkle_backup.archive import engine

    assert engine.native is module, "the sanitized engine did not load"
    tars = crafted()
    n = 0
    for path in fixture_tarballs():
        read_outcome(path.read_bytes())
        seal_outcome(b"", folder=path.parent)
        n += 1
    for name, tar in tars.items():
        big = name in ("crosses-pieces", "velero-batches")  # every limit only on the small ones
        for limits in [{}] if big else LIMITS.values():
            read_outcome(gz(tar), limits)
        seal_outcome(gz(tar), force=True)
        n += 1
    base = tars["velero-small"] + b""
    for i, t in enumerate(mutations(base, count, seed=14)):
        read_outcome(gz(t), as_tuples=bool(i & 1))
        if i % 8 == 0:
            seal_outcome(gz(t), force=True)
        if i % 8 == 4:  # the verifier's passes over a changed archive and its seal's records
            verify_outcome(gz(base), gz(t))
        n += 1
    for records in record_mutations(gz(tars["velero-small"]), count // 4, seed=23):
        table_outcome(records)  # the verifier's native record pass on hostile records
        n += 1
    print(f"asan run: {n} archives and record tables")


if __name__ == "__main__":
    _asan_main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
