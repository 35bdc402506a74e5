"""``seal-all --log``: seal-all that logs each seal before writing it (docs/format.md §12.7,
docs/threat-model.md T40-T49). Beside ``sweep.seal_all``; the log's findings (``judge_seal``) are
the log checker's (``tlog/check.py``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from merkle_backup.errors import Error, NotAuthentic
from merkle_backup.fleet.sweep import (
    DEFAULT_MAX_AGE,
    ERROR,
    SEALED,
    SKIPPED,
    TAMPERED,
    BackupRow,
    SealAllReport,
    _map,
    _seal_head_problem,
    final_phase,
)
from merkle_backup.signing import SigningKey, public_key_of
from merkle_backup.storage.source import BackupSource
from merkle_backup.tlog.check import (
    BAD,
    SEAL_MISSING,
    NameIndex,
    bucket_seal,
    by_name,
    judge_seal,
)
from merkle_backup.tlog.entries import SEAL, TOMBSTONE, Entry, seal_entries
from merkle_backup.tlog.log import ClaimRefused, Log
from merkle_backup.velero import BACKUP_OBJECT, backup_times, completed_within, is_backup_name


class SealAllLogReport(SealAllReport):
    @property
    def summary(self) -> dict[str, int]:
        return {s: len(self.with_status(s)) for s in (SEALED, SKIPPED, TAMPERED, ERROR, *BAD)}

    @property
    def exit_code(self) -> int:
        if any(self.with_status(s) for s in BAD):
            return 1
        return super().exit_code


class _AlreadyLogged(Error):
    pass


class _LoggingSource:
    """A BackupSource whose write_seal first logs the seal (or, in repair mode, requires it to
    be the logged checkpoint). Everything else is the wrapped source's."""

    def __init__(self, inner: BackupSource, log: Log, private: SigningKey, *, name: str,
                 expiration: datetime | None, known: int, repair: bytes | None = None,
                 crash: Callable[[str], None] | None = None) -> None:
        self._inner, self._log, self._private = inner, log, private
        self._name, self._expiration, self._known = name, expiration, known
        self._repair, self._crash = repair, crash
        self.logged_at: int | None = None

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    def write_seal(self, data: bytes | BinaryIO, *, replace: bool) -> str:
        from merkle_backup.formats.seal import read_seal_head

        f = io.BytesIO(data) if isinstance(data, bytes) else data
        pos = f.tell()
        head = read_seal_head(f)
        f.seek(pos)
        if self._repair is not None:
            if head.checkpoint != self._repair:
                raise NotAuthentic(f"{self._name}: the backup is not what the log holds "
                                   "(resealing at the logged time gives another checkpoint)")
            return self._inner.write_seal(f, replace=replace)
        raws = seal_entries(head.checkpoint, head.signature, self._private, self._expiration)
        known = self._known

        def guard(entries: Sequence[Entry]) -> None:
            for e in entries[known:]:
                if e.backup == self._name and e.kind in (SEAL, TOMBSTONE):
                    raise _AlreadyLogged("logged meanwhile by another sealer")

        self.logged_at, _ = self._log.append(self._private, raws, guard=guard, crash=self._crash)
        if self._crash:
            self._crash("logged")
        return self._inner.write_seal(f, replace=replace)


def seal_all_logged(location: Any, private: SigningKey, log: Log, *,
                    clock: Callable[[], datetime], max_age: timedelta = DEFAULT_MAX_AGE,
                    backfill: bool = False, jobs: int = 1, limits: Any = None,
                    crash: Callable[[str], None] | None = None) -> SealAllLogReport:
    from merkle_backup.archive import Limits

    limits = limits or Limits()
    me = public_key_of(private)
    head = log.head()
    entries = log.entries(head)
    index = by_name(entries)
    known = len(entries)
    later = NameIndex(log)  # the re-checks' view: entries logged since, indexed once
    names = location.backup_names()

    def one(name: str) -> BackupRow:
        from merkle_backup.builder import seal_backup

        if not is_backup_name(name):
            return BackupRow(name, SKIPPED, "not a Velero backup name")
        try:
            logged = index.get(name)
            # A seal that does not decode is reported, never replaced (as without the log).
            broken = _seal_head_problem(location, name) if location.has_seal(name) else None
            if broken is not None:
                return BackupRow(name, TAMPERED, broken)
            sealed = bucket_seal(location, name, {me.key_id: me})
            if sealed is not None:
                finding, detail = judge_seal(name, sealed[0], logged)
                if finding is not None:  # logged since this run read the log (another sealer)?
                    finding, detail = judge_seal(name, sealed[0], later.fresh(name))
                if finding is None:
                    return BackupRow(name, SKIPPED, f"already sealed and logged ({detail})")
                return BackupRow(name, finding, detail)
            phase, not_ready = final_phase(location, name)
            if not_ready is not None:
                return not_ready
            assert phase is not None
            completed, expiration = backup_times(location.read_object(name, BACKUP_OBJECT))
            now = clock()
            if logged is not None and logged.last is not None and logged.last[1].kind == SEAL:
                i, e = logged.last  # logged, seal absent: a crash after the append? reseal exactly
                source = location.open(name)
                seal_backup(_LoggingSource(source, log, private, name=name, expiration=None,
                                           known=known, repair=e.checkpoint),
                            private, created_at=e.time, limits=limits, replace=False)
                return BackupRow(
                    name, SEALED, f"resealed as logged at entry {i}", e.uid, e.root.hex()
                )
            # Forgotten (tombstone), or never logged: a new backup, sealed if recent.
            recent = completed_within(completed, now, max_age)
            if not recent and not backfill:
                when = (
                    f"completed {completed:%Y-%m-%dT%H:%M:%SZ}"
                    if completed
                    else "no completionTimestamp"
                )
                return BackupRow(name, SEAL_MISSING, f"{when}, older than --max-age: not sealed "
                                 "(check it, then seal-all --backfill)", phase.uid)
            source = _LoggingSource(location.open(name), log, private, name=name,
                                    expiration=expiration, known=known, crash=crash)
            result = seal_backup(source, private, created_at=now, limits=limits, replace=False)
            cp = result.checkpoint
            how = "backfilled, " if not recent else ""
            return BackupRow(
                name,
                SEALED,
                f"{how}{cp.tree_size} leaves, log entry {source.logged_at}",
                cp.uid,
                cp.root.hex(),
            )
        except _AlreadyLogged as e:
            return BackupRow(name, SKIPPED, e.diagnostics())
        except ClaimRefused:
            raise  # the log store holds a claim no sealer made: the whole run stops (T69)
        except Error as e:
            return _raced(name, e)

    def _raced(name: str, e: Error) -> BackupRow:
        """Another sealer (an overlapping CronJob run) sealed and logged it meanwhile?"""
        try:
            sealed = bucket_seal(location, name, {me.key_id: me})
            if sealed is not None and judge_seal(name, sealed[0], later.fresh(name))[0] is None:
                return BackupRow(name, SKIPPED, "sealed and logged meanwhile by another sealer")
        except Error:
            pass
        return BackupRow(name, ERROR, e.diagnostics())

    rows = _map(one, names, jobs)
    notes_ = () if names else (f"no backups under {location.describe()}",)
    return SealAllLogReport(location.describe(), tuple(rows), (*notes_, f"log {log.describe()}"))
