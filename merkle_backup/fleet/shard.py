"""Sharded audits (``audit --shard I/N --results URL``) and their merge (``audit-merge URL``).

* A backup belongs to shard ``int(SHA-256(name)[:8]) mod N``: stable across runs, machines and
  Python versions (never ``hash()``), and independent of the listing order.
* Run as a Kubernetes Indexed Job, ``--shard N`` takes the index from ``JOB_COMPLETION_INDEX``.
* Each shard writes one result object, ``URL/shard-I-of-N.json``: its rows, the run id, N, the
  location, the trusted key ids and the whole listing it saw. ``audit-merge`` combines exactly
  one result per index of one run; a missing, duplicated or foreign shard is "could not check"
  (exit 3), as is a backup that no shard audited (the listings differed: it appeared mid-run).
* URL is a local folder or an ``s3://`` prefix *outside* Velero's prefix: never inside the
  location's ``backups/`` tree (the attacker's, and Velero deletes what it does not know there),
  nor a new top-level folder under Velero's prefix (Velero marks the location Unavailable).

Result objects are not signed (a shard holds no signing key): they are as trustworthy as the
results store. ``audit --attest`` gives signed evidence.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from merkle_backup.errors import CannotCheck, ExitCode, StorageError, UsageError
from merkle_backup.fleet.sweep import (
    ERROR,
    TAMPERED,
    UNFINISHED,
    UNSEALED,
    VERIFIED,
    AuditReport,
    BackupRow,
    FailureRow,
)
from merkle_backup.formats.strict import loads_json

RESULT_FORMAT = "merkle-backup-audit-shard/1"
MAX_SHARDS = 10_000
MAX_RESULT_BYTES = 256 * 2**20
INDEX_ENV = "JOB_COMPLETION_INDEX"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_RESULT_NAME = re.compile(r"shard-(\d+)-of-(\d+)\.json")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, name: str) -> bool:
        return shard_of(name, self.count) == self.index

    @property
    def object_name(self) -> str:
        return f"shard-{self.index}-of-{self.count}.json"


def shard_of(name: str, count: int) -> int:
    """The shard of backup ``name`` among ``count``: SHA-256 of its UTF-8 bytes, first 8 bytes
    big-endian, mod ``count`` (surrogate-escaped bytes of a non-UTF-8 name kept as they were)."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """``I/N``, or ``N`` with I from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)."""
    environ = os.environ if environ is None else environ
    index_text, slash, count_text = text.partition("/")
    if not slash:
        index_text, count_text = "", text
    if not re.fullmatch(r"\d{1,6}", count_text) or not 1 <= int(count_text) <= MAX_SHARDS:
        raise UsageError(f"--shard {text!r}: give I/N (N from 1 to {MAX_SHARDS}), or N with "
                         f"{INDEX_ENV} set")
    count = int(count_text)
    env_index = environ.get(INDEX_ENV)
    if index_text == "":
        if env_index is None:
            raise UsageError(f"--shard {text}: no shard index: give I/N, or set {INDEX_ENV} "
                             "(an Indexed Job sets it)")
        index_text, source = env_index, f"{INDEX_ENV}={env_index!r}"
    else:
        source = f"--shard {text}"
        if env_index is not None and env_index != index_text:
            raise UsageError(f"--shard {text} disagrees with {INDEX_ENV}={env_index!r}")
    if not re.fullmatch(r"\d{1,6}", index_text) or int(index_text) >= count:
        raise UsageError(f"{source}: the shard index must be a number from 0 to {count - 1}")
    return Shard(int(index_text), count)


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(f"--run-id {run_id!r}: 1-128 letters, digits, '.', '_', ':' or '-'")
    return run_id


# -- where results go -----------------------------------------------------------------------


class ResultsStore:
    """A local folder or an S3 prefix holding result objects."""

    def __init__(self, url: str, options: Any = None, *, warn: Any = None) -> None:
        from merkle_backup.storage.options import S3_SCHEME, parse_s3_url

        self.url = url
        self.s3 = None
        if url.startswith(S3_SCHEME):
            self.s3 = parse_s3_url(url)
            from merkle_backup.storage.s3 import connect

            self.store = connect(self.s3.bucket, options, warn=warn)
            self.folder = f"{self.s3.prefix}/" if self.s3.prefix else ""
        else:
            if not url:
                raise UsageError("--results: give a folder or an s3:// prefix")
            self.path = Path(url)

    def describe(self, name: str = "") -> str:
        if self.s3 is not None:
            return self.store.url(self.folder + name)
        return str(self.path / name) if name else str(self.path)

    def put(self, name: str, data: bytes) -> str:
        if self.s3 is not None:
            self.store.put(self.folder + name, data, if_absent=False)
        else:
            from merkle_backup.storage.local import write_atomic

            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StorageError(f"cannot create {self.path}: {e.strerror or e}") from e
            write_atomic(self.path / name, data)
        return self.describe(name)

    def names(self) -> list[str]:
        if self.s3 is not None:
            files, _ = self.store.list_folder(self.folder)
            return sorted(files)
        try:
            return sorted(p.name for p in self.path.iterdir() if p.is_file())
        except FileNotFoundError as e:
            raise StorageError(f"{self.path}: no such folder") from e
        except OSError as e:
            raise StorageError(f"cannot list {self.path}: {e.strerror or e}") from e

    def get(self, name: str) -> bytes:
        if self.s3 is not None:
            data = self.store.get_bytes(self.folder + name, MAX_RESULT_BYTES)
            if data is None:
                raise StorageError(f"{self.describe(name)}: no such object")
            return data
        from merkle_backup.storage.files import read_bounded

        # Like a bucket object: never followed, never a FIFO or device, capped (T72).
        return read_bounded(self.path / name, MAX_RESULT_BYTES, follow=False,
                            what="shard result")


def check_results_place(location: Any, url: str) -> None:
    """Refuse a results URL inside the location's ``backups/`` tree, or anywhere else under
    Velero's prefix (a new top-level folder there makes Velero mark the location Unavailable)."""
    from merkle_backup.storage.local import LocalBucket
    from merkle_backup.storage.options import S3_SCHEME, parse_s3_url

    inside: str | None = None
    if url.startswith(S3_SCHEME):
        results = parse_s3_url(url)
        store = getattr(location, "store", None)
        prefix = getattr(location, "prefix", None)
        same = store is not None and isinstance(prefix, str) and store.bucket == results.bucket
        if same and isinstance(prefix, str) and (
                prefix in ("", results.prefix) or results.prefix.startswith(prefix + "/")):
            inside = results.prefix[len(prefix):].lstrip("/")
    elif isinstance(location, LocalBucket):
        root = location.root.resolve()
        target = Path(url).resolve()
        if target == root or root in target.parents:
            inside = str(target.relative_to(root)) if target != root else ""
    if inside is None:
        return
    first = inside.split("/", 1)[0]
    if first == "backups":
        raise UsageError(f"--results {url} is inside the location's backups/ tree (the bucket's "
                         "writers control it, and Velero deletes what it does not know there): "
                         "give a place outside Velero's prefix")
    raise UsageError(f"--results {url} is under Velero's prefix {location.describe()}: a new "
                     "top-level folder there makes Velero mark the location Unavailable; give "
                     "a place outside it")


# -- result objects -------------------------------------------------------------------------


def listing_digest(names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode("utf-8", "surrogateescape")).hexdigest()


def encode_result(report: AuditReport, *, shard: Shard, run_id: str, listed: Sequence[str],
                  key_ids: Sequence[str], started: str, finished: str) -> bytes:
    obj = {
        "format": RESULT_FORMAT,
        "run_id": run_id,
        "shard": shard.index,
        "shards": shard.count,
        "location": report.location,
        "require_seal": report.require_seal,
        "trusted_key_ids": sorted(key_ids),
        "started": started,
        "finished": finished,
        "listed": sorted(listed),
        "listed_sha256": listing_digest(listed),
        "report": report.to_json(),
    }
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


def decode_result(data: bytes, where: str) -> dict[str, Any]:
    try:
        obj = loads_json(data)
    except ValueError as e:
        raise CannotCheck(f"{where}: not a shard result ({e})") from e
    if not isinstance(obj, dict) or obj.get("format") != RESULT_FORMAT:
        raise CannotCheck(f"{where}: not a shard result (format is not {RESULT_FORMAT})")
    try:
        shard, shards = obj["shard"], obj["shards"]
        report = obj["report"]
        ok = (
            isinstance(shard, int)
            and isinstance(shards, int)
            and 0 <= shard < shards <= MAX_SHARDS
            and isinstance(obj["run_id"], str)
            and isinstance(obj["location"], str)
            and isinstance(obj["listed"], list)
            and all(isinstance(n, str) for n in obj["listed"])
            and obj["listed_sha256"] == listing_digest(obj["listed"])
            and isinstance(report, dict)
            and isinstance(report["backups"], list)
            and isinstance(obj["require_seal"], bool)
            and isinstance(obj["trusted_key_ids"], list)
        )
        rows = [_row(b) for b in report["backups"]] if ok else []
    except (KeyError, TypeError, ValueError) as e:
        raise CannotCheck(f"{where}: malformed shard result ({e})") from e
    if not ok:
        raise CannotCheck(f"{where}: malformed shard result")
    seen: set[str] = set()
    for row in rows:
        if shard_of(row.name, shards) != shard:
            raise CannotCheck(
                f"{where}: holds backup {row.name!r}, which is not in shard {shard}/{shards}"
            )
        if row.status not in STATUSES:  # a status the merge cannot judge (T76)
            raise CannotCheck(f"{where}: backup {row.name!r} has status {row.status!r}, not "
                              f"one an audit writes ({', '.join(STATUSES)})")
        if row.name in seen:  # two rows: which one would the merge keep?
            raise CannotCheck(f"{where}: backup {row.name!r} is listed twice")
        seen.add(row.name)
    obj["rows"] = rows
    return obj


def _row(b: dict[str, Any]) -> BackupRow:
    if not isinstance(b.get("name"), str) or not isinstance(b.get("status"), str):
        raise TypeError("a backup row without name or status")
    failures = tuple(FailureRow(str(f["path"]), str(f["problem"]), str(f.get("detail", "")))
                     for f in b.get("failures") or ())
    return BackupRow(b["name"], b["status"], str(b.get("detail", "")), b.get("uid"), b.get("root"),
                     failures)


# The statuses an audit's row can have (fleet.sweep): a result holding another is refused.
STATUSES = (VERIFIED, TAMPERED, UNSEALED, UNFINISHED, ERROR)


class ShardReport(AuditReport):
    """An audit of one shard: an empty shard of a location that has backups is fine."""

    listed: int = 0

    @property
    def exit_code(self) -> int:
        code = super().exit_code
        if (
            code == ExitCode.CANNOT_CHECK
            and not self.backups
            and self.listed
            and not self.with_status(ERROR)
        ):
            return ExitCode.VERIFIED
        return code


def shard_report(location: str, require_seal: bool, rows: Sequence[BackupRow],
                 notes: Sequence[str], listed: int) -> AuditReport:
    report = ShardReport(location, require_seal, tuple(rows), tuple(notes))
    object.__setattr__(report, "listed", listed)
    return report


@dataclass(frozen=True)
class Merged:
    report: AuditReport
    run_id: str
    shards: int
    objects: tuple[str, ...]
    results: tuple[dict[str, Any], ...]


def merge(store: ResultsStore, *, run_id: str | None = None, shards: int | None = None) -> Merged:
    """One report from the result objects of one run; CannotCheck when a shard is missing,
    duplicated, or from another run (another run id, N, location, trusted keys)."""
    names = [n for n in store.names() if n.endswith(".json") and not n.startswith(".")]
    if not names:
        raise CannotCheck(f"{store.describe()}: no shard results")
    results = []
    for name in names:
        obj = decode_result(store.get(name), store.describe(name))
        obj["object"] = name
        results.append(obj)
    if run_id is not None:
        results = [r for r in results if r["run_id"] == run_id]
        if not results:
            raise CannotCheck(f"{store.describe()}: no shard results of run {run_id!r}")
    runs = sorted({r["run_id"] for r in results})
    if len(runs) > 1:
        raise CannotCheck(f"{store.describe()}: results of {len(runs)} runs ({', '.join(runs)}): a "
                          "shard of the last run is missing, or pass --run-id")
    run = runs[0]
    for field, what in (("shards", "shard count"), ("location", "location"),
                        ("trusted_key_ids", "trusted keys"), ("require_seal", "--require-seal")):
        values = {json.dumps(r[field]) for r in results}
        if len(values) > 1:
            raise CannotCheck(f"{store.describe()}: run {run} has shards with different {what} "
                              f"({', '.join(sorted(values))})")
    count = results[0]["shards"]
    if shards is not None and count != shards:
        raise CannotCheck(f"{store.describe()}: run {run} has {count} shards, not {shards}")
    by_index: dict[int, list[str]] = {}
    for r in results:
        by_index.setdefault(r["shard"], []).append(r["object"])
    twice = {i: objs for i, objs in by_index.items() if len(objs) > 1}
    if twice:
        i, objs = min(twice.items())
        raise CannotCheck(f"{store.describe()}: shard {i} of {count} of run {run} is there "
                          f"{len(objs)} times ({', '.join(objs)})")
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        listed = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise CannotCheck(f"{store.describe()}: run {run}: {len(missing)} of {count} shard(s) "
                          f"missing ({listed}): did a shard fail?")
    rows: dict[str, BackupRow] = {}
    listed_all: set[str] = set()
    notes: list[str] = []
    for r in sorted(results, key=lambda r: r["shard"]):
        listed_all.update(r["listed"])
        for row in r["rows"]:
            rows[row.name] = row
    unaudited = sorted(n for n in listed_all if n not in rows)
    for name in unaudited:
        rows[name] = BackupRow(name, ERROR, "listed by a shard but audited by none (it appeared "
                               "or vanished during the run): run the audit again")
    if unaudited:
        notes.append(f"{len(unaudited)} backup(s) not audited: the shards saw different listings")
    if len({r["listed_sha256"] for r in results}) > 1 and not unaudited:
        notes.append("the shards saw different listings (a backup was added or deleted mid-run)")
    first = results[0]
    merged = AuditReport(first["location"], first["require_seal"],
                         tuple(rows[n] for n in sorted(rows)), tuple(notes))
    if not merged.backups:
        merged = AuditReport(first["location"], first["require_seal"], (),
                             (f"no backups under {first['location']}",))
    return Merged(merged, run, count, tuple(sorted(r["object"] for r in results)), tuple(results))
