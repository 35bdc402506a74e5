"""Seal a backup: one pass over the tarball, a sorted leaf table, a signed checkpoint.

The steps, in order (docs/format.md §7.2):

1. Read ``velero-backup.json``; refuse a backup whose phase is not final.
2. Hash every other object in the backup's folder into a leaf.
3. Stream the tarball once through the strict reader; hash every entry into a leaf; refuse any
   entry the reader or the key grammar rejects.
4. Sort the leaves by key; refuse two entries with one key (a duplicate path).
5. Compute the Merkle root and sign the checkpoint.
6. Write the seal atomically, never over an existing one unless asked.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

import blake3

from merkle_backup.archive import ArchiveReader, Limits, engine
from merkle_backup.archive.reader import SealSink
from merkle_backup.consistency import (
    Inconsistency,
    check_manifest,
    manifest_decoder,
    needs_manifest_check,
)
from merkle_backup.core import table, tree
from merkle_backup.core.checkpoint import UNKNOWN_UID, Checkpoint
from merkle_backup.core.keys import (
    PathError,
    key_for_bucket_object,
)
from merkle_backup.core.leaf import LeafRecord, content_digest
from merkle_backup.errors import ArchiveError, CannotCheck, StorageError
from merkle_backup.formats.seal import encode_seal_head, leaf_frame
from merkle_backup.progress import phase, tarball_total
from merkle_backup.signing import SigningKey, public_key_of, sign
from merkle_backup.storage.files import temp_dir_label, temporary_file
from merkle_backup.storage.source import BackupSource
from merkle_backup.velero import BACKUP_OBJECT, parse_backup_object

# The interpreter's thread switch interval during a pass (the default is 5 ms; see bulk_pass).


@dataclass(frozen=True)
class SealResult:
    checkpoint: Checkpoint
    seal_path: str  # where it was written (a path or s3:// URL)
    seal_size: int
    leaf_count: int
    entries: int
    bucket_objects: int
    inconsistencies: list[Inconsistency]   # sealed anyway, because the user forced it


def read_backup_identity(source: BackupSource) -> tuple[str, str, bytes | None]:
    """(name, uid, velero-backup.json bytes) of a backup; uid "-" for a bare tarball."""
    data = source.read_object(BACKUP_OBJECT)
    if data is None:
        if source.object_names():
            raise CannotCheck(f"{source.describe()}: no {BACKUP_OBJECT} in the backup folder")
        return source.name, UNKNOWN_UID, None
    info = parse_backup_object(data, source.describe())
    if info.name != source.name:
        raise CannotCheck(
            f"{source.describe()}: {BACKUP_OBJECT} names backup {info.name!r}, "
            f"but the folder is {source.name!r}"
        )
    if not info.is_final:
        raise CannotCheck(
            f"backup {info.name} is in phase {info.phase or '(none)'!r}, not final "
            "(Completed, PartiallyFailed, Failed): its tarball may still be rewritten"
        )
    return info.name, info.uid, data


def hash_tarball(
    source: BackupSource,
    limits: Limits,
    progress: Callable[[int], None] | None = None,
    inconsistencies: list[Inconsistency] | None = None,
) -> tuple[list[bytes], bytes, int]:
    """Sortable leaves (core/table.py) of every tar entry of ``source``'s tarball, unsorted,
    the whole-file digest and size (``hash_tarball_stream`` on the stored tarball)."""
    with source.open_tarball() as stream:
        return hash_tarball_stream(stream, limits, progress, inconsistencies)


def hash_tarball_stream(
    stream: BinaryIO,
    limits: Limits,
    progress: Callable[[int], None] | None = None,
    inconsistencies: list[Inconsistency] | None = None,
) -> tuple[list[bytes], bytes, int]:
    """Sortable leaves (core/table.py) of every tar entry read from ``stream``, unsorted, the
    whole-file digest and size. Refuses bad entries.

    With ``inconsistencies`` given, each manifest is also checked against its path (and the
    findings appended there).

    This is the hot loop of sealing: per entry one strict reader step, one BLAKE3 of the data
    and one sortable leaf (a regex match and one string build for the paths Velero writes); the
    leaf bytes are the only thing kept per entry. On the native path the engine takes this
    step itself for every entry it is sure of (``SealSink``), and only the others reach the loop
    below.
    """
    leaves: list[bytes] = []
    append = leaves.append
    hash_content = blake3.blake3
    leaf_and_key = table.tar_leaf_and_key
    check = inconsistencies is not None
    previous, digest = b"", hash_content(b"").digest()
    reader = ArchiveReader(stream, limits, progress)
    sink = SealSink(leaves, manifest_decoder() if check else None)
    for path, data, problem in reader.tuples(sink):
        if problem is not None:
            raise ArchiveError(problem, path)
        # Velero writes each item twice, the -preferredversion copy right after the classic
        # one with the same bytes: comparing them (memcmp) is far cheaper than hashing again.
        if data != previous:
            digest = hash_content(data).digest()
            previous = data
        try:
            leaf, key = leaf_and_key(path, len(data), digest)
        except PathError as e:
            raise ArchiveError(str(e), path) from e
        append(leaf)
        # The key's fields stand in for a ResourceKey: both functions read only its
        # namespace, scope, name and version (no ResourceKey built per entry).
        if check and needs_manifest_check(key):  # type: ignore[arg-type]
            found = check_manifest(key, data)  # type: ignore[arg-type]
            if found is not None:
                inconsistencies.append(Inconsistency(path, found))  # type: ignore[union-attr]
    return leaves, reader.archive_digest, reader.archive_size


def bucket_leaf(filename: str, size: int, digest: bytes, where: str) -> bytes:
    """The sortable leaf of the bucket object ``filename`` (``size`` bytes, BLAKE3 ``digest``)
    in the backup folder ``where`` (docs/format.md §3.3)."""
    try:
        key = key_for_bucket_object(filename)
    except PathError as e:
        raise CannotCheck(f"{where}: {e}") from e
    return table.sortable_leaf(LeafRecord(key, filename, size, digest))


def write_seal(
    leaves: list[bytes], checkpoint: Checkpoint, private_key: SigningKey | Sequence[SigningKey],
    inconsistencies: list[Inconsistency], force: bool, out: BinaryIO,
) -> Checkpoint:
    """Steps 4-5 in one pass: the sortable leaves in key order become the seal's records, each
    hashed into the root as it is written to ``out`` (a seekable file), and dropped: the table
    is never held twice, nor the seal in memory.

    Two entries with one key cannot both be sealed (§3.2); -preferredversion copies unlike their
    classic copy are inconsistencies (refused unless forced). ``checkpoint`` is complete but for
    its root and its count of inconsistencies, which only the pass computes (the copies are
    compared as the sorted table is drained). Both are in the seal's head, and the count's
    length in digits is not known before the pass either (it was a crash: 10 forced findings
    made the head one byte longer than its placeholder), so the records go to a scratch file
    first and ``out`` gets the head of the complete checkpoint, then the records.
    """
    if _in_place(out):
        return _write_seal_in_place(leaves, checkpoint, private_key, inconsistencies, force, out)
    with temporary_file("the seal's leaf records") as records:
        checkpoint, count = _write_records(leaves, checkpoint, inconsistencies, force, records)
        # Version 2 (docs/format.md §7.4): the framed records are the seal's leaf section.
        checkpoint = dataclasses.replace(checkpoint, leaves_digest=_hash_from_start(records))
        body = checkpoint.body()
        # Every signature before any byte of the seal (a signer that fails leaves no half-made
        # seal); one per key, in the order of the checkpoint's key lines (§7.5).
        signatures = tuple(sign(key, body) for key in _keys(private_key))
        out.write(encode_seal_head(body, signatures[0] if len(signatures) == 1 else signatures,
                                   count))
        records.seek(0)
        shutil.copyfileobj(records, out, 1 << 20)
    return checkpoint


def _in_place(out: BinaryIO) -> bool:
    try:
        return out.seekable() and out.readable()
    except (AttributeError, ValueError):  # not an io object, or closed: the plain way
        return False


def _write_seal_in_place(
    leaves: list[bytes], checkpoint: Checkpoint, private_key: SigningKey | Sequence[SigningKey],
    inconsistencies: list[Inconsistency], force: bool, out: BinaryIO,
) -> Checkpoint:
    """``write_seal`` into a seekable, readable ``out`` without the scratch file (issue 23:
    the records were written, read and written again). The records go where the head ends:
    every field of the head but one has a fixed length (root, leaves-blake3, signature), and
    the count of inconsistencies is taken as it stands before the pass; the complete head is
    written over its place at the end. Only when the pass's findings change that count's
    number of digits (a forced seal) are the records moved to the head's true end. The bytes
    are those of the scratch-file way (tests/test_engine.py compares them)."""
    start = out.tell()
    placeholder = dataclasses.replace(checkpoint, root=bytes(32), leaves_digest=bytes(32),
                                      inconsistent=len(inconsistencies))
    keys = _keys(private_key)
    blank: bytes | tuple[bytes, ...] = bytes(64) if len(keys) == 1 else (bytes(64),) * len(keys)
    reserved = len(encode_seal_head(placeholder.body(), blank, len(leaves)))
    out.seek(start + reserved)
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    writer = _HashingWriter(out, hasher)
    checkpoint, count = _write_records(leaves, checkpoint, inconsistencies, force, writer)
    writer.flush()
    checkpoint = dataclasses.replace(checkpoint, leaves_digest=hasher.digest())
    body = checkpoint.body()
    # One signature per key, in the order of the checkpoint's key lines (§7.5), as write_seal.
    signatures = tuple(sign(key, body) for key in keys)
    head = encode_seal_head(body, signatures[0] if len(signatures) == 1 else signatures, count)
    end = out.tell()
    if len(head) != reserved:  # the records move by the difference
        with temporary_file("the seal's leaf records") as records:
            out.seek(start + reserved)
            shutil.copyfileobj(out, records, 1 << 20)
            out.seek(start)
            out.truncate()
            out.write(head)
            records.seek(0)
            shutil.copyfileobj(records, out, 1 << 20)
        return checkpoint
    out.seek(start)
    out.write(head)
    out.seek(end)
    return checkpoint


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _HashingWriter:
    """``out.write`` that also hashes what it writes (the leaf section's leaves-blake3), in
    pieces of 1 MiB: the pure path writes one record at a time, and a BLAKE3 update per
    record would cost more than the write."""

    def __init__(self, out: BinaryIO, hasher: blake3.blake3) -> None:
        self._out = out
        self._hasher = hasher
        self._pending = bytearray()

    def write(self, data: bytes) -> int:
        self._pending += data
        if len(self._pending) >= 1 << 20:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self._hasher.update(self._pending)
            self._out.write(self._pending)
            self._pending.clear()


def _hash_from_start(f: BinaryIO) -> bytes:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    f.seek(0)
    while chunk := f.read(4 << 20):
        hasher.update(chunk)
    return hasher.digest()


def _write_records(
    leaves: list[bytes], checkpoint: Checkpoint, inconsistencies: list[Inconsistency],
    force: bool, out: _Writable,
) -> tuple[Checkpoint, int]:
    """The leaf records, framed, into ``out``; the checkpoint completed, and the leaf count."""
    native = engine.native
    if native is not None:
        return _write_records_native(leaves, checkpoint, inconsistencies, force, out)
    frames: dict[int, bytes] = {}
    root = tree.RootBuilder()
    add_leaf = root.add_unchecked
    leaf_hash = blake3.blake3
    copies: list[tuple[str, str]] = []
    try:
        for record in table.drain_sorted(leaves, copies):
            add_leaf(leaf_hash(tree.LEAF_PREFIX + record).digest())  # docs/format.md §4.2
            n = len(record)
            frame = frames.get(n)
            if frame is None:
                frame = frames[n] = leaf_frame(n)
            out.write(frame + record)
    except table.DuplicateKey as e:
        raise ArchiveError(
            "duplicate entry: the archive holds this path more than once", e.path
        ) from None
    inconsistencies.extend(Inconsistency(path, problem) for path, problem in copies)
    return _complete(checkpoint, inconsistencies, force, root.root(), root.size)


def _write_records_native(
    leaves: list[bytes], checkpoint: Checkpoint, inconsistencies: list[Inconsistency],
    force: bool, out: _Writable,
) -> tuple[Checkpoint, int]:
    """``_write_records`` on the native engine: the same records, frames, findings and root
    (``_engine.write_records`` is the loop above in C; tests/test_engine.py compares them)."""
    native = engine.native
    assert native is not None
    leaves.sort()
    found: list[tuple[bytes, bytes | None]] = []
    root, count = native.write_records(leaves, found, out.write, blake3.blake3)
    if root is None:  # two leaves with one key: count is the second one's record
        raise ArchiveError(
            "duplicate entry: the archive holds this path more than once", table.path_of(count)
        )
    inconsistencies.extend(
        Inconsistency(table.path_of(record), table.NO_CLASSIC_COPY if classic is None
                      else table.DIFFERS_FROM_CLASSIC.format(table.path_of(classic)))
        for record, classic in found
    )
    return _complete(checkpoint, inconsistencies, force, root, count)


def _complete(checkpoint: Checkpoint, inconsistencies: list[Inconsistency], force: bool,
              root: bytes, size: int) -> tuple[Checkpoint, int]:
    if inconsistencies and not force:
        first = inconsistencies[0]
        raise ArchiveError(
            f"{first.problem} ({len(inconsistencies)} inconsistent entr"
            f"{'y' if len(inconsistencies) == 1 else 'ies'}; restore would depend on its flags: "
            "refusing to seal without --force)",
            first.path,
        )
    checkpoint = dataclasses.replace(checkpoint, root=root, inconsistent=len(inconsistencies))
    return checkpoint, size


def _keys(private_key: SigningKey | Sequence[SigningKey]) -> tuple[SigningKey, ...]:
    """One signing key, or several (overlap rotation: ``seal --key A --key B``, §7.5)."""
    if isinstance(private_key, Sequence):
        if not private_key:
            raise ValueError("no signing key")
        return tuple(private_key)
    return (private_key,)


@dataclass(frozen=True)
class Identity:
    """What a checkpoint says of the backup beside its leaves: its name and UID, and the
    tarball's BLAKE3 and size (docs/format.md §5)."""

    name: str
    uid: str
    archive_digest: bytes
    archive_size: int


@contextmanager
def sealed_file(
    leaves: list[bytes], identity: Identity, private_key: SigningKey | Sequence[SigningKey], *,
    created_at: datetime, inconsistencies: list[Inconsistency], force: bool,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[BinaryIO, Checkpoint, int]]:
    """Steps 4-5: the seal of ``leaves`` (every tar entry's and bucket object's, unsorted: they
    are sorted and drained here) in a temporary file at its start, its checkpoint and size."""
    checkpoint = Checkpoint(
        backup=identity.name,
        uid=identity.uid,
        tree_size=len(leaves),
        root=bytes(32),  # computed by the pass
        archive_digest=identity.archive_digest,
        archive_size=identity.archive_size,
        created=created_at.replace(microsecond=0),
        key_id=public_key_of(_keys(private_key)[0]).key_id,
        co_key_ids=tuple(public_key_of(k).key_id for k in _keys(private_key)[1:]),
    )
    # Canonical order, root, signed checkpoint, in one pass over the sorted table, into a
    # temporary file (a seal is ~200 bytes per leaf: it is not held in memory).
    phase(progress, f"sorting, hashing and signing {len(leaves)} leaves", None)
    with temporary_file("the seal") as seal_file:
        try:
            checkpoint = write_seal(leaves, checkpoint, private_key, inconsistencies, force,
                                    seal_file)
            seal_size = seal_file.seek(0, io.SEEK_END)
            seal_file.seek(0)
        except OSError as e:  # the temporary's file system is full, or over a quota or limit
            raise StorageError(
                f"cannot write the seal to a temporary file in {temp_dir_label()}: "
                f"{e.strerror or e}"
            ) from e
        yield seal_file, checkpoint, seal_size


def seal_backup(
    source: BackupSource,
    private_key: SigningKey | Sequence[SigningKey],
    *,
    created_at: datetime,
    limits: Limits = Limits(),
    replace: bool = False,
    force: bool = False,
    check_manifests: bool = True,
    progress: Callable[[int], None] | None = None,
) -> SealResult:
    # 1. The backup's identity; only a final backup can be sealed.
    name, uid, _ = read_backup_identity(source)
    # 2. Bucket objects beside the tarball (the seal itself excluded by object_names).
    bucket: list[bytes] = []
    for filename in source.object_names():
        data = source.read_object(filename)
        if data is None:
            raise CannotCheck(f"{source.describe()}: {filename} vanished while sealing")
        bucket.append(bucket_leaf(filename, len(data), content_digest(data), source.describe()))
    bucket_objects = len(bucket)
    # 3. Every tar entry, in one streaming pass, each manifest checked against its path.
    inconsistencies: list[Inconsistency] = []
    phase(progress, "reading and hashing the tarball", tarball_total(source, progress))
    leaves, archive_digest, archive_size = hash_tarball(
        source, limits, progress, inconsistencies if check_manifests else None
    )
    entries = len(leaves)
    leaves.extend(bucket)
    del bucket
    # 4-5. The seal, in a temporary file; 6. written atomically, conditionally.
    identity = Identity(name, uid, archive_digest, archive_size)
    with sealed_file(leaves, identity, private_key, created_at=created_at,
                     inconsistencies=inconsistencies, force=force,
                     progress=progress) as (seal_file, checkpoint, seal_size):
        phase(progress, f"writing the seal ({seal_size} bytes)", None)
        where = source.write_seal(seal_file, replace=replace)
    return SealResult(checkpoint, where, seal_size, entries + bucket_objects, entries,
                      bucket_objects, inconsistencies)
