"""``audit`` with the fleet options of issue 16, around ``fleet.audit`` (which stays as it is):

* ``--shard I/N`` (shard.py): only the backups of shard I are audited;
* ``--state FILE`` (audit_state.py): backups unchanged since a verified run are not re-read;
* ``--results URL`` (shard.py), ``--metrics FILE`` (metrics.py), ``--attest FILE`` (attest.py):
  what the run writes, once the report is printed (``AuditRun.write_outputs``).

``fleet.audit`` is handed a view of the location (``_View``) that lists only the backups to
re-read and, for ``--attest``, opens each backup through a source that takes the SHA-256 of the
tarball and seal bytes the verifier reads.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO, cast

from merkle_backup import __version__
from merkle_backup.errors import Interrupted, UsageError
from merkle_backup.fleet.shard import (
    Shard,
    check_results_place,
    encode_result,
    listing_digest,
    shard_report,
)
from merkle_backup.fleet.state import Record, State, fingerprints, load_state, save_state
from merkle_backup.fleet.sweep import DEFAULT_MAX_AGE, ERROR, VERIFIED, AuditReport, BackupRow
from merkle_backup.fleet.sweep import audit as fleet_audit
from merkle_backup.storage.source import BackupSource, Location
from merkle_backup.velero import SEAL_SUFFIX


@dataclass
class FleetOptions:
    shard: Shard | None = None
    results: str | None = None
    run_id: str | None = None
    state: Path | None = None
    full: bool = False
    recheck_after: float = 7 * 86400.0
    metrics: Path | None = None
    attest: Path | None = None
    keys: list[Any] = field(default_factory=list)  # the signing keys of --attest
    connection: Any = None  # storage.options.ConnectionOptions, for an s3:// --results

    @property
    def any(self) -> bool:
        return any((self.shard, self.results, self.state, self.metrics, self.attest))


@dataclass
class AuditRun:
    report: AuditReport
    options: FleetOptions
    location: Any
    listed: list[str]
    key_ids: list[str]
    started: datetime
    finished: datetime
    duration: float
    skipped: int = 0
    state: State | None = None
    digests: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> tarball/seal sha256
    verified_at: dict[str, datetime] = field(default_factory=dict)  # last full verification
    notes: list[str] = field(default_factory=list)

    def write_outputs(self, say: Callable[[str], None]) -> None:
        o = self.options
        if o.results is not None:
            from merkle_backup.fleet.shard import ResultsStore

            shard = o.shard or Shard(0, 1)
            data = encode_result(
                self.report,
                shard=shard,
                run_id=o.run_id or "",
                listed=self.listed,
                key_ids=self.key_ids,
                started=_iso(self.started),
                finished=_iso(self.finished),
            )
            store = ResultsStore(o.results, o.connection)
            say(f"wrote shard {shard} result {store.put(shard.object_name, data)}")
        if o.state is not None and self.state is not None:
            save_state(o.state, self.state)
            say(f"wrote state {o.state}: {len(self.state.records)} verified backup(s)")
        if o.metrics is not None:
            from merkle_backup.fleet.metrics import write

            write(o.metrics, self.report, duration=self.duration, finished=self.finished,
                  full_verification=self.verified_at, skipped=self.skipped,
                  shard=str(o.shard) if o.shard else "")
            say(f"wrote metrics {o.metrics}")
        if o.attest is not None:
            from merkle_backup.fleet.attest import envelope
            from merkle_backup.storage.local import write_atomic

            write_atomic(o.attest, envelope(self.statement(), o.keys))
            say(f"wrote attestation {o.attest} ({len(self.report.backups)} backup(s))")

    def statement(self) -> dict[str, Any]:
        from merkle_backup.fleet.attest import statement, subject

        loc = self.report.location
        subjects = [subject(f"{loc}/backups/", listing_digest(self.listed))]
        rows = []
        for row in self.report.backups:
            d = self.digests.get(row.name, {})
            entry = row.to_json()
            entry["reread"] = row.name not in self.reused
            when = self.verified_at.get(row.name)
            entry["last_full_verification"] = _iso(when) if when else None
            for part, filename in (
                ("tarball", f"{row.name}.tar.gz"),
                ("seal", f"{row.name}{SEAL_SUFFIX}"),
            ):
                if part in d:
                    url = f"{loc}/backups/{row.name}/{filename}"
                    subjects.append(subject(url, d[part]))
                    entry[part] = {"name": url, "sha256": d[part]}
            rows.append(entry)
        o = self.options
        predicate = {
            "tool": {"name": "merkle-backup", "version": __version__},
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "scope": {
                "location": loc,
                "listed_backups": len(self.listed),
                "shard": {"index": o.shard.index, "count": o.shard.count} if o.shard else None,
                "require_seal": self.report.require_seal,
                "trusted_key_ids": self.key_ids,
                "incremental": (
                    {
                        "state": True,
                        "full": o.full,
                        "recheck_after_seconds": o.recheck_after,
                        "not_reread": self.skipped,
                    }
                    if o.state
                    else None
                ),
            },
            "findings": {
                "exit_code": self.report.exit_code,
                "verified": self.report.verified,
                "summary": self.report.summary,
                "backups": rows,
                "notes": list(self.report.notes),
            },
        }
        return statement(subjects, predicate)

    reused: set[str] = field(default_factory=set)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_audit(
    location: Any,
    trusted: Sequence[Any],
    *,
    jobs: int,
    require_seal: bool,
    limits: Any,
    options: FleetOptions,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    progress: Any = None,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> AuditRun:
    if options.attest is not None and not options.keys:
        raise UsageError("--attest needs --key (the private key that signs the attestation)")
    if options.results is not None:
        check_results_place(location, options.results)
    t0 = time.monotonic()
    started = clock()
    key_ids = sorted(k.key_id.hex() for k in trusted)
    listed = location.backup_names()
    names = [n for n in listed if options.shard is None or options.shard.holds(n)]
    need_prints = options.state is not None or options.attest is not None
    before = fingerprints(location, names) if need_prints and names else {}

    state: State | None = None
    old: State | None = None
    notes: list[str] = []
    if options.state is not None and options.full:
        notes.append("--full: every backup is read, the state file is not used")
    elif options.state is not None:
        old = load_state(options.state, location.describe(), key_ids)
        if old.note:
            notes.append(old.note)
    reused: dict[str, Record] = {}
    if old is not None:
        for name in names:
            record = old.usable(name, before[name], started, options.recheck_after)
            if record is not None and options.attest is not None and not (
                    record.tarball_sha256 and record.seal_sha256):
                record = None  # recorded without digests: re-read, so the attestation has them
            if record is not None:
                reused[name] = record
    to_read = [n for n in names if n not in reused]
    view = _View(location, to_read, digest=options.attest is not None)

    def reused_rows() -> list[BackupRow]:
        return [BackupRow(n, VERIFIED, f"{r.detail}; unchanged since verified "
                          f"{_iso(r.verified_at)}, not re-read", r.uid, r.root)
                for n, r in reused.items()]

    try:
        report = fleet_audit(view, trusted, jobs=jobs, require_seal=require_seal, limits=limits,
                             progress=progress, clock=clock, max_age=max_age) if to_read else None
    except Interrupted as e:
        partial = e.partial
        if partial is not None and reused:
            rows = sorted([*partial.backups, *reused_rows()], key=lambda r: r.name)
            partial = AuditReport(partial.location, require_seal, tuple(rows), partial.notes)
        raise Interrupted(partial) from e
    read_rows = list(report.backups) if report is not None else []
    if report is not None:
        notes.extend(n for n in report.notes if not n.startswith("no backups under"))

    digests: dict[str, dict[str, str]] = {}
    after = fingerprints(location, to_read) if need_prints and to_read else {}
    checked: list[BackupRow] = []
    for read in read_rows:
        row = read
        if row.status == VERIFIED and need_prints and after.get(row.name) != before.get(row.name):
            row = BackupRow(row.name, ERROR, "changed while it was being audited: run the audit "
                            "again", row.uid, row.root)
        got = view.digests.get(row.name)
        if options.attest is not None and row.status == VERIFIED and not (got and got.ok):
            row = BackupRow(row.name, ERROR, "the tarball read differently in the verifier's "
                            "two passes: run the audit again", row.uid, row.root)
        if got and got.ok:
            digests[row.name] = got.as_dict()
        checked.append(row)

    finished = clock()
    verified_at: dict[str, datetime] = {}
    if options.state is not None:
        records: dict[str, Record] = {}
        for row in checked:
            if row.status == VERIFIED:
                d = digests.get(row.name, {})
                records[row.name] = Record(before[row.name], started, row.detail, row.uid, row.root,
                                           d.get("tarball"), d.get("seal"))
        for name, r in reused.items():
            records[name] = r
        state = State(location.describe(), tuple(key_ids), records)
    for row in checked:
        if row.status == VERIFIED:
            verified_at[row.name] = started
    for name, r in reused.items():
        verified_at[name] = r.verified_at
        if r.tarball_sha256 and r.seal_sha256:
            digests[name] = {"tarball": r.tarball_sha256, "seal": r.seal_sha256}
    if reused:
        notes.append(f"{len(reused)} backup(s) unchanged since their last full verification were "
                     "not re-read (--full re-reads them)")
    if options.shard is not None:
        notes.append(f"shard {options.shard}: {len(names)} of {len(listed)} backup(s)")
    rows = sorted([*checked, *reused_rows()], key=lambda r: r.name)
    if not rows and options.shard is None:
        notes.append(f"no backups under {location.describe()}")
    final = (
        shard_report(location.describe(), require_seal, rows, notes, len(listed))
        if options.shard is not None
        else AuditReport(location.describe(), require_seal, tuple(rows), tuple(notes))
    )
    run = AuditRun(final, options, location, list(listed), key_ids, started, finished,
                   time.monotonic() - t0, len(reused), state, digests, verified_at, notes)
    run.reused = set(reused)
    return run


# -- the view of the location that fleet.audit gets ----------------------------------------------


class _Digest:
    def __init__(self) -> None:
        self.tarball: list[str] = []  # one per complete read
        self.seal: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.tarball) and len(set(self.tarball)) == 1 and self.seal is not None

    def as_dict(self) -> dict[str, str]:
        return {"tarball": self.tarball[0], "seal": self.seal or ""}


class _View:
    def __init__(self, location: Location, names: Sequence[str], *, digest: bool) -> None:
        self._location = location
        self._names = list(names)
        self._digest = digest
        self.digests: dict[str, _Digest] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._location, name)

    def describe(self) -> str:
        return self._location.describe()

    def backup_names(self) -> list[str]:
        return list(self._names)

    def read_object(self, name: str, filename: str) -> bytes | None:
        return self._location.read_object(name, filename)

    def has_seal(self, name: str) -> bool:
        return self._location.has_seal(name)

    def open(self, name: str) -> BackupSource:
        source = self._location.open(name)
        if not self._digest:
            return source
        record = self.digests[name] = _Digest()
        return _DigestingSource(source, record)


class _DigestingSource:
    """A BackupSource that takes the SHA-256 of what the verifier reads: each complete read of
    the tarball, and the seal (a seekable file: hashed, then rewound)."""

    def __init__(self, inner: BackupSource, record: _Digest) -> None:
        self._inner = inner
        self._record = record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextmanager
    def open_tarball(self) -> Iterator[BinaryIO]:
        with self._inner.open_tarball() as stream:
            hashing = _HashingStream(stream)
            yield cast(BinaryIO, hashing)  # the reads the verifier makes
            if hashing.complete:
                self._record.tarball.append(hashing.hexdigest())

    @contextmanager
    def open_seal(self) -> Iterator[BinaryIO]:
        with self._inner.open_seal() as f:
            h = hashlib.sha256()
            start = f.tell()
            while chunk := f.read(1 << 20):
                h.update(chunk)
            f.seek(start)
            self._record.seal = h.hexdigest()
            yield f


class _HashingStream:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self.complete = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        if data:
            self._hash.update(data)
        elif n != 0:
            self.complete = True
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def __getattr__(self, name: str) -> Any:
        if name in ("seek", "tell", "peek", "read1", "fileno"):
            raise AttributeError(name)  # a hashed stream is read straight through
        return getattr(self._stream, name)
