"""The ObjectStore Velero talks to: S3 through ``storage.s3``, every byte under
``backups/<name>/`` sealed as Velero writes it and verified as Velero reads it.

What Velero does with its backup store, and in which process, is ../shared/VELERO.md §5; the
rules this module keeps (docs/format.md §13, docs/threat-model.md P1-P13):

* **PutObject** of a backup's object: the bytes are uploaded while they are hashed (the tarball
  through the strict archive reader, on a second thread, into the same leaves ``seal`` makes),
  and nothing is stored unless both succeed. Then a signed record of what was stored
  (``records.py``) is written beside it. The record names the Backup's UID, learnt from the
  ``velero-backup.json`` Velero put in this process or, in a later process, from that object's
  own record; an object put before any of these (``N-logs.gz``, first in PutBackup) keeps its
  record in memory until ``velero-backup.json`` arrives.
* **The seal** is written when the backup's writes are complete: when Velero puts
  ``velero-backup.json`` with phase Completed or PartiallyFailed (only the finalizer does:
  pkg/controller/backup_finalizer_controller.go:210-229), from the records of every object in
  the folder, each of this UID. The finalizer of a backup with async operations downloads the
  tarball, puts ``velero-backup.json`` and *then* the rebuilt tarball (:169, :226, :231): a
  process that read the tarball therefore seals after its tarball PutObject instead.
* **GetObject** of a backup's object streams the stored bytes to Velero and holds the last
  chunk back until their size and BLAKE3 are the sealed ones (before the seal exists: the
  recorded ones); otherwise the stream ends in an error and Velero's download fails.
* Everything else passes through.
"""

from __future__ import annotations

import io
import queue
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, BinaryIO, cast

import blake3

from merkle_backup.archive import Limits
from merkle_backup.builder import Identity, bucket_leaf, hash_tarball_stream, sealed_file
from merkle_backup.consistency import Inconsistency
from merkle_backup.core.checkpoint import Checkpoint
from merkle_backup.errors import (
    ArchiveError,
    CannotCheck,
    Error,
    FormatError,
    NotAuthentic,
    StorageError,
    UsageError,
)
from merkle_backup.plugin import records
from merkle_backup.plugin.config import PluginConfig, parse_config
from merkle_backup.plugin.protocol import NOT_FOUND, PluginError
from merkle_backup.plugin.records import ObjectRecord
from merkle_backup.signing import PublicKey, load_public_key
from merkle_backup.storage.s3.stream import Pin
from merkle_backup.velero import (
    BACKUP_OBJECT,
    BACKUPS_FOLDER,
    LEAVES_SUFFIX,
    RECORD_SUFFIX,
    SEAL_SUFFIX,
    is_backup_name,
    is_ours,
    parse_backup_object,
)

# Phases only the finalizer writes (backup_finalizer_controller.go:210-216): the backup's writes
# end with them. Failed is not among them: PutBackup writes it before the tarball
# (backup_controller.go:846-873), and a Failed backup is never restored
# (restore_controller.go:407-413); its objects stay verifiable through their records.
SEALING_PHASES = frozenset({"Completed", "PartiallyFailed"})
MAX_BACKUP_OBJECT = 16 << 20    # velero-backup.json, held whole to read its phase and UID
MAX_RECORD = 16 << 10
MAX_LEAVES_OBJECT = 1 << 30     # 10^6 entries take ~150 MB
GET_CHUNK = 1 << 20
PIPE_CHUNK = 1 << 20
GZIP_CHECK_WINDOW = 1 << 20  # bytes of a side file's inflated data held at once (then dropped)
Log = Callable[[str, str], None]  # (level, message): lands in Velero's log


@dataclass
class _Stored:
    """What this process stored for one object (and, for the tarball, its leaves)."""

    record: ObjectRecord | None  # None while the Backup's UID is not known yet
    size: int
    digest: bytes
    leaves: list[bytes] | None = None
    inconsistencies: list[Inconsistency] = field(default_factory=list)


class VeleroObjectStore:
    """``protocol.ObjectStoreBackend`` over S3, sealing and verifying (module docstring)."""

    def __init__(self, *, log: Log | None = None, clock: Callable[[], int] = time.time_ns,
                 limits: Limits = Limits()) -> None:
        self._log: Log = log or (lambda level, message: None)
        self._clock = clock
        self._limits = limits
        self._config: PluginConfig | None = None
        self._store: Any = None
        self._public_client: Any = None
        self._private: Any = None
        self._trusted: list[PublicKey] = []
        self._lock = threading.Lock()
        self._uids: dict[str, str] = {}                      # backup -> UID Velero put here
        self._stored: dict[tuple[str, str], _Stored] = {}    # (backup, object) -> stored here
        self._read_tarball: set[str] = set()                 # backups whose tarball we served
        self._terminal: dict[str, bytes] = {}                # sealing velero-backup.json, held
        self._tlog: Any = None                               # the transparency log, if any
        self._forgotten: set[str] = set()                    # backups tombstoned here
        self._seals: dict[str, tuple[str, _SealView]] = {}   # backup -> (ETag, its seal)

    # -- Init ------------------------------------------------------------------------------

    def init(self, config: dict[str, str]) -> None:
        from merkle_backup.signers import open_signer
        from merkle_backup.storage.s3.connect import connect

        parsed = parse_config(config)
        # A key file, or a key reference (awskms:///..., hashivault://..., pkcs11:..., an
        # ssh-agent): every signature is verified by the signer before it is used.
        self._private = open_signer(parsed.signing_key)
        own = self._private.public_key
        self._trusted = [load_public_key(p) for p in parsed.trusted_keys] or [own]
        if not any(k.raw == own.raw for k in self._trusted):
            # Its own records must verify, or every backup it makes would be refused.
            raise CannotCheck(f"the signing key {parsed.signing_key} is not among trustedKeys")
        for message in parsed.notes:
            self._log("warn", message)
        self._store = connect(parsed.bucket, parsed.options, warn=lambda m: self._log("warn", m))
        if parsed.public_url:
            from dataclasses import replace

            self._public_client = connect(
                parsed.bucket, replace(parsed.options, endpoint_url=parsed.public_url)).client
        if parsed.log:
            from merkle_backup.tlog.log import Log, LogState
            from merkle_backup.tlog.store import open_log_store

            self._tlog = Log(open_log_store(parsed.log, parsed.options,
                                            warn=lambda m: self._log("warn", m)),
                             self._trusted, LogState(None), name=parsed.log_name)
        self._config = parsed
        self._log("info", f"merkle-backup plugin ready: bucket {parsed.bucket}, prefix "
                          f"{parsed.prefix or '(none)'}, {len(self._trusted)} trusted key(s)"
                          + (", unsealed backups allowed" if parsed.allow_unsealed else ""))

    def _ready(self, bucket: str) -> PluginConfig:
        if self._config is None:
            raise CannotCheck("the plugin was not initialised (Init first)")
        if bucket != self._config.bucket:
            raise CannotCheck(f"bucket {bucket!r} is not the storage location's "
                              f"({self._config.bucket!r})")
        return self._config

    def _backup_object(self, key: str) -> tuple[str, str] | None:
        """(backup, object name) of a key in ``<prefix>/backups/<backup>/``, else None."""
        assert self._config is not None
        prefix = f"{self._config.prefix}/" if self._config.prefix else ""
        m = re.fullmatch(re.escape(prefix + BACKUPS_FOLDER) + r"/([^/]+)/([^/]+)", key)
        if m is None or not is_backup_name(m.group(1)):
            return None
        return m.group(1), m.group(2)

    def _folder(self, backup: str) -> str:
        assert self._config is not None
        prefix = f"{self._config.prefix}/" if self._config.prefix else ""
        return f"{prefix}{BACKUPS_FOLDER}/{backup}/"

    # -- PutObject -------------------------------------------------------------------------

    def put_object(self, bucket: str, key: str, body: Iterator[bytes]) -> None:
        config = self._ready(bucket)
        target = self._backup_object(key)
        if target is None:
            self._store.upload_stream(key, body, tagging=config.tagging)
            return
        backup, name = target
        if is_ours(name):
            raise CannotCheck(f"{key}: a name merkle-backup reserves for its seals and records")
        if name == BACKUP_OBJECT:
            self._put_backup_object(config, backup, key, body)
        elif name == f"{backup}.tar.gz":
            stored = self._put_tarball(backup, key, body)
            self._remember(backup, name, stored)
            if backup in self._terminal:
                self._seal(backup, self._terminal.pop(backup))
        else:
            hasher = blake3.blake3()
            # Velero's side files are gzip (-logs.gz, -results.gz, *.json.gz): one that ends
            # before its gzip trailer is refused, not stored, since a read error on Velero's
            # side ends the stream as if it were complete (object_store_client.go:90-95).
            gzip = zlib.decompressobj(31) if name.endswith(".gz") else None

            def hashed() -> Iterator[bytes]:
                for chunk in body:
                    hasher.update(chunk)
                    if gzip is not None and not gzip.eof:
                        gzip.decompress(chunk, GZIP_CHECK_WINDOW)
                        while gzip.unconsumed_tail and not gzip.eof:
                            gzip.decompress(gzip.unconsumed_tail, GZIP_CHECK_WINDOW)
                    yield chunk

            def complete() -> None:
                if gzip is not None and not gzip.eof:
                    raise CannotCheck(f"{key}: the gzip stream Velero sent ends before its "
                                      "trailer (truncated): not stored")

            size = self._store.upload_stream(key, hashed(), before_commit=complete,
                                             tagging=config.tagging)
            self._remember(backup, name, _Stored(None, size, hasher.digest()))

    def _put_backup_object(self, config: PluginConfig, backup: str, key: str,
                           body: Iterator[bytes]) -> None:
        data = _read_capped(body, MAX_BACKUP_OBJECT, key)
        info = parse_backup_object(data, key)
        if info.name != backup:
            raise CannotCheck(f"{key} names backup {info.name!r}")
        with self._lock:
            known = self._uids.setdefault(backup, info.uid)
        if known != info.uid:
            raise NotAuthentic(f"{key}: Backup UID {info.uid}, but this process saw backup "
                               f"{backup} with UID {known} (put by Velero, or recorded)")
        stored = _Stored(None, len(data), blake3.blake3(data).digest())
        sealing = info.phase in SEALING_PHASES
        if sealing and backup not in self._read_tarball:
            self._seal(backup, data)   # the seal first: Velero's object then matches it
        self._store.upload_stream(key, iter((data,)), tagging=config.tagging)
        self._remember(backup, BACKUP_OBJECT, stored, phase=info.phase)
        if sealing and backup in self._read_tarball:
            # The finalizer puts the rebuilt tarball next (backup_finalizer_controller.go:231).
            self._terminal[backup] = data
            self._log("info", f"backup {backup}: sealing after the rebuilt tarball is put")

    def _put_tarball(self, backup: str, key: str, body: Iterator[bytes]) -> _Stored:
        """Upload the tarball while the strict reader hashes it on another thread; commit the
        upload only when the reader accepted every entry."""
        assert self._config is not None
        pipe = _Pipe()
        result: dict[str, Any] = {}
        inconsistencies: list[Inconsistency] = []

        def hash_it() -> None:
            try:
                result["hashed"] = hash_tarball_stream(
                    cast(BinaryIO, pipe), self._limits, None, inconsistencies)
            except BaseException as e:  # reported by check(), on the caller's thread
                result["error"] = e
            finally:
                pipe.drain()  # the producer must never block on a reader that stopped

        worker = threading.Thread(target=hash_it, name="seal-hash", daemon=True)
        worker.start()

        whole = blake3.blake3()
        uploaded = [0]

        def tee() -> Iterator[bytes]:
            for chunk in pipe.coalesce(body):
                whole.update(chunk)
                uploaded[0] += len(chunk)
                pipe.feed(chunk)
                yield chunk
            pipe.close()

        def check() -> None:
            worker.join()
            error = result.get("error")
            if isinstance(error, ArchiveError):
                raise ArchiveError(f"refusing Velero's tarball: {error.reason}", error.path)
            if error is not None:
                raise error
            if inconsistencies:
                first = inconsistencies[0]
                raise ArchiveError(f"refusing Velero's tarball: {first.problem}", first.path)
            _, digest, size = result["hashed"]
            if digest != whole.digest() or size != uploaded[0]:
                # The reader's hash covers what it read: every byte, or the seal would not.
                raise ArchiveError("refusing Velero's tarball: bytes after the archive's end")

        try:
            self._store.upload_stream(key, tee(), before_commit=check,
                                      tagging=self._config.tagging)
        finally:
            pipe.close()
            worker.join()
        leaves, digest, size = result["hashed"]
        return _Stored(None, size, digest, leaves, inconsistencies)

    def _remember(self, backup: str, name: str, stored: _Stored, *, phase: str | None = None
                  ) -> None:
        """Keep what was stored, and write its record once the Backup's UID is known (else
        keep it pending: PutBackup puts the log before velero-backup.json)."""
        uid = self._uid_of(backup)
        with self._lock:
            self._stored[(backup, name)] = stored
        if uid is None:
            self._log("debug", f"backup {backup}: {name} stored, its record waits for "
                               f"{BACKUP_OBJECT}")
            return
        pending = [(n, s) for (b, n), s in list(self._stored.items())
                   if b == backup and s.record is None and n != name]
        self._write_record(backup, name, stored, uid, phase)
        for other, earlier in pending:
            self._write_record(backup, other, earlier, uid, None)

    def _write_record(self, backup: str, name: str, stored: _Stored, uid: str,
                      phase: str | None) -> None:
        folder = self._folder(backup)
        leaves = None
        if stored.leaves is not None:
            data = records.encode_leaves(stored.leaves)
            leaves = (len(stored.leaves), blake3.blake3(data).digest())
            self._store.put(folder + name + LEAVES_SUFFIX, data, if_absent=False)
        record = ObjectRecord(backup, uid, name, stored.size, stored.digest, self._clock(),
                              leaves, phase)
        self._store.put(folder + name + RECORD_SUFFIX,
                        records.signed_record(record, self._private), if_absent=False)
        stored.record = record

    def _uid_of(self, backup: str) -> str | None:
        """The Backup's UID: put here by Velero, else from velero-backup.json's record."""
        with self._lock:
            uid = self._uids.get(backup)
        if uid is not None:
            return uid
        record = self._read_record(backup, BACKUP_OBJECT)
        if record is None:
            return None
        with self._lock:
            return self._uids.setdefault(backup, record.uid)

    # -- the seal --------------------------------------------------------------------------

    def _seal(self, backup: str, backup_object: bytes) -> None:
        """Seal ``backup`` from what Velero wrote: ``backup_object`` (its final
        velero-backup.json, in hand) and the records of every other object in its folder."""
        assert self._config is not None
        info = parse_backup_object(backup_object, BACKUP_OBJECT)
        folder = self._folder(backup)
        where = self._store.url(folder.rstrip("/"))
        files, _ = self._store.list_folder(folder)
        tarball = f"{backup}.tar.gz"
        if tarball not in files:
            raise CannotCheck(f"{where}: no {tarball}: nothing to seal")
        leaves: list[bytes] = []
        bucket: list[bytes] = [bucket_leaf(BACKUP_OBJECT, len(backup_object),
                                           blake3.blake3(backup_object).digest(), where)]
        archive: tuple[bytes, int] | None = None
        for name in sorted(files):
            if is_ours(name) or name.startswith(".") or name == BACKUP_OBJECT:
                continue
            stored = self._stored.get((backup, name))
            record = stored.record if stored is not None else self._read_record(backup, name)
            if record is None:
                raise NotAuthentic(f"{where}/{name}: no record of Velero writing it through "
                                   "this plugin: refusing to seal what the plugin did not see")
            if record.uid != info.uid:
                raise NotAuthentic(
                    f"{where}/{name}: recorded for Backup UID {record.uid}, not {info.uid} "
                    "(left from, or replayed from, another backup of this name)")
            if files[name] != record.size:
                raise NotAuthentic(f"{where}/{name}: {files[name]} bytes stored, Velero wrote "
                                   f"{record.size}: changed after Velero wrote it")
            if name == tarball:
                archive = (record.digest, record.size)
                leaves = (stored.leaves if stored is not None and stored.leaves is not None
                          else self._read_leaves(backup, record))
            else:
                bucket.append(bucket_leaf(name, record.size, record.digest, where))
        assert archive is not None
        count = len(leaves)
        leaves = leaves + bucket
        identity = Identity(backup, info.uid, archive[0], archive[1])
        created = datetime.fromtimestamp(self._clock() / 1e9, tz=timezone.utc)
        with sealed_file(leaves, identity, self._private, created_at=created,
                         inconsistencies=[], force=False) as (f, checkpoint, size):
            if self._tlog is not None:  # logged first: a seal the log lacks is flagged
                self._log_seal(f, backup_object)
            self._store.put(f"{folder}{backup}{SEAL_SUFFIX}", f, if_absent=False)
        self._log("info", f"backup {backup} sealed: {count} entries, {len(bucket)} objects, "
                          f"root {checkpoint.root.hex()}, {size} bytes")

    def _log_seal(self, f: BinaryIO, backup_object: bytes) -> None:
        """Append the seal (and Velero's expiration of the backup) to the transparency log, as
        ``seal-all --log`` does (docs/format.md §12.1)."""
        from merkle_backup.formats.seal import read_seal_head
        from merkle_backup.tlog.entries import seal_entries
        from merkle_backup.velero import backup_times

        head = read_seal_head(f)
        f.seek(0)
        _, expiration = backup_times(backup_object)
        raws = seal_entries(head.checkpoint, head.signature, self._private, expiration)
        index, _ = self._tlog.append(self._private, raws)
        self._log("info", f"the seal is logged at entry {index}")

    def _read_record(self, backup: str, name: str) -> ObjectRecord | None:
        data = self._store.get_bytes(self._folder(backup) + name + RECORD_SUFFIX, MAX_RECORD)
        if data is None:
            return None
        return records.open_record(data, self._trusted, backup=backup, obj=name)

    def _read_leaves(self, backup: str, record: ObjectRecord) -> list[bytes]:
        key = self._folder(backup) + record.object + LEAVES_SUFFIX
        data = self._store.get_bytes(key, MAX_LEAVES_OBJECT)
        if data is None:
            raise NotAuthentic(f"{self._store.url(key)}: the tarball's leaves are gone")
        return records.decode_leaves(data, record)

    # -- GetObject -------------------------------------------------------------------------

    def get_object(self, bucket: str, key: str) -> Iterator[bytes]:
        self._ready(bucket)
        pin = self._store.pin_if_exists(key)
        if pin is None:
            # Velero tells a missing object from a failed read by these words (deletion of a
            # backup whose tarball was never uploaded: backup_deletion_controller.go:714-730).
            raise PluginError(NOT_FOUND, f"{self._store.url(key)}: NoSuchKey: the object does "
                                         "not exist")
        target = self._backup_object(key)
        if target is None or is_ours(target[1]):
            return self._stream(key, pin, None)
        backup, name = target
        expected = self._expected(backup, name)
        if name == f"{backup}.tar.gz":
            with self._lock:
                self._read_tarball.add(backup)
        return self._stream(key, pin, expected)

    def _expected(self, backup: str, name: str) -> tuple[int, bytes] | None:
        """(size, BLAKE3) Velero's bytes must have: sealed, else recorded; None only for an
        unsealed backup that the config lets through."""
        assert self._config is not None
        stored = self._stored.get((backup, name))
        if stored is not None:   # written by this very process
            return stored.size, stored.digest
        where = self._store.url(self._folder(backup) + name)
        sealed = self._sealed(backup, name)
        if sealed is not None:
            return sealed
        head = self._read_record(backup, BACKUP_OBJECT)
        if head is not None:
            if head.phase in SEALING_PHASES:
                raise NotAuthentic(
                    f"{where}: backup {backup} is {head.phase} but has no seal (deleted, or "
                    "the plugin was stopped before it was written: docs/velero.md)")
            record = head if name == BACKUP_OBJECT else self._read_record(backup, name)
            if record is None:
                raise NotAuthentic(f"{where}: no record of Velero writing it")
            if record.uid != head.uid:
                raise NotAuthentic(f"{where}: recorded for Backup UID {record.uid}, but "
                                   f"{BACKUP_OBJECT} is of UID {head.uid}")
            return record.size, record.digest
        if self._config.allow_unsealed:
            self._log("warn", f"{where}: backup {backup} has no seal: passed through "
                                 "unverified (allowUnsealed)")
            return None
        raise NotAuthentic(f"{where}: backup {backup} has no seal (sealed backups only; "
                           "seal it with merkle-backup seal, or set allowUnsealed)")

    def _sealed(self, backup: str, name: str) -> tuple[int, bytes] | None:
        """(size, BLAKE3) of ``name`` as the backup's seal has it; None when there is no seal."""
        tarball = name == f"{backup}.tar.gz"
        seal = self._seal_of(backup, name, objects=not tarball)
        if seal is None:
            return None
        if tarball:
            return seal.checkpoint.archive_size, seal.checkpoint.archive_digest
        found = (seal.objects or {}).get(name)
        if found is None:
            raise NotAuthentic(f"{self._store.url(self._folder(backup) + name)}: not in backup "
                               f"{backup}'s seal")
        return found

    def _seal_of(self, backup: str, name: str, *, objects: bool) -> _SealView | None:
        """The backup's seal, checked (and, with a log, the latest logged); None when there is
        none. ``objects``: its bucket objects are needed too (else its signed head may do)."""
        key = f"{self._folder(backup)}{backup}{SEAL_SUFFIX}"
        pin = self._store.pin_if_exists(key)
        if pin is None:
            return None
        cached = self._seals.get(backup)
        if cached is not None and cached[0] == pin.etag and (not objects or cached[1].objects):
            seal = cached[1]
        else:
            head = None if objects else self._seal_head(key, pin)
            if head is not None:
                seal = head
            else:
                with self._store.open_seal_copy(key, pin) as f:
                    seal = _open_seal_view(f, self._trusted, objects=objects)
            if self._tlog is not None:
                # An older backup of this name replayed with its own valid seal: only the log
                # knows it is not the latest (T42; the log's findings of docs/format.md §12.7).
                from merkle_backup.tlog.check import verify_in_log

                verify_in_log(self._tlog, backup, seal.checkpoint_text)
            self._seals[backup] = (pin.etag, seal)
        if seal.checkpoint.backup != backup:
            raise NotAuthentic(f"{self._store.url(self._folder(backup) + name)}: the seal in "
                               f"its folder is backup {seal.checkpoint.backup}'s")
        return seal

    def _vouched_for(self, backup: str, name: str) -> bool:
        """Whether Velero wrote ``name`` into ``backup``: its seal lists it or, before the seal,
        a record of this Backup's UID names it."""
        if (backup, name) in self._stored:
            return True
        seal = self._seal_of(backup, name, objects=True)
        if seal is not None:
            return name == f"{backup}.tar.gz" or name in (seal.objects or {})
        head = self._read_record(backup, BACKUP_OBJECT)
        if head is None:
            return False
        record = head if name == BACKUP_OBJECT else self._read_record(backup, name)
        return record is not None and record.uid == head.uid

    def _seal_head(self, key: str, pin: Pin) -> _SealView | None:
        """The seal's signed checkpoint from one ranged GET of its head (what a tarball's GET
        needs: the signed size and BLAKE3), not a copy of the whole seal (~200 bytes a leaf);
        None when the head does not fit that prefix (then the whole seal is read)."""
        from merkle_backup.formats.seal import SEAL_HEAD_PREFIX_BYTES, read_seal_head
        from merkle_backup.trust import check_signature

        data, size = self._store.get_prefix(key, SEAL_HEAD_PREFIX_BYTES, pin)
        try:
            head = read_seal_head(io.BytesIO(data), whole=len(data) == size)
        except FormatError:
            return None
        checkpoint, _ = check_signature(head, self._trusted)
        if checkpoint.version != head.version:
            raise FormatError(f"seal version {head.version} holds a checkpoint of version "
                              f"{checkpoint.version}")
        return _SealView(checkpoint, head.checkpoint, None)

    def _stream(self, key: str, pin: Pin, expected: tuple[int, bytes] | None) -> Iterator[bytes]:
        """The object's bytes; with ``expected``, the last chunk only once they all match."""
        url = self._store.url(key)
        if expected is not None and pin.size != expected[0]:
            raise NotAuthentic(f"{url}: {pin.size} bytes stored, {expected[0]} sealed")
        stream = self._store.open_stream(key, pin)
        return _verified(stream, url, expected)

    # -- ObjectExists (checked when the answer would hide a sealed object); the rest passes
    # -- through -----------------------------------------------------------------------------

    def object_exists(self, bucket: str, key: str) -> bool:
        """Whether ``key`` exists; for an object of a backup that its seal (or, before the
        seal, its records) vouches for, a missing one is an error, not False: Velero reads the
        side files through ObjectExists first (tryGet, object_store.go:418-428) and takes a
        missing volumesnapshots, CSI snapshots, volumeinfo or podvolumebackups file for none,
        so a deletion behind Velero would restore less than was sealed (P14)."""
        self._ready(bucket)
        if self._store.head(key) is not None:
            return True
        target = self._backup_object(key)
        if target is not None and not is_ours(target[1]) and self._vouched_for(*target):
            backup, name = target
            raise NotAuthentic(f"{self._store.url(key)}: backup {backup} has {name} (its seal "
                               "or Velero's record of writing it says so), but the bucket "
                               "does not: deleted behind Velero")
        return False

    def list_common_prefixes(self, bucket: str, prefix: str, delimiter: str) -> list[str]:
        self._ready(bucket)
        return list(self._store.list_prefixes(prefix, delimiter))

    def list_objects(self, bucket: str, prefix: str) -> list[str]:
        self._ready(bucket)
        return list(self._store.list_keys(prefix))

    def delete_object(self, bucket: str, key: str) -> None:
        """Velero deletes a backup object by object (backup_deletion_controller.go:267-366);
        with a log, the first deletion in a sealed backup's folder first logs a signed
        tombstone, so ``audit --log`` tells Velero's deletion from anyone else's."""
        self._ready(bucket)
        target = self._backup_object(key)
        if target is not None and self._tlog is not None:
            self._tombstone(target[0])
        self._store.delete(key)

    def _tombstone(self, backup: str) -> None:
        from merkle_backup.tlog.check import forget

        if backup in self._forgotten:
            return
        if self._store.head(f"{self._folder(backup)}{backup}{SEAL_SUFFIX}") is None:
            self._forgotten.add(backup)  # nothing sealed, nothing logged to forget
            return
        clock = lambda: datetime.fromtimestamp(self._clock() / 1e9, tz=timezone.utc)  # noqa: E731
        try:
            index, entry = forget(self._tlog, self._private, backup, clock)
        except UsageError as e:  # the log holds no seal of it (sealed before the log was set)
            self._log("warn", f"backup {backup}: deleted without a tombstone: {e}")
        else:
            self._log("info", f"backup {backup}: tombstone logged at entry {index} "
                              f"(uid {entry.uid})")
        self._forgotten.add(backup)

    def create_signed_url(self, bucket: str, key: str, ttl_seconds: int) -> str:
        self._ready(bucket)
        return str(self._store.presign(key, ttl_seconds, self._public_client))


@dataclass(frozen=True)
class _SealView:
    """What GetObject needs of a verified seal: its checkpoint, and each bucket object's
    sealed size and BLAKE3."""

    checkpoint: Checkpoint
    checkpoint_text: bytes
    objects: dict[str, tuple[int, bytes]] | None  # None: not read (the tarball's GET)


def _open_seal_view(f: BinaryIO, trusted: list[PublicKey], *, objects: bool) -> _SealView:
    """The seal in ``f`` checked as far as GetObject needs (docs/format.md §13.6 step 2): the
    signature, which covers the tarball's size and BLAKE3; with ``objects``, in version 2 the
    leaf section by its signed BLAKE3 (one hash, T60) and only the bucket objects' records
    decoded (they sort first); a version-1 seal's table is checked record by record
    (trust.open_table)."""
    from merkle_backup.core import table
    from merkle_backup.core.leaf import decode_record
    from merkle_backup.formats.seal import hash_leaf_section, read_leaves
    from merkle_backup.trust import open_signed, open_table

    signed = open_signed(f, trusted)
    checkpoint = signed.checkpoint
    if not objects:
        return _SealView(checkpoint, signed.head.checkpoint, None)
    if checkpoint.leaves_digest is None:
        seal = open_table(f, signed)
        return _SealView(checkpoint, signed.head.checkpoint,
                         {seal.leaves.path(i): _size_and_digest(seal.leaves.tail(i))
                          for i in seal.bucket})
    if signed.head.leaf_count != checkpoint.tree_size or \
            hash_leaf_section(f, signed.head) != checkpoint.leaves_digest:
        raise NotAuthentic("the seal's leaf section is not the one its checkpoint signs")
    found = {}
    for record in read_leaves(f, signed.head):
        if not record.startswith(table.BUCKET_RECORD_PREFIX):
            break  # bucket objects sort first (§3.2): the rest are tar entries
        try:
            leaf = decode_record(record)
        except ValueError as e:  # signed, so the sealer wrote it: refuse, never guess
            raise NotAuthentic(f"the seal holds a malformed bucket-object record: {e}") from e
        found[leaf.path] = (leaf.size, leaf.digest)
    return _SealView(checkpoint, signed.head.checkpoint, found)


def _size_and_digest(tail: bytes) -> tuple[int, bytes]:
    return int.from_bytes(tail[:8], "big"), tail[8:]


def _verified(stream: Any, url: str, expected: tuple[int, bytes] | None) -> Iterator[bytes]:
    hasher = blake3.blake3()
    held = b""
    try:
        while chunk := stream.read(GET_CHUNK):
            if held:
                yield held
            hasher.update(chunk)
            held = chunk
        if expected is not None and hasher.digest() != expected[1]:
            raise NotAuthentic(f"{url}: its bytes are not the sealed ones (blake3 "
                               f"{hasher.digest().hex()[:16]}..., sealed "
                               f"{expected[1].hex()[:16]}...)")
        if held:
            yield held
    finally:
        stream.close()


def _read_capped(body: Iterable[bytes], limit: int, key: str) -> bytes:
    data = bytearray()
    for chunk in body:
        data += chunk
        if len(data) > limit:
            raise CannotCheck(f"{key} is larger than {limit} bytes")
    return bytes(data)


class _Pipe:
    """Chunks from the gRPC thread to the hashing thread: a bounded queue read as a binary
    stream (``read``), so memory stays bounded by its depth times ``PIPE_CHUNK``."""

    DEPTH = 8

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes] = queue.Queue(self.DEPTH)
        self._closed = False
        self._eof = False
        self._draining = False

    @staticmethod
    def coalesce(body: Iterable[bytes]) -> Iterator[bytes]:
        """Velero's 16 KiB chunks joined into pieces of about PIPE_CHUNK."""
        buffer = bytearray()
        for chunk in body:
            buffer += chunk
            if len(buffer) >= PIPE_CHUNK:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)

    def feed(self, chunk: bytes) -> None:
        if not self._draining:
            self._queue.put(chunk)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if not self._draining:
                self._queue.put(b"")

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._eof:
            return b""
        chunk = self._queue.get()
        if not chunk:
            self._eof = True
        return chunk

    def drain(self) -> None:
        """The reader stopped: let the producer go on without it."""
        self._draining = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


__all__ = ["Error", "StorageError", "VeleroObjectStore"]
