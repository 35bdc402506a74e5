"""What a log entry is (docs/format.md §12.1). Pure: no I/O.

Every entry is a C2SP signed note by the sealer's key under the note name ``merkle-backup``:

* a **seal** entry: the seal's checkpoint (§5.1) and its signature, bytes exact;
* an **expiry** entry: ``merkle-backup/expiry/v1`` with backup, uid, root and Velero's
  ``status.expiration`` of the sealed ``velero-backup.json`` (appended with the seal entry);
* a **tombstone**: ``merkle-backup/tombstone/v1`` with backup, uid, root of the checkpoint it
  forgets, created, key (``merkle-backup forget``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from merkle_backup.core.checkpoint import CONTEXTS, CheckpointError, parse_checkpoint
from merkle_backup.errors import FormatError, NotAuthentic
from merkle_backup.signing import SigningKey
from merkle_backup.tlog.note import (
    ALG_ED25519,
    Note,
    Signature,
    key_hash,
    parse_note,
    sign_line,
    verify_ed25519,
)

NOTE_NAME = "merkle-backup"
SEAL, EXPIRY, TOMBSTONE = "seal", "expiry", "tombstone"
EXPIRY_CONTEXT = "merkle-backup/expiry/v1"
TOMBSTONE_CONTEXT = "merkle-backup/tombstone/v1"
_TIME = "%Y-%m-%dT%H:%M:%SZ"
_LINE = re.compile(r"([a-z-]+) ([!-~]+)\Z")


@dataclass(frozen=True)
class Entry:
    kind: str
    backup: str
    uid: str
    root: bytes          # the seal checkpoint's root (the one an expiry or tombstone refers to)
    time: datetime       # seal: created; expiry: expiration; tombstone: created
    key_id: bytes
    raw: bytes           # the entry's bytes, as logged
    checkpoint: bytes = b""  # seal: the checkpoint body

    @property
    def identity(self) -> tuple[str, str, bytes]:
        return (self.backup, self.uid, self.root)


def seal_entry(checkpoint_body: bytes, signature: bytes, public_raw: bytes) -> bytes:
    """The seal's signed note (docs/format.md §6, compatibility note) under NOTE_NAME."""
    sig = Signature(NOTE_NAME, key_hash(NOTE_NAME, ALG_ED25519, public_raw), signature)
    return Note(checkpoint_body, (sig,)).encode()


def seal_entries(checkpoint_body: bytes, signature: bytes, private: SigningKey,
                 expiration: datetime | None) -> list[bytes]:
    """What logging a seal appends: its seal entry and, when Velero set
    ``status.expiration``, the expiry entry signed by the sealer's ``private`` key."""
    from merkle_backup.signing import public_key_of

    me = public_key_of(private)
    raws = [seal_entry(checkpoint_body, signature, me.raw)]
    if expiration is not None:
        cp = parse_checkpoint(checkpoint_body)
        raws.append(expiry_entry(private, cp.backup, cp.uid, cp.root, expiration, me.key_id))
    return raws


def _fmt(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime(_TIME)


def _body(context: str, fields: list[tuple[str, str]]) -> bytes:
    return ("\n".join([context] + [f"{k} {v}" for k, v in fields]) + "\n").encode()


def expiry_entry(private: SigningKey, backup: str, uid: str, root: bytes,
                 expiration: datetime, key_id: bytes) -> bytes:
    body = _body(EXPIRY_CONTEXT, [("backup", backup), ("uid", uid), ("root", root.hex()),
                                  ("expiration", _fmt(expiration)), ("key", key_id.hex())])
    return Note(body, (sign_line(private, NOTE_NAME, body),)).encode()


def tombstone_entry(private: SigningKey, backup: str, uid: str, root: bytes,
                    created: datetime, key_id: bytes) -> bytes:
    body = _body(TOMBSTONE_CONTEXT, [("backup", backup), ("uid", uid), ("root", root.hex()),
                                     ("created", _fmt(created)), ("key", key_id.hex())])
    return Note(body, (sign_line(private, NOTE_NAME, body),)).encode()


def parse_entry(raw: bytes, trusted: dict[bytes, bytes], where: str = "log entry") -> Entry:
    """``trusted``: key ID -> raw public key. NotAuthentic unless the key the entry names is
    trusted and signed it; FormatError for anything that is not an entry."""
    note = parse_note(raw)
    first = note.text.split(b"\n", 1)[0].decode()
    if first in CONTEXTS:
        try:
            cp = parse_checkpoint(note.text)
        except CheckpointError as e:
            raise FormatError(f"{where}: {e}") from e
        fields: dict[str, Any]
        kind, fields = SEAL, {"backup": cp.backup, "uid": cp.uid, "root": cp.root.hex(),
                              "time": cp.created, "key": cp.key_id}
    elif first in (EXPIRY_CONTEXT, TOMBSTONE_CONTEXT):
        kind = EXPIRY if first == EXPIRY_CONTEXT else TOMBSTONE
        labels = ("backup", "uid", "root", "expiration" if kind == EXPIRY else "created", "key")
        lines = note.text.decode().split("\n")[1:-1]
        if len(lines) != len(labels):
            raise FormatError(f"{where}: a {kind} entry has {len(labels)} lines")
        values = {}
        for label, line in zip(labels, lines, strict=True):
            m = _LINE.match(line)
            if not m or m.group(1) != label:
                raise FormatError(f"{where}: malformed {kind} line")
            values[label] = m.group(2)
        try:
            t = datetime.strptime(values[labels[3]], _TIME).replace(tzinfo=timezone.utc)
            fields = {"backup": values["backup"], "uid": values["uid"], "root": values["root"],
                      "time": t, "key": bytes.fromhex(values["key"])}
            bytes.fromhex(values["root"])
        except ValueError as e:
            raise FormatError(f"{where}: malformed {kind} entry") from e
        if len(fields["key"]) != 32 or len(values["root"]) != 64:
            raise FormatError(f"{where}: malformed {kind} entry")
    else:
        raise FormatError(f"{where}: not a merkle-backup log entry")
    public = trusted.get(fields["key"])
    if public is None or not verify_ed25519(note, NOTE_NAME, public):
        raise NotAuthentic(f"{where} for backup {fields['backup']} is not signed by a trusted key")
    return Entry(kind, fields["backup"], fields["uid"], bytes.fromhex(fields["root"]),
                 fields["time"], fields["key"], raw, note.text if kind == SEAL else b"")
