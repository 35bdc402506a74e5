"""The native per-entry engine (merkle_backup/archive/_engine.c) against the pure-Python path,
the reference it is a fast path of: on every archive of tests/engine_corpus.py, the Go-written
fixtures and hypothesis mutations, both paths give the same entries or the same error (class,
message, path, limit), and seal byte-identical files or refuse with the same message. Then the
build: the fallback to the pure path when the extension cannot be built or is switched off, and
the engine built with AddressSanitizer and UndefinedBehaviorSanitizer running the corpus and
1,000 mutations (docs/threat-model.md, the archive reader). The verifier's native passes (the
entry pass over a changed archive and the seal's record pass, issue 23) are compared the same
way: same report, or same error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merkle_backup.archive import engine
from tests import engine_corpus as corpus
from tests import tarcraft as tc
from tests.mutate import mutate

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")

needs_native = pytest.mark.skipif(
    engine.native is None, reason="the native engine is not built here (no C compiler, or "
    "MERKLE_BACKUP_PURE=1)")


def both(run: Callable[[], T]) -> tuple[T, T]:
    """run() on the native engine, then on the pure path."""
    native = engine.native
    assert native is not None
    first = run()
    engine.native = None
    try:
        second = run()
    finally:
        engine.native = native
    return first, second


CRAFTED = corpus.crafted()


@needs_native
@pytest.mark.parametrize("limits", list(corpus.LIMITS), ids=str)
@pytest.mark.parametrize("name", list(CRAFTED), ids=str)
def test_reader_agrees_on_crafted_archives(name: str, limits: str) -> None:
    blob = corpus.gz(CRAFTED[name])
    native, pure = both(lambda: corpus.read_outcome(blob, corpus.LIMITS[limits]))
    assert native == pure
    native, pure = both(lambda: corpus.read_outcome(blob, corpus.LIMITS[limits], as_tuples=True))
    assert native == pure


@needs_native
def test_the_engine_takes_the_common_entries_itself() -> None:
    """Not vacuous: on Velero-shaped archives the engine, not the Python loop, reads the
    entries and seals them (the Python loop then sees only metadata/version)."""
    taken: list[int] = []
    native = engine.native
    assert native is not None

    class Counting:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.walker = native.Walker(*args, **kwargs)
            self.leaves = kwargs.get("leaves")

        def entries(self, *args: object) -> object:
            done, off, count = self.walker.entries(*args)
            taken.append(len(done))
            return done, off, count

        def seal(self, *args: object) -> object:
            assert isinstance(self.leaves, list)
            before = len(self.leaves)
            off, count = self.walker.seal(*args)
            taken.append(len(self.leaves) - before)
            return off, count

    class Module:
        Walker = Counting
        write_records = native.write_records
        take_equal = native.take_equal

    engine.native = Module  # type: ignore[assignment]
    try:
        blob = corpus.gz(CRAFTED["velero-batches"])
        assert corpus.read_outcome(blob)[0] == "ok"
        assert sum(taken) == 3000
        taken.clear()
        assert corpus.seal_outcome(blob)[0] == "ok"
        assert sum(taken) == 3000
    finally:
        engine.native = native


@needs_native
@pytest.mark.parametrize("name", list(CRAFTED), ids=str)
def test_seal_agrees_on_crafted_archives(name: str) -> None:
    blob = corpus.gz(CRAFTED[name])
    for force, check in ((False, True), (True, True), (False, False)):
        native, pure = both(lambda f=force, c=check: corpus.seal_outcome(blob, force=f, check=c))
        assert native == pure, (force, check)


@needs_native
@pytest.mark.parametrize("path", corpus.fixture_tarballs(), ids=lambda p: p.parent.name)
def test_go_written_fixtures_read_and_seal_identically(path: Path) -> None:
    native, pure = both(lambda: corpus.read_outcome(path.read_bytes()))
    assert native == pure and native[0] == "ok"
    native, pure = both(lambda: corpus.seal_outcome(b"", folder=path.parent))
    assert native == pure and native[0] == "ok"


MUTATE = settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SMALL = CRAFTED["velero-small"] + CRAFTED["manifest-name-differs"][:-1024]


@needs_native
@MUTATE
@given(data=st.data(), fix=st.booleans())
def test_mutated_tar_streams_read_and_seal_identically(data: st.DataObject, fix: bool) -> None:
    tar = mutate(SMALL, data, most=3)
    if fix:  # repaired checksums: the mutation reaches the field and path checks
        tar = corpus_fix(tar)
    blob = corpus.gz(tar)
    native, pure = both(lambda: corpus.read_outcome(blob))
    assert native == pure
    native, pure = both(lambda: corpus.seal_outcome(blob, force=True))
    assert native == pure


def corpus_fix(tar: bytes) -> bytes:
    t = bytearray(tar)
    for s in range(0, len(t) - 511, 512):
        if t[s + 257 : s + 262] == b"ustar":
            t[s + 148 : s + 156] = b"%06o\x00 " % (tc.checksum(bytes(t[s : s + 512])) & 0o777777)
    return bytes(t)


@needs_native
@MUTATE
@given(data=st.data())
def test_mutated_gzip_files_read_identically(data: st.DataObject) -> None:
    blob = mutate(corpus.gz(SMALL), data, most=2)
    native, pure = both(lambda: corpus.read_outcome(blob))
    assert native == pure


# -- build and fallback -------------------------------------------------------------------------


def test_native_engine_is_built_where_a_compiler_is() -> None:
    """CI has gcc and the Python headers: the differential tests above must not all skip."""
    if os.environ.get("MERKLE_BACKUP_PURE", "") not in ("", "0"):
        pytest.skip("MERKLE_BACKUP_PURE is set")
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler here")
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        pytest.skip("no Python headers here")
    assert engine.ENGINE == "native"


def _engine_in_subprocess(env: dict[str, str], path: Path = ROOT) -> str:
    code = ("from merkle_backup.archive import ENGINE; from merkle_backup.builder import "
            "seal_backup; print(ENGINE)")
    done = subprocess.run([sys.executable, "-c", code], cwd=path, env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_merkle_backup_pure_forces_the_pure_path() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MERKLE_BACKUP_PURE"}
    assert _engine_in_subprocess({**env, "MERKLE_BACKUP_PURE": "1"}) == "pure"
    assert _engine_in_subprocess({**env, "MERKLE_BACKUP_PURE": "0"}) == engine.ENGINE


def test_a_failed_build_still_installs_and_runs_the_pure_path(tmp_path: Path) -> None:
    """setup.py with a compiler that always fails (CC=false): the build succeeds without the
    extension, and the built package seals on the pure path."""
    env = {**os.environ, "CC": "false", "LDSHARED": "false"}
    env.pop("MERKLE_BACKUP_PURE", None)
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build", "--build-base", str(tmp_path / "b"),
         "--build-lib", str(tmp_path / "lib")],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lib = tmp_path / "lib"
    assert (lib / "merkle_backup" / "archive" / "reader.py").exists()
    assert not list(lib.glob("merkle_backup/archive/_engine*.so"))
    env = {**env, "PYTHONPATH": str(lib)}
    assert _engine_in_subprocess(env, lib) == "pure"
    shutil.rmtree(ROOT / "build", ignore_errors=True)


# -- AddressSanitizer -------------------------------------------------------------------------


def _sanitizer_runtime() -> str | None:
    libs = []
    for lib in ("libasan.so", "libubsan.so"):
        done = subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True,
                              text=True, check=False)
        path = done.stdout.strip()
        if done.returncode != 0 or not os.path.isabs(path) or not os.path.exists(path):
            return None
        libs.append(path)
    return " ".join(libs)


@pytest.fixture(scope="module")
def asan_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the engine with AddressSanitizer")
    runtime = _sanitizer_runtime()
    if runtime is None:
        pytest.skip("gcc has no libasan/libubsan runtime here")
    out = tmp_path_factory.mktemp("asan") / "_engine_asan.so"
    include = sysconfig.get_paths()["include"]
    done = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-g", "-std=c11", "-Wall", "-Wextra", "-Werror",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
         f"-I{include}", str(ROOT / "merkle_backup/archive/_engine.c"), "-o", str(out)],
        capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    yield out, runtime


def test_engine_under_address_sanitizer(asan_engine: tuple[Path, str]) -> None:
    """The crafted corpus (every limit), the fixtures and 1,000 header-aimed mutations read and
    sealed through the sanitized engine: any out-of-bounds read, use after free or undefined
    behaviour aborts the process."""
    so, runtime = asan_engine
    env = {**os.environ, "LD_PRELOAD": runtime,
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:allocator_may_return_null=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    env.pop("MERKLE_BACKUP_PURE", None)
    done = subprocess.run([sys.executable, "-m", "tests.engine_corpus", str(so), "1000"],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "asan run:" in done.stdout and "record tables" in done.stdout


# -- the sorted table: records, copies, root ---------------------------------------------------

def _records_outcome(leaves: list[bytes]) -> tuple[object, ...]:
    """builder._write_records on a copy of ``leaves``: the framed records, root and findings,
    or the refusal."""
    import dataclasses
    import io

    from merkle_backup.builder import _write_records
    from merkle_backup.core.checkpoint import Checkpoint
    from merkle_backup.errors import ArchiveError

    checkpoint = Checkpoint(backup="b", uid="-", tree_size=len(leaves), root=bytes(32),
                            archive_digest=bytes(32), archive_size=0, created=corpus.WHEN,
                            key_id=bytes(32))
    out = io.BytesIO()
    found: list[object] = []
    try:
        done, count = _write_records(list(leaves), checkpoint, found, True, out)  # type: ignore[arg-type]
    except ArchiveError as e:
        return ("error", str(e), e.path)
    return ("ok", out.getvalue(), dataclasses.astuple(done), count,
            [dataclasses.astuple(f) for f in found])  # type: ignore[call-overload]


SEGMENT = st.sampled_from(["a", "b", "app", "v1", "v1-preferredversion", "cluster", "namespaces",
                           "x.y", "caf\u00e9", "n" * 300, "q" * 70_000])


@st.composite
def leaf_tables(draw: st.DrawFn) -> list[bytes]:
    from merkle_backup.core import table
    from merkle_backup.core.keys import PathError

    leaves = []
    for _ in range(draw(st.integers(0, 12))):
        gr, ns, name = draw(SEGMENT), draw(SEGMENT), draw(SEGMENT)
        ver = draw(st.sampled_from(["", "v1/", "v1-preferredversion/", "v2-preferredversion/"]))
        where = draw(st.sampled_from([f"cluster/{name}", f"namespaces/{ns}/{name}"]))
        path = draw(st.sampled_from([f"resources/{gr}/{ver}{where}.json", "metadata/version"]))
        body = draw(st.sampled_from([b"", b"1", b"2"]))
        try:
            leaf, _ = table.tar_leaf_and_key(path, len(body), bytes(32) if body == b"" else
                                             corpus.KEY.sign(body)[:32])
        except (PathError, ValueError):
            continue
        leaves.append(leaf)
    return leaves


@needs_native
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(leaves=leaf_tables())
def test_records_copies_and_root_agree(leaves: list[bytes]) -> None:
    """write_records against the Python loop: compact and whole records (paths of 300 and
    70,000 bytes, non-ASCII), duplicates, classic and -preferredversion copies alike or not."""
    native, pure = both(lambda: _records_outcome(leaves))
    assert native == pure


# -- the verifier: a changed archive, entry by entry, and the seal's records (issue 23) --------

@needs_native
@pytest.mark.parametrize("name", list(CRAFTED), ids=str)
def test_verify_agrees_on_crafted_archives(name: str) -> None:
    """Each crafted archive verified against the seal of a Velero-shaped one and the other way
    round: every failure (modified, missing, unexpected, duplicate, malformed), warning and
    note the same on both paths."""
    blob = corpus.gz(CRAFTED[name])
    base = corpus.gz(CRAFTED["velero-small"])
    for sealed, checked in ((base, blob), (blob, base), (blob, blob + b"")):
        native, pure = both(lambda a=sealed, b=checked: corpus.verify_outcome(a, b))
        assert native == pure


@needs_native
def test_verify_of_a_changed_archive_takes_the_native_passes() -> None:
    """Not vacuous: a changed Velero-shaped archive is checked by the engine's entry pass
    and the native record pass, and the failures are the expected ones."""
    tar = bytearray(CRAFTED["velero-batches"])
    at = tar.index(b'"pad": "x') + 8
    tar[at] ^= 0x01  # one byte of one classic copy: that entry is modified, the rest verify
    calls: list[str] = []
    native = engine.native
    assert native is not None

    class Pass:
        def __init__(self, *args: object) -> None:
            self.inner = native.LeafPass(*args)

        def records(self, *args: object) -> object:
            calls.append("records")
            return self.inner.records(*args)

        def root(self) -> object:
            return self.inner.root()

    class Module:
        Walker = native.Walker
        write_records = native.write_records
        LeafPass = Pass
        table_order = native.table_order
        take_equal = native.take_equal

    engine.native = Module  # type: ignore[assignment]
    try:
        outcome = corpus.verify_outcome(corpus.gz(CRAFTED["velero-batches"]), corpus.gz(bytes(tar)))
    finally:
        engine.native = native
    assert calls and outcome[0] == "ok"
    report = json.loads(str(outcome[1]))
    assert [f["problem"] for f in report["failures"]] == ["modified"]
    assert report["checked"] > 3000


@st.composite
def record_tables(draw: st.DrawFn) -> list[bytes]:
    """A seal's records: a valid table (compact and whole records, bucket objects, copies
    alike and not), then perhaps one change: two records swapped or repeated, one byte
    flipped, a record cut short or grown."""
    from merkle_backup.core import table
    from merkle_backup.core.keys import key_for_bucket_object
    from merkle_backup.core.leaf import LeafRecord

    leaves = draw(leaf_tables())
    for name in draw(st.lists(st.sampled_from(["velero-backup.json", "b-logs.gz", "x"]),
                              unique=True, max_size=2)):
        leaves.append(table.sortable_leaf(LeafRecord(key_for_bucket_object(name), name, 1,
                                                     bytes(32))))
    records = [table.record_of(item) for item in sorted(set(leaves))]
    change = draw(st.sampled_from(["none", "swap", "repeat", "flip", "cut", "grow"]))
    if records and change != "none":
        i = draw(st.integers(0, len(records) - 1))
        j = draw(st.integers(0, len(records) - 1))
        if change == "swap":
            records[i], records[j] = records[j], records[i]
        elif change == "repeat":
            records.insert(i, records[j])
        elif change == "flip":
            r = bytearray(records[i])
            r[draw(st.integers(0, len(r) - 1))] ^= 1 << draw(st.integers(0, 7))
            records[i] = bytes(r)
        elif change == "cut":
            records[i] = records[i][: draw(st.integers(0, len(records[i]) - 1))]
        else:
            records[i] += b"\x00"
    return records


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=record_tables())
def test_native_record_pass_agrees(records: list[bytes]) -> None:
    """The seal's record pass (LeafPass, table_order) against trust._TablePass._records: the
    same leaf table, bucket objects and findings, or the same refusal (not in key order, an
    invalid record, a root that does not match)."""
    native, pure = both(lambda: corpus.table_outcome(records))
    assert native == pure


# -- the seal written in place (issue 23) -------------------------------------------------------

class _WriteOnly:
    """A stream that can only be written (as an upload may be): write_seal's scratch-file way."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> int:
        self.data += b
        return len(b)

    def seekable(self) -> bool:
        return False


@pytest.mark.parametrize("findings", [0, 9, 10, 120])
def test_seal_written_in_place_equals_the_scratch_way(findings: int) -> None:
    """builder.write_seal into a seekable file (records after a reserved head, the head written
    last) gives the bytes of the scratch-file way, on both engines, also when forced findings
    change the head's length (9 -> 10 -> 120 inconsistencies), and the seal opens."""
    import io

    from merkle_backup import trust
    from merkle_backup.builder import write_seal
    from merkle_backup.core import table
    from merkle_backup.core.checkpoint import Checkpoint
    from merkle_backup.signing import public_key_of

    leaves = []
    for i in range(150):
        path = f"resources/configmaps/namespaces/ns-{i % 3}/cm-{i}.json"
        leaves.append(table.tar_leaf_and_key(path, 10, bytes([i]) * 32)[0])
        copy = path.replace("/namespaces/", "/v1-preferredversion/namespaces/")
        leaves.append(table.tar_leaf_and_key(copy, 10, bytes([i + (i < findings)]) * 32)[0])
    checkpoint = Checkpoint(backup="b", uid="-", tree_size=len(leaves), root=bytes(32),
                            archive_digest=bytes(32), archive_size=0, created=corpus.WHEN,
                            key_id=public_key_of(corpus.KEY).key_id)

    def seals() -> tuple[bytes, bytes]:
        in_place = io.BytesIO()
        in_place.write(b"before")  # written from where the file stands
        done = write_seal(list(leaves), checkpoint, corpus.KEY, [], True, in_place)
        plain = _WriteOnly()
        assert write_seal(list(leaves), checkpoint, corpus.KEY, [], True, plain) == done  # type: ignore[arg-type]
        assert done.inconsistent == findings
        return in_place.getvalue()[len(b"before"):], bytes(plain.data)

    native, pure = both(seals) if engine.native is not None else (seals(), seals())
    assert native[0] == native[1] == pure[0] == pure[1]
    seal = trust.open_seal(native[0], [public_key_of(corpus.KEY)])
    assert seal.checkpoint.inconsistent == findings and len(seal.leaves) == len(leaves)


@needs_native
def test_native_record_pass_agrees_on_mutated_seals() -> None:
    """The records of a real seal, and 200 mutations of them (the AddressSanitizer run's
    record tables): the same outcome on both paths, and not all of them refused."""
    outcomes = []
    for records in corpus.record_mutations(corpus.gz(CRAFTED["velero-small"]), 200, seed=23):
        native, pure = both(lambda r=records: corpus.table_outcome(r))
        assert native == pure
        outcomes.append(native[0])
    assert outcomes[0] == "ok" and "error" in outcomes


@needs_native
@pytest.mark.parametrize("order", ["modified, then as sealed", "as sealed, then modified",
                                   "as sealed twice", "modified twice", "unsealed between"])
def test_verify_repeated_entries_in_stream_order(order: str) -> None:
    """Which copy of a repeated entry is `modified` and which `duplicate` follows the stream's
    order (restore keeps the last): the engine's equal-leaf fast path (take_equal) stops at the
    first entry it does not take, so both paths name the same ones."""
    a = corpus.item("configmaps", "a", "ns")
    b = corpus.item("configmaps", "b", "ns")
    changed = (a[0], corpus.manifest("a", "ns", extra="x"))
    extra = corpus.item("configmaps", "new", "ns")
    entries = {"modified, then as sealed": [changed, a, b],
               "as sealed, then modified": [a, changed, b],
               "as sealed twice": [a, a, b],
               "modified twice": [changed, changed, b],
               "unsealed between": [a, extra, a, b]}[order]
    sealed = corpus.gz(tc.tar(*[tc.entry(p, d) for p, d in (a, b)]))
    checked = corpus.gz(tc.tar(*[tc.entry(p, d) for p, d in entries]))
    native, pure = both(lambda: corpus.verify_outcome(sealed, checked))
    assert native == pure and native[0] == "ok"
    problems = [f["problem"] for f in json.loads(str(native[1]))["failures"]]
    assert "duplicate" in problems or order == "modified twice" and problems
