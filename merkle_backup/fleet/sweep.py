"""Every backup of a storage location at once: ``seal-all`` (the CronJob beside Velero) and
``audit`` (verify everything, in parallel).

A location is ``s3://BUCKET/PREFIX`` or a local folder laid out like one (``storage.resolve``):
both hold ``backups/<name>/`` folders. Each backup gets one row in a report; nothing here prints.

Classification, per backup, in this order (a seal is checked before anything the bucket says
about the backup, since the bucket is the attacker: a tampered ``velero-backup.json`` cannot
turn a sealed backup into an "unfinished" one):

* audit: sealed -> ``verified`` or ``tampered`` (or ``error`` when it could not be checked);
  unsealed -> ``unfinished`` (phase not final, or no ``velero-backup.json`` yet) or ``unsealed``.
* seal-all: sealed -> ``skipped`` once the seal's head decodes, else ``tampered`` (a 0-byte,
  truncated or foreign file, or a link, at the seal's place: exit 1); phase not final ->
  ``skipped``; completed longer ago than ``max_age`` (or with no completionTimestamp) ->
  ``skipped`` unless ``backfill``: a seal proves what the bucket held when it was made, so an old
  backup is never sealed silently (it may have been changed, and its seal deleted, since);
  otherwise ``sealed`` or ``error``. It never replaces a seal and never forces past the
  sealer's refusals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from merkle_backup.archive import Limits
from merkle_backup.errors import (
    CannotCheck,
    Error,
    ExitCode,
    FormatError,
    Interrupted,
    NotAuthentic,
    SignerError,
)
from merkle_backup.signing import PublicKey, SigningKey
from merkle_backup.storage.source import Location
from merkle_backup.velero import (
    BACKUP_OBJECT,
    BackupInfo,
    backup_times,
    completed_within,
    is_backup_name,
    parse_backup_object,
)

# Audit statuses.
VERIFIED = "verified"
TAMPERED = "tampered"
UNSEALED = "unsealed"
UNFINISHED = "unfinished"
ERROR = "error"  # could not be checked (or sealed)
# seal-all statuses (and ERROR).
SEALED = "sealed"
SKIPPED = "skipped"

# seal-all and audit: a final backup completed longer ago than this is not sealed silently.
DEFAULT_MAX_AGE = timedelta(hours=6)

# On an interrupt, how long the backups already being checked (or sealed) may take to finish
# before they are abandoned (their rows left out).
INTERRUPT_GRACE_SECONDS = 1.5


@dataclass(frozen=True)
class FailureRow:
    path: str
    problem: str
    detail: str = ""


@dataclass(frozen=True)
class BackupRow:
    """One backup's outcome."""

    name: str
    status: str
    detail: str = ""
    uid: str | None = None
    root: str | None = None
    failures: tuple[FailureRow, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "uid": self.uid,
            "root": self.root,
            "failures": [
                {"path": f.path, "problem": f.problem, "detail": f.detail} for f in self.failures
            ],
        }


@dataclass(frozen=True)
class AuditReport:
    location: str
    require_seal: bool
    backups: tuple[BackupRow, ...]
    notes: tuple[str, ...] = ()

    def with_status(self, status: str) -> list[BackupRow]:
        return [b for b in self.backups if b.status == status]

    @property
    def summary(self) -> dict[str, int]:
        return {
            s: len(self.with_status(s)) for s in (VERIFIED, TAMPERED, UNSEALED, UNFINISHED, ERROR)
        }

    @property
    def exit_code(self) -> int:
        """1 when any backup is tampered (or unsealed under --require-seal); else 3 when any
        could not be checked, or there was no backup at all; else 0."""
        if self.with_status(TAMPERED) or (self.require_seal and self.with_status(UNSEALED)):
            return ExitCode.NOT_AUTHENTIC
        if self.with_status(ERROR) or not self.backups:
            return ExitCode.CANNOT_CHECK
        return ExitCode.VERIFIED

    @property
    def verified(self) -> bool:
        return self.exit_code == ExitCode.VERIFIED

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "exit_code": self.exit_code,
            "location": self.location,
            "require_seal": self.require_seal,
            "summary": self.summary,
            "backups": [b.to_json() for b in self.backups],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class SealAllReport:
    location: str
    backups: tuple[BackupRow, ...]
    notes: tuple[str, ...] = field(default=())

    def with_status(self, status: str) -> list[BackupRow]:
        return [b for b in self.backups if b.status == status]

    @property
    def summary(self) -> dict[str, int]:
        return {s: len(self.with_status(s)) for s in (SEALED, SKIPPED, TAMPERED, ERROR)}

    @property
    def exit_code(self) -> int:
        """1 when an existing seal does not decode; else 3 when any could not be sealed."""
        if self.with_status(TAMPERED):
            return ExitCode.NOT_AUTHENTIC
        return ExitCode.CANNOT_CHECK if self.with_status(ERROR) else ExitCode.VERIFIED

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == ExitCode.VERIFIED,
            "exit_code": self.exit_code,
            "location": self.location,
            "summary": self.summary,
            "backups": [b.to_json() for b in self.backups],
            "notes": list(self.notes),
        }


#: Told of each backup as it is done: (its row, backups done, backups in all).
RowProgress = Callable[["BackupRow", int, int], None]


def audit(
    location: Location,
    trusted: Sequence[PublicKey],
    *,
    jobs: int = 4,
    require_seal: bool = False,
    limits: Limits | None = None,
    progress: RowProgress | None = None,
    clock: Callable[[], datetime] | None = None,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> AuditReport:
    """Verify every backup of ``location`` against its seal, ``jobs`` at a time; ``progress``
    is told of each row as it is done (see ``_map``). With ``clock``, an unsealed final backup
    completed longer ago than ``max_age`` says that seal-all will not seal it."""
    if not trusted:
        raise CannotCheck("no trusted public key given")
    names = location.backup_names()
    limits = limits or Limits()
    too_old = None if clock is None else (clock(), max_age)
    try:
        rows = _map(lambda name: _aged(location, _audit_one(location, name, trusted, limits),
                                       too_old), names, jobs, progress)
    except Interrupted as e:
        raise Interrupted(AuditReport(location.describe(), require_seal, tuple(e.partial or ()),
                                      (_interrupted_note(e.partial, names),))) from e
    notes = () if names else (f"no backups under {location.describe()}",)
    return AuditReport(location.describe(), require_seal, tuple(rows), notes)


def seal_all(
    location: Location,
    private_key: SigningKey | Sequence[SigningKey],
    *,
    clock: Callable[[], datetime],
    jobs: int = 1,
    limits: Limits | None = None,
    progress: RowProgress | None = None,
    max_age: timedelta | None = None,
    backfill: bool = False,
) -> SealAllReport:
    """Seal every backup of ``location`` that is final, has no seal yet and completed within
    ``max_age`` (any age with ``backfill``; ``max_age`` None: the caller vouches for the
    backups' age, as bench/ does; the command line always gives it); ``progress`` is told of
    each row as it is done (see ``_map``)."""
    if max_age is None:
        backfill = True
    names = location.backup_names()
    limits = limits or Limits()
    try:
        rows = _map(lambda name: _seal_one(location, name, private_key, clock, limits, max_age,
                                           backfill), names, jobs, progress)
    except Interrupted as e:
        raise Interrupted(SealAllReport(location.describe(), tuple(e.partial or ()),
                                        (_interrupted_note(e.partial, names),))) from e
    notes = () if names else (f"no backups under {location.describe()}",)
    old = sum(1 for r in rows if r.status == SKIPPED and r.detail.endswith(TOO_OLD))
    if old:
        notes = (*notes, f"{old} final backup(s) older than --max-age left unsealed: check "
                         "them, then seal-all --backfill")
    return SealAllReport(location.describe(), tuple(rows), notes)


def _interrupted_note(done: Sequence[BackupRow] | None, names: Sequence[str]) -> str:
    return f"interrupted: {len(names) - len(done or ())} of {len(names)} backup(s) not done"


def _map(work: Callable[[str], BackupRow], names: Iterable[str], jobs: int,
         progress: RowProgress | None = None) -> list[BackupRow]:
    """Rows in name order. A bug in ``work`` re-raises here, with its traceback. ``progress``
    is called in this (the calling) thread with each row as it is done, the number done and the
    number of backups.

    An interrupt (``Interrupted`` or ``KeyboardInterrupt`` in the calling thread) cancels the
    backups not started, gives those running INTERRUPT_GRACE_SECONDS to finish, abandons the
    rest (a thread cannot be stopped; the command line exits without waiting for it) and raises
    ``Interrupted`` with the rows done so far, in name order.
    """
    names = list(names)
    rows: dict[str, BackupRow] = {}
    if jobs <= 1 or len(names) <= 1:
        try:
            for n in names:
                rows[n] = work(n)
                if progress is not None:
                    progress(rows[n], len(rows), len(names))
        except (Interrupted, KeyboardInterrupt) as e:
            raise Interrupted([rows[n] for n in names if n in rows]) from e
        return [rows[n] for n in names]
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="merkle-backup")
    futures: dict[Future[BackupRow], str] = {}
    try:
        futures = {pool.submit(work, n): n for n in names}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                rows[futures[future]] = future.result()  # a bug re-raises here
                if progress is not None:
                    progress(rows[futures[future]], len(rows), len(names))
    except (Interrupted, KeyboardInterrupt) as e:
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        running = [f for f in futures if not f.cancelled()]
        wait(running, timeout=max(0.0, deadline - time.monotonic()))
        for future in running:
            if future.done() and not future.cancelled() and future.exception() is None:
                rows[futures[future]] = future.result()
        raise Interrupted([rows[n] for n in names if n in rows]) from e
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [rows[n] for n in names]


TOO_OLD = "older than --max-age: not sealed (check it, then seal-all --backfill)"


def too_old(location: Location, name: str, now: datetime, max_age: timedelta) -> str | None:
    """Why seal-all leaves a final backup unsealed (its velero-backup.json says it completed
    longer ago than ``max_age``, or not when), or None when it is recent."""
    completed, _ = backup_times(location.read_object(name, BACKUP_OBJECT))
    if completed_within(completed, now, max_age):
        return None
    when = f"completed {completed:%Y-%m-%dT%H:%M:%SZ}" if completed else "no completionTimestamp"
    return f"{when}, {TOO_OLD}"


def _aged(location: Location, row: BackupRow, old: tuple[datetime, timedelta] | None
          ) -> BackupRow:
    """An unsealed row, with why seal-all will not seal it when it is too old (T70)."""
    if old is None or row.status != UNSEALED:
        return row
    try:
        why = too_old(location, row.name, *old)
    except Error as e:
        return BackupRow(row.name, ERROR, e.diagnostics(), row.uid)
    return row if why is None else replace(row, detail=f"{row.detail}; {why}")


def _audit_one(
    location: Location, name: str, trusted: Sequence[PublicKey], limits: Limits
) -> BackupRow:
    from merkle_backup.verifier import verify_backup

    if not is_backup_name(name):
        return BackupRow(name, ERROR, "not a Velero backup name: this folder is not a backup")
    try:
        if location.has_seal(name):
            report = verify_backup(location.open(name), trusted, limits=limits)
            failures = tuple(FailureRow(f.path, f.problem, f.detail) for f in report.failures)
            if report.verified:
                detail = f"{report.tree_size} leaves"
                if report.out_of_scope_failures:  # pragma: no cover - whole scope has none
                    detail += f", {report.out_of_scope_failures} out of scope"
                return BackupRow(name, VERIFIED, detail, report.uid, report.root.hex())
            return BackupRow(name, TAMPERED, _failure_summary(failures), report.uid,
                             report.root.hex(), failures)
        phase = _phase(location, name)
        if phase is None:
            return BackupRow(name, UNFINISHED, f"no {BACKUP_OBJECT} yet (upload in progress?)")
        if not phase.is_final:
            return BackupRow(name, UNFINISHED, f"phase {phase.phase or '(none)'}", phase.uid)
        return BackupRow(name, UNSEALED, f"phase {phase.phase}, no seal", phase.uid)
    except NotAuthentic as e:
        return BackupRow(name, TAMPERED, e.diagnostics())
    except Error as e:
        return BackupRow(name, ERROR, e.diagnostics())


def _seal_one(location: Location, name: str, private_key: SigningKey | Sequence[SigningKey],
              clock: Callable[[], datetime], limits: Limits, max_age: timedelta | None,
              backfill: bool) -> BackupRow:
    from merkle_backup.builder import seal_backup

    if not is_backup_name(name):
        return BackupRow(name, SKIPPED, "not a Velero backup name")
    try:
        if location.has_seal(name):
            problem = _seal_head_problem(location, name)
            if problem is not None:
                return BackupRow(name, TAMPERED, problem)
            return BackupRow(name, SKIPPED, "already sealed")
        phase, not_ready = final_phase(location, name)
        if not_ready is not None:
            return not_ready
        assert phase is not None
        now = clock()
        old = too_old(location, name, now, max_age) if max_age is not None else None
        if old is not None and not backfill:
            return BackupRow(name, SKIPPED, old, phase.uid)
        source = location.open(name)
        result = seal_backup(source, private_key, created_at=now, limits=limits, replace=False)
        cp = result.checkpoint
        how = "backfilled, " if old is not None else ""
        return BackupRow(name, SEALED, f"{how}{cp.tree_size} leaves, seal {source.seal_path}",
                         cp.uid, cp.root.hex())
    except SignerError:
        # The signer is down or lies (docs/format.md §6.1): every other backup would fail the
        # same way, so the run stops here; the seals already written are whole.
        raise
    except Error as e:
        return BackupRow(name, ERROR, e.diagnostics())


def _seal_head_problem(location: Location, name: str) -> str | None:
    """Why the existing seal of ``name`` is not a seal (its head does not decode), or None.
    Only the head is read (the signature is for audit to check): enough to tell a seal from
    an empty, truncated or planted file. I/O failures raise (the backup is an error row)."""
    from merkle_backup.storage.files import NotRegularFile

    try:
        location.read_seal_head(name)
    except (FormatError, NotRegularFile) as e:
        return f"existing seal is not a seal: {e.diagnostics()}"
    return None


def _phase(location: Location, name: str) -> BackupInfo | None:
    data = location.read_object(name, BACKUP_OBJECT)
    if data is None:
        return None
    return parse_backup_object(data, f"{location.describe()}/backups/{name}")


def final_phase(location: Location, name: str) -> tuple[BackupInfo | None, BackupRow | None]:
    """For seal-all: the backup's velero-backup.json, and the SKIPPED row when it cannot be
    sealed yet (no velero-backup.json: an upload in progress; a phase that is not final)."""
    phase = _phase(location, name)
    if phase is None:
        return None, BackupRow(name, SKIPPED, f"no {BACKUP_OBJECT} yet (upload in progress?)")
    if not phase.is_final:
        return phase, BackupRow(
            name, SKIPPED, f"phase {phase.phase or '(none)'}: not final yet", phase.uid
        )
    return phase, None


def _failure_summary(failures: Sequence[FailureRow]) -> str:
    if not failures:  # pragma: no cover - a report that did not verify names its failures
        return "not authentic"
    first = failures[0]
    more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"{len(failures)} failure(s): {first.problem} {first.path}{more}"
