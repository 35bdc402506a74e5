"""The log beside a storage location: audit --log, verify --log, forget, witness, and the
findings seal-all --log (fleet/seal_logged.py) reports (docs/format.md §12.7,
docs/threat-model.md T40-T49).

Findings (each a row status): ``unlogged seal`` (a seal the log does not hold), ``replaced``
(the bucket's seal is not the name's logged checkpoint, or the logged seal is gone),
``replayed`` (an older logged checkpoint, or one forgotten by a tombstone, is back),
``deleted early`` (a logged backup absent before its expiration, with no tombstone),
``seal missing`` (a final backup past --max-age that the log does not hold); and the fine ones
``expired`` and ``forgotten``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from merkle_backup.core.checkpoint import CheckpointError, parse_checkpoint
from merkle_backup.core.tree import verify_consistency, verify_inclusion
from merkle_backup.errors import (
    CannotCheck,
    Error,
    FormatError,
    NotAuthentic,
    ProofError,
    UsageError,
)
from merkle_backup.fleet.sweep import (
    DEFAULT_MAX_AGE,
    ERROR,
    TAMPERED,
    UNSEALED,
    AuditReport,
    BackupRow,
)
from merkle_backup.signing import PublicKey, SigningKey, public_key_of
from merkle_backup.tlog import note as notes
from merkle_backup.tlog.entries import (
    EXPIRY,
    SEAL,
    TOMBSTONE,
    Entry,
    tombstone_entry,
)
from merkle_backup.tlog.log import SHA256, Head, Log
from merkle_backup.velero import BACKUP_OBJECT, backup_times, is_backup_name

UNLOGGED = "unlogged seal"
REPLACED = "replaced"
REPLAYED = "replayed"
DELETED_EARLY = "deleted early"
SEAL_MISSING = "seal missing"
EXPIRED = "expired"
FORGOTTEN = "forgotten"
BAD = (UNLOGGED, REPLACED, REPLAYED, DELETED_EARLY, SEAL_MISSING)


# --- what the bucket says ------------------------------------------------------------------------

def bucket_seal(
    location: Any, name: str, trusted: dict[bytes, PublicKey]
) -> tuple[bytes, bytes] | None:
    """The (checkpoint, signature) of the seal in the bucket, signature checked; None: no seal."""
    from merkle_backup.formats.seal import read_seal_head

    if not location.has_seal(name):
        return None
    with location.open(name).open_seal() as f:
        head = read_seal_head(f)
    _check_seal_signature(head.checkpoint, head.signature, trusted, name)
    return head.checkpoint, head.signature


def _check_seal_signature(checkpoint: bytes, signature: bytes, trusted: dict[bytes, PublicKey],
                          name: str) -> None:
    try:
        cp = parse_checkpoint(checkpoint)
    except CheckpointError as e:
        raise FormatError(f"seal of {name}: {e}") from e
    key = trusted.get(cp.key_id)
    if key is None:
        raise NotAuthentic(f"seal of {name} is not signed by a trusted key")
    key.verify(signature, checkpoint)


# --- the log's view, by backup name ---------------------------------------------------------------

@dataclass
class Logged:
    seals: list[tuple[int, Entry]] = field(default_factory=list)
    last: tuple[int, Entry] | None = None          # the latest seal or tombstone
    expiry: dict[bytes, datetime] = field(default_factory=dict)  # root -> expiration
    by_checkpoint: dict[bytes, int] = field(default_factory=dict)  # checkpoint -> first seal entry

    @property
    def latest_seal(self) -> tuple[int, Entry] | None:
        return self.seals[-1] if self.seals else None


def _index(out: dict[str, Logged], i: int, e: Entry) -> None:
    logged = out.setdefault(e.backup, Logged())
    if e.kind == SEAL:
        logged.seals.append((i, e))
        logged.by_checkpoint.setdefault(e.checkpoint, i)
        logged.last = (i, e)
    elif e.kind == TOMBSTONE:
        logged.last = (i, e)
    elif e.kind == EXPIRY:
        logged.expiry[e.root] = e.time


def by_name(entries: Sequence[Entry]) -> dict[str, Logged]:
    """The log's view by backup name, in one pass over the entries."""
    out: dict[str, Logged] = {}
    for i, e in enumerate(entries):
        _index(out, i, e)
    return out


class NameIndex:
    """``by_name`` of a log that grows while a run reads it (another sealer appends): each
    ``fresh`` reads the new head and indexes only the entries past those indexed before, so a
    run's re-checks cost the new entries, not the whole log each time."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self._names: dict[str, Logged] = {}
        self._count = 0
        self._lock = threading.Lock()

    def fresh(self, name: str) -> Logged | None:
        entries = self._log.entries(self._log.head())
        with self._lock:
            for i in range(self._count, len(entries)):
                _index(self._names, i, entries[i])
            self._count = max(self._count, len(entries))
            return self._names.get(name)


def judge_seal(name: str, checkpoint: bytes, logged: Logged | None) -> tuple[str | None, str]:
    """The finding for a bucket seal (None: it is the name's latest logged checkpoint)."""
    if logged is None or not logged.seals:
        return UNLOGGED, "its seal is not in the log"
    assert logged.last is not None
    index, last = logged.last
    if last.kind == TOMBSTONE:
        return REPLAYED, f"forgotten by the tombstone at log entry {index}, yet a seal is back"
    if last.checkpoint == checkpoint:
        return None, f"log entry {index}"
    i = logged.by_checkpoint.get(checkpoint)
    if i is not None:
        e = next(e for j, e in logged.seals if j == i)
        return REPLAYED, (f"an older logged checkpoint (entry {i}, sealed "
                          f"{e.time:%Y-%m-%dT%H:%M:%SZ}); the latest is entry {index}")
    return REPLACED, f"its seal is not the logged checkpoint of {name} (log entry {index})"


# --- audit with the log ---------------------------------------------------------------------------

class AuditLogReport(AuditReport):
    @property
    def summary(self) -> dict[str, int]:
        base = super().summary
        return {**base, **{s: len(self.with_status(s)) for s in (*BAD, EXPIRED, FORGOTTEN)}}

    @property
    def exit_code(self) -> int:
        if any(self.with_status(s) for s in BAD):
            return 1
        code = super().exit_code
        if code == 3 and not self.backups:
            return 3
        if code == 3 and not self.with_status(ERROR):
            return 0  # only logged rows: every backup of the log is accounted for
        return code


def audit_logged(
    location: Any,
    trusted: Sequence[PublicKey],
    log: Log,
    *,
    report: AuditReport,
    clock: Callable[[], datetime],
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> AuditLogReport:
    """``report``: fleet.audit's; each row gets the log's finding, and every logged backup
    absent from the bucket gets a row."""
    keys = {k.key_id: k for k in trusted}
    head = log.head()
    index = by_name(log.entries(head))
    now = clock()
    rows: list[BackupRow] = []
    present = set()
    for row in report.backups:
        present.add(row.name)
        rows.append(_audit_row(location, row, index.get(row.name), keys, now, max_age))
    for name in sorted(set(index) - present):
        logged = index[name]
        if logged.last is None:
            continue
        i, last = logged.last
        if last.kind == TOMBSTONE:
            rows.append(
                BackupRow(name, FORGOTTEN, f"tombstone at log entry {i}", last.uid, last.root.hex())
            )
            continue
        expiration = logged.expiry.get(last.root)
        if expiration is not None and now >= expiration:
            rows.append(BackupRow(name, EXPIRED, f"absent, expired {expiration:%Y-%m-%dT%H:%M:%SZ}",
                                  last.uid, last.root.hex()))
        else:
            until = (
                f"it expires {expiration:%Y-%m-%dT%H:%M:%SZ}"
                if expiration
                else "no expiration logged"
            )
            rows.append(
                BackupRow(
                    name,
                    DELETED_EARLY,
                    f"logged at entry {i}, absent; {until}; no tombstone",
                    last.uid,
                    last.root.hex(),
                )
            )
    notes_ = (*tuple(report.notes), f"log {log.describe()}: {head.size} entries")
    return AuditLogReport(report.location, report.require_seal, tuple(rows), notes_)


def _audit_row(location: Any, row: BackupRow, logged: Logged | None, keys: dict[bytes, PublicKey],
               now: datetime, max_age: timedelta) -> BackupRow:
    name = row.name
    try:
        sealed = bucket_seal(location, name, keys) if is_backup_name(name) else None
    except NotAuthentic:
        return row  # the audit row already says tampered
    except Error as e:
        return (
            row
            if row.status in (TAMPERED, ERROR)
            else replace(row, status=ERROR, detail=e.diagnostics())
        )
    if sealed is not None:
        finding, detail = judge_seal(name, sealed[0], logged)
        if finding is None:
            return row
        return replace(
            row, status=finding, detail=f"{detail}; audit: {row.status} {row.detail}".rstrip()
        )
    if logged is not None and logged.last is not None and logged.last[1].kind == SEAL:
        return replace(
            row, status=REPLACED, detail=f"logged at entry {logged.last[0]}, but its seal is gone"
        )
    if row.status == UNSEALED:
        completed, _ = backup_times(location.read_object(name, BACKUP_OBJECT))
        if completed is None or now - completed > max_age:
            return replace(
                row, status=SEAL_MISSING, detail=f"{row.detail}; past --max-age and not logged"
            )
    return row


# --- verify --log, forget, witness ----------------------------------------------------------------

@dataclass(frozen=True)
class LogProof:
    log: str
    origin: str
    index: int
    size: int
    root: bytes
    proof: tuple[bytes, ...]
    witnessed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        import base64

        return {"log": self.log, "origin": self.origin, "index": self.index, "size": self.size,
                "root": base64.b64encode(self.root).decode(),
                "inclusion_proof": [base64.b64encode(h).decode() for h in self.proof],
                "latest_for_name": True, "witnessed_by": list(self.witnessed)}


def witness_object(witness_raw: bytes) -> str:
    import hashlib

    return f"witness/{hashlib.sha256(witness_raw).hexdigest()}"


def verify_in_log(
    log: Log, name: str, checkpoint: bytes, witnesses: Sequence[PublicKey] = ()
) -> LogProof:
    """NotAuthentic unless ``checkpoint`` is in the log, by an inclusion proof checked against
    the signed (and, with witnesses, cosigned) head, and is the latest entry for ``name``."""
    head = log.head()
    logged = by_name(log.entries(head)).get(name)
    finding, detail = judge_seal(name, checkpoint, logged)
    if finding is not None:
        raise NotAuthentic(f"log {log.describe()}: {finding}: {detail}")
    assert logged is not None and logged.last is not None
    index, entry = logged.last
    size, root, names = head.size, head.root, []
    for w in witnesses:
        data = log.store.get(witness_object(w.raw))
        if data is None:
            raise NotAuthentic(f"log {log.describe()} has no cosignature by witness {w.source}")
        try:
            cp, note, _ = notes.open_log_checkpoint(data, list(log.trusted.values()), log.name)
        except FormatError as e:
            raise NotAuthentic(f"witness checkpoint of {w.source} is malformed: {e}") from e
        if notes.verify_cosignature(note, w.raw) is None:
            raise NotAuthentic(f"log checkpoint is not cosigned by witness {w.source}")
        if cp.size > head.size or cp.size <= index:
            raise NotAuthentic(f"witness {w.source} cosigned {cp.size} entries: entry {index} "
                               f"is not covered")
        if cp.size < head.size:
            verify_consistency(
                size1=cp.size,
                size2=head.size,
                root1=cp.root,
                root2=head.root,
                proof=log.reader(head.size).consistency_proof(cp.size),
                hasher=SHA256,
            )
        elif cp.root != head.root:
            raise NotAuthentic(f"witness {w.source} cosigned a fork of the log")
        size, root = min((size, root), (cp.size, cp.root))
        names.append(w.source)
    proof = log.reader(size).inclusion_proof(index)
    try:
        verify_inclusion(index=index, size=size, leaf_hash=_leaf(entry.raw), proof=proof,
                         root=root, hasher=SHA256)
    except ProofError as e:
        raise ProofError(f"log {log.describe()}: entry {index}: {e}") from e
    return LogProof(
        log.describe(), head.checkpoint.origin, index, size, root, tuple(proof), tuple(names)
    )


def prove_in_log(log: Log, name: str, checkpoint: bytes,
                 witnesses: Sequence[PublicKey] = ()) -> Any:
    """``prove --log``: the formats.proof.LogInclusion of the seal ``checkpoint`` of ``name``,
    checked as ``verify --log`` checks it (in the log, the latest for its name, cosigned)."""
    from merkle_backup.tlog.inclusion import embed

    checked = verify_in_log(log, name, checkpoint, witnesses)
    head = log.head()
    if not witnesses:
        if head.size != checked.size:
            raise CannotCheck(f"log {log.describe()} grew while proving: run prove again")
        note = head.note
        cosigned: list[tuple[PublicKey, bytes]] = []
    else:
        cosigned = []
        for w in witnesses:
            data = log.store.get(witness_object(w.raw))
            if data is None:
                raise NotAuthentic(f"log {log.describe()} has no cosignature by witness {w.source}")
            cosigned.append((w, data))
        note = cosigned[0][1]
    entry = by_name(log.entries(head))[name].last
    assert entry is not None
    return embed(note, cosigned, checked.index, entry[1].raw, checked.proof)


def _leaf(raw: bytes) -> bytes:
    from merkle_backup.tlog.tiles import leaf_hash

    return leaf_hash(raw)


def forget(
    log: Log, private: SigningKey, name: str, clock: Callable[[], datetime]
) -> tuple[int, Entry]:
    me = public_key_of(private)
    head = log.head()
    logged = by_name(log.entries(head)).get(name)
    if logged is None or logged.last is None or logged.last[1].kind != SEAL:
        raise UsageError(f"log {log.describe()} holds no sealed backup {name} to forget")
    _, e = logged.last
    raw = tombstone_entry(private, name, e.uid, e.root, clock(), me.key_id)

    def guard(entries: Sequence[Entry]) -> None:
        later = [x for x in entries if x.backup == name and x.kind in (SEAL, TOMBSTONE)]
        if later and later[-1].raw != e.raw:
            raise CannotCheck(f"{name} changed in the log meanwhile: run forget again")

    index, _ = log.append(private, [raw], guard=guard)
    return index, e


def witness(log: Log, private: SigningKey, name: str, clock: Callable[[], datetime]) -> Head:
    """Check the head against the witness's own state (Log's state), cosign it, store it."""
    head = log.head()
    if head.size == 0:
        raise CannotCheck(f"log {log.describe()} is empty: nothing to cosign")
    note = notes.parse_note(head.note)
    sig = notes.cosign(private, name, note.text, int(clock().timestamp()))
    kept = tuple(s for s in note.signatures if s.name != name)
    data = notes.Note(note.text, (*kept, sig)).encode()
    log.store.put(witness_object(public_key_of(private).raw), data)
    return head
