"""A backup's log inclusion proof inside a proof file (docs/format.md §11.6). Pure: no I/O.

``check_inclusion`` is what ``verify-proof --log-key`` runs offline: the embedded log checkpoint
is signed by the log key under its origin, the embedded entry is this backup's seal entry, bytes
exact, the RFC 9162 inclusion proof leads from that entry to the signed root, and every required
witness cosigned that very checkpoint. ``embed`` builds one from what ``verify --log`` checked.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from merkle_backup.core.tree import verify_inclusion
from merkle_backup.errors import FormatError, NotAuthentic, ProofError
from merkle_backup.formats.proof import LogInclusion
from merkle_backup.signing import PublicKey
from merkle_backup.tlog import note as notes
from merkle_backup.tlog.entries import seal_entry
from merkle_backup.tlog.log import SHA256, check_size_bound
from merkle_backup.tlog.tiles import leaf_hash


@dataclass(frozen=True)
class CheckedInclusion:
    """What a log inclusion proof proved. Only ever built for one that verified."""

    origin: str
    size: int
    root: bytes
    index: int
    log_key: str                       # the --log-key that signed the checkpoint
    witnessed: tuple[tuple[str, int], ...] = ()  # (--witness key, cosignature time)

    def to_json(self) -> dict[str, Any]:
        return {"checked": True, "origin": self.origin, "index": self.index, "size": self.size,
                "root": base64.b64encode(self.root).decode(), "log_key": self.log_key,
                "witnessed_by": [{"witness": w, "time": t} for w, t in self.witnessed]}


def check_inclusion(inclusion: LogInclusion | None, checkpoint: bytes, signature: bytes, *,
                    signer: PublicKey, log_keys: Sequence[PublicKey],
                    witnesses: Sequence[PublicKey] = ()) -> CheckedInclusion:
    """NotAuthentic unless ``inclusion`` proves the seal (``checkpoint``, ``signature``, signed
    by ``signer``, already verified) is entry ``index`` of a log head signed by a ``log_keys``
    key and cosigned by every witness."""
    if inclusion is None:
        raise NotAuthentic("the proof file holds no log inclusion proof (it was written "
                           "without prove --log)")
    # 1. The head: a tlog-checkpoint signed by a log key under the origin that key fixes.
    try:
        # Any log of the key (named or not, §12.2): a proof file has no reader state to roll
        # back, and the origin it names is shown.
        cp, note, raw = notes.open_log_checkpoint(inclusion.checkpoint, [k.raw for k in log_keys],
                                                  any_name=True)
    except FormatError as e:
        raise NotAuthentic(f"the log checkpoint in the proof file is malformed: {e}") from e
    except NotAuthentic as e:
        raise NotAuthentic(f"the log checkpoint in the proof file is not signed by a --log-key "
                           f"({e})") from e
    log_key = next(k for k in log_keys if k.raw == raw)
    check_size_bound(cp, log_key, "the proof file's log checkpoint")
    # 2. The entry: this backup's seal entry, bytes exact.
    want = seal_entry(checkpoint, signature, signer.raw)
    if not hmac.compare_digest(inclusion.entry, want):
        raise NotAuthentic("the log entry in the proof file is not this backup's sealed "
                           "checkpoint")
    # 3. The inclusion proof, against the signed root.
    if inclusion.index >= cp.size:
        raise ProofError(f"log entry {inclusion.index} is outside the log checkpoint of "
                         f"{cp.size} entries")
    try:
        verify_inclusion(index=inclusion.index, size=cp.size, leaf_hash=leaf_hash(inclusion.entry),
                         proof=inclusion.proof, root=cp.root, hasher=SHA256)
    except ProofError as e:
        raise ProofError(f"the log inclusion proof of entry {inclusion.index} does not lead to "
                         f"the signed log root ({e})") from e
    # 4. Every required witness cosigned this checkpoint.
    witnessed = []
    for w in witnesses:
        when = notes.verify_cosignature(note, w.raw)
        if when is None:
            raise NotAuthentic(f"the log checkpoint in the proof file is not cosigned by witness "
                               f"{w.source}")
        witnessed.append((w.source, when))
    return CheckedInclusion(cp.origin, cp.size, cp.root, inclusion.index, log_key.source,
                            tuple(witnessed))


def embed(head_note: bytes, witness_notes: Sequence[tuple[PublicKey, bytes]], index: int,
          entry: bytes, proof: Sequence[bytes]) -> LogInclusion:
    """The inclusion proof of ``entry`` at ``index`` in the checkpoint ``head_note`` (the log
    head, or with witnesses the checkpoint they all cosigned: then their cosignature lines are
    added to it). NotAuthentic when the witnesses cosigned different checkpoints."""
    note = notes.parse_note(head_note)
    lines = list(note.signatures)
    for w, data in witness_notes:
        theirs = notes.parse_note(data)
        if theirs.text != note.text:
            raise NotAuthentic(f"witness {w.source} cosigned another log checkpoint than the one "
                               "proven: run every witness again on the same head, then prove")
        for s in theirs.signatures:
            mine = notes.verify_cosignature(notes.Note(theirs.text, (s,)), w.raw) is not None
            if mine and s not in lines:
                lines.append(s)
    return LogInclusion(notes.Note(note.text, tuple(lines)).encode(), index, entry, list(proof))
