"""The Velero plugin's record of one object Velero wrote (docs/format.md §13). Pure: no I/O.

One backup's writes span several plugin processes (PutBackup, the async-operations controller,
the finalizer: ../shared/VELERO.md §5), so what each PutObject saw must outlive its process,
in the bucket, in a form a bucket writer can neither forge nor pass off for another object: a
C2SP signed note (``tlog.note``) whose text names the backup, its UID, the object, its size and
BLAKE3, and when the plugin wrote it. The tarball's record also carries the BLAKE3 and count
of its leaves, kept beside it (``<tarball>.merkle-leaves``), so that the seal is assembled
from what the plugin hashed as Velero streamed the tarball, without a second read of it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import blake3
import msgpack
from isal import isal_zlib

from merkle_backup.errors import FormatError, NotAuthentic
from merkle_backup.signing import PublicKey, SigningKey
from merkle_backup.tlog import note
from merkle_backup.velero import is_backup_name

CONTEXT = "merkle-backup.io/velero-plugin/record/v1"
# The signature line's key name (C2SP signed-note); the key itself is the plugin's signingKey.
KEY_NAME = "merkle-backup.io/velero-plugin"
_LABELS = ("backup", "uid", "object", "size", "blake3", "leaves", "phase", "written")
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}\Z")
# A Velero object's name in its backup folder: printable ASCII, no '/', no space.
_OBJECT = re.compile(r"[!-.0-~][!-.0-~]{0,254}\Z")
_HEX32 = re.compile(r"[0-9a-f]{64}\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,18})\Z")
_PHASE = re.compile(r"[A-Za-z]{1,64}\Z")
NONE = "-"
# v2: the msgpack array in one gzip member (a tarball's leaves are ~110 bytes each, 3.8x smaller
# gzipped: at 10^5 entries 2.9 MB to upload beside a 9 MB tarball instead of 11 MB). v1, the
# array as it is, is still read (a backup put by an earlier plugin and finalized by this one).
LEAVES_MAGIC = b"merkle-backup/plugin-leaves/v2\n"
LEAVES_MAGIC_V1 = b"merkle-backup/plugin-leaves/v1\n"
MAX_LEAF = 1 << 16


@dataclass(frozen=True)
class ObjectRecord:
    """What the plugin received from Velero for one object, and when."""

    backup: str
    uid: str             # the Backup's metadata.uid
    object: str          # the object's name in backups/<backup>/
    size: int
    digest: bytes        # BLAKE3-256 of the object's bytes
    written_ns: int      # the plugin's clock when it stored the object (ns since the epoch)
    leaves: tuple[int, bytes] | None = None  # tarball: (leaf count, BLAKE3 of the leaves object)
    phase: str | None = None  # velero-backup.json: the Backup's status.phase

    def text(self) -> bytes:
        """The signed text: the context line, then one ``label value`` line per field."""
        leaves = NONE if self.leaves is None else f"{self.leaves[0]} {self.leaves[1].hex()}"
        values = (self.backup, self.uid, self.object, str(self.size), self.digest.hex(), leaves,
                  self.phase or NONE, str(self.written_ns))
        return (CONTEXT + "\n" + "".join(
            f"{label} {value}\n" for label, value in zip(_LABELS, values, strict=True)
        )).encode()


def parse_text(text: bytes) -> ObjectRecord:
    """The record ``text()`` wrote, exactly: FormatError for anything else."""
    try:
        lines = text.decode("ascii").split("\n")
    except UnicodeDecodeError as e:
        raise FormatError("plugin record is not ASCII") from e
    if len(lines) != len(_LABELS) + 2 or lines[0] != CONTEXT or lines[-1] != "":
        raise FormatError(f"not a plugin record ({CONTEXT})")
    fields: dict[str, str] = {}
    for label, line in zip(_LABELS, lines[1:-1], strict=True):
        name, sep, value = line.partition(" ")
        if name != label or not sep or not value:
            raise FormatError(f"plugin record: expected {label!r} line")
        fields[label] = value
    backup, uid, obj = fields["backup"], fields["uid"], fields["object"]
    if not is_backup_name(backup) or not _UID.match(uid) or not _OBJECT.match(obj):
        raise FormatError("plugin record: bad backup name, UID or object name")
    if not _DECIMAL.match(fields["size"]) or not _HEX32.match(fields["blake3"]) \
            or not _DECIMAL.match(fields["written"]):
        raise FormatError("plugin record: bad size, blake3 or time")
    leaves: tuple[int, bytes] | None = None
    if fields["leaves"] != NONE:
        count, _, digest = fields["leaves"].partition(" ")
        if not _DECIMAL.match(count) or not _HEX32.match(digest):
            raise FormatError("plugin record: bad leaves line")
        leaves = (int(count), bytes.fromhex(digest))
    phase = None if fields["phase"] == NONE else fields["phase"]
    if phase is not None and not _PHASE.match(phase):
        raise FormatError("plugin record: bad phase")
    return ObjectRecord(backup, uid, obj, int(fields["size"]), bytes.fromhex(fields["blake3"]),
                        int(fields["written"]), leaves, phase)


def signed_record(record: ObjectRecord, private: SigningKey) -> bytes:
    """The record as a signed note, signed by the plugin's key."""
    text = record.text()
    return note.Note(text, (note.sign_line(private, KEY_NAME, text),)).encode()


def open_record(data: bytes, trusted: Sequence[PublicKey], *, backup: str,
                obj: str) -> ObjectRecord:
    """A record read back from the bucket: signed by a trusted key, and about ``obj`` of
    ``backup`` (a record moved from another object or backup is NotAuthentic)."""
    parsed = note.parse_note(data)
    if not any(note.verify_ed25519(parsed, KEY_NAME, key.raw) for key in trusted):
        raise NotAuthentic(f"the record of {obj} is not signed by a trusted key")
    record = parse_text(parsed.text)
    if record.backup != backup or record.object != obj:
        raise NotAuthentic(
            f"the record of {obj} in backup {backup} is about {record.object} "
            f"in backup {record.backup}"
        )
    return record


def encode_leaves(leaves: Sequence[bytes]) -> bytes:
    """The tarball's sortable leaves (core/table.py), in order: a magic line, then one gzip
    member of one msgpack array of bin (docs/format.md §13.1)."""
    packed: bytes = msgpack.packb(list(leaves), use_bin_type=True)
    return LEAVES_MAGIC + isal_zlib.compress(packed, 1, 16 + isal_zlib.MAX_WBITS)


def _inflated(body: bytes, limit: int, obj: str) -> bytes:
    """The one gzip member ``body`` is, at most ``limit`` bytes of it, nothing after it."""
    inflater = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
    try:
        packed = inflater.decompress(body, limit + 1)
    except isal_zlib.error as e:  # type: ignore[misc]  # (its stub types it as an instance)
        raise FormatError(f"the leaves of {obj} do not inflate: {e}") from e
    if len(packed) > limit:
        raise FormatError(f"the leaves of {obj} inflate to more than {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise FormatError(f"the leaves of {obj}: not exactly one whole gzip member")
    return packed


def decode_leaves(data: bytes, record: ObjectRecord) -> list[bytes]:
    """The leaves object of ``record`` (the tarball's): its BLAKE3 and count as signed."""
    if record.leaves is None:
        raise FormatError(f"the record of {record.object} has no leaves")
    count, digest = record.leaves
    if blake3.blake3(data).digest() != digest:
        raise NotAuthentic(f"the leaves of {record.object} are not the ones its record signs")
    # Signed, so written by a plugin: a failure below is a bug, or a key that signed junk.
    if data.startswith(LEAVES_MAGIC):
        # A bin of n bytes packs to at most n + 5, the array header to at most 5.
        packed = _inflated(data[len(LEAVES_MAGIC):], 5 + count * (MAX_LEAF + 5), record.object)
    elif data.startswith(LEAVES_MAGIC_V1):
        packed = data[len(LEAVES_MAGIC_V1):]
    else:
        raise FormatError(f"the leaves of {record.object} lack their magic line")
    try:
        leaves = msgpack.unpackb(packed, raw=True, use_list=True,
                                 max_bin_len=MAX_LEAF, max_str_len=0, max_map_len=0,
                                 max_ext_len=0, max_array_len=count)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise FormatError(f"the leaves of {record.object} do not decode: {e}") from e
    if not isinstance(leaves, list) or len(leaves) != count or \
            not all(isinstance(leaf, bytes) for leaf in leaves):
        raise FormatError(f"the leaves of {record.object}: not {count} byte strings")
    return leaves
