"""The signed checkpoint: the exact text whose bytes are signed (docs/format.md §5).

Modelled on C2SP tlog-checkpoint / signed-note: a line-based UTF-8 text whose first line is a
fixed context string, so a signature made over any other text (another tool's note, another
format version, a proof file) can never verify as a merkle-backup checkpoint. Every line is
``<label> <value>\\n`` in a fixed order; parsing accepts exactly what ``body()`` writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from merkle_backup.velero import is_backup_name

CONTEXT = "merkle-backup/checkpoint/v1"
# Version 2 (docs/format.md §5.3) adds the BLAKE3 of the seal's leaf section, after archive-size.
CONTEXT_V2 = "merkle-backup/checkpoint/v2"
# Version 3 (docs/format.md §5.4): version 2 signed by several keys (overlap rotation): one
# ``key`` line per signing key, in the order of the seal's signatures.
CONTEXT_V3 = "merkle-backup/checkpoint/v3"
CONTEXTS = (CONTEXT, CONTEXT_V2, CONTEXT_V3)
MAX_KEYS = 8
_LABELS = (
    "backup", "uid", "tree-size", "root", "archive-blake3", "archive-size", "created", "key",
    "inconsistent",
)
_LABELS_V2 = (
    "backup", "uid", "tree-size", "root", "archive-blake3", "archive-size", "leaves-blake3",
    "created", "key", "inconsistent",
)


def _labels_v3(keys: int) -> tuple[str, ...]:
    """Version 3's labels: version 2's, with ``keys`` key lines where version 2 has one."""
    at = _LABELS_V2.index("key")
    return (*_LABELS_V2[:at], *(["key"] * keys), *_LABELS_V2[at + 1:])


_UID = re.compile(r"(-|[A-Za-z0-9][A-Za-z0-9-]{0,63})\Z")
_HEX32 = re.compile(r"[0-9a-f]{64}\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,18})\Z")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
UNKNOWN_UID = "-"


class CheckpointError(ValueError):
    """The text is not a checkpoint this version writes."""


@dataclass(frozen=True)
class Checkpoint:
    backup: str          # the Velero Backup's metadata.name
    uid: str             # its metadata.uid, or "-" when sealed from a bare tarball
    tree_size: int
    root: bytes          # 32 bytes
    archive_digest: bytes  # BLAKE3-256 of the whole .tar.gz file
    archive_size: int
    created: datetime    # UTC, whole seconds
    key_id: bytes        # SHA-256 of the raw 32-byte Ed25519 public key
    # How many defence-in-depth findings (consistency.py) the sealer accepted with --force; a
    # verifier that skips reading an unchanged tarball still knows whether to warn.
    inconsistent: int = 0
    # Version 2 only (None in version 1): BLAKE3-256 of the seal file's leaf section (§7.4), so
    # an unchanged table is proven by one hash instead of every record.
    leaves_digest: bytes | None = None
    # Version 3 only (empty in versions 1 and 2): the key IDs of the other signing keys, in the
    # order of their signatures after the first (``key_id``'s).
    co_key_ids: tuple[bytes, ...] = ()

    @property
    def version(self) -> int:
        if self.co_key_ids:
            return 3
        return 1 if self.leaves_digest is None else 2

    @property
    def key_ids(self) -> tuple[bytes, ...]:
        """Every signing key's ID, in the order of the seal's signatures."""
        return (self.key_id, *self.co_key_ids)

    def __post_init__(self) -> None:
        if not is_backup_name(self.backup):
            raise CheckpointError(f"backup name {self.backup!r} is not a valid Kubernetes name")
        if not _UID.match(self.uid):
            raise CheckpointError(f"backup uid {self.uid!r} is not a valid UID")
        for label, value in (("root", self.root), ("archive-blake3", self.archive_digest),
                             ("key", self.key_id), ("leaves-blake3", self.leaves_digest)):
            if value is not None and len(value) != 32:
                raise CheckpointError(f"{label} must be 32 bytes")
        if self.co_key_ids:
            if len(self.key_ids) > MAX_KEYS or any(len(k) != 32 for k in self.co_key_ids):
                raise CheckpointError(f"at most {MAX_KEYS} keys of 32 bytes each")
            if len(set(self.key_ids)) != len(self.key_ids):
                raise CheckpointError("a key is named twice")
        for label, number in (("tree-size", self.tree_size), ("archive-size", self.archive_size),
                              ("inconsistent", self.inconsistent)):
            if type(number) is not int or not 0 <= number < 2**63:
                raise CheckpointError(f"{label} out of range")
        if self.created.tzinfo is None or self.created.utcoffset() != timezone.utc.utcoffset(None):
            raise CheckpointError("created must be a UTC time")
        if self.created.microsecond or self.created.year < 1000:
            raise CheckpointError("created must be whole seconds in years 1000-9999")

    def body(self) -> bytes:
        """The signed bytes (docs/format.md §5.1)."""
        values = [
            self.backup,
            self.uid,
            str(self.tree_size),
            self.root.hex(),
            self.archive_digest.hex(),
            str(self.archive_size),
            self.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            self.key_id.hex(),
            str(self.inconsistent),
        ]
        context, labels = CONTEXT, _LABELS  # type: tuple[str, tuple[str, ...]]
        if self.leaves_digest is not None:
            context, labels = CONTEXT_V2, _LABELS_V2
            values.insert(6, self.leaves_digest.hex())
        if self.co_key_ids:
            if self.leaves_digest is None:  # a sealer's checkpoint before its leaf section
                raise CheckpointError("a checkpoint with several keys is version 3, which has "
                                      "leaves-blake3")
            context, labels = CONTEXT_V3, _labels_v3(len(self.key_ids))
            values[9:9] = [k.hex() for k in self.co_key_ids]
        pairs = zip(labels, values, strict=True)
        lines = [context, *(f"{label} {value}" for label, value in pairs)]
        return ("\n".join(lines) + "\n").encode("utf-8")


def parse_checkpoint(data: bytes) -> Checkpoint:
    """Parse a checkpoint body; accepts exactly the bytes Checkpoint.body() writes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError("checkpoint is not UTF-8") from e
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if lines[0] not in CONTEXTS:
        raise CheckpointError(f"checkpoint context is {lines[0][:60]!r}, expected one of "
                              f"{', '.join(CONTEXTS)}")
    if lines[0] == CONTEXT_V3:
        # §5.4: lines of version 2 with 2..MAX_KEYS key lines; the count decides the labels.
        keys = len(lines) - len(_LABELS_V2)
        if not 2 <= keys <= MAX_KEYS:
            raise CheckpointError(f"checkpoint version 3 has {len(lines)} lines, expected "
                                  f"{len(_LABELS_V2) + 2} to {len(_LABELS_V2) + MAX_KEYS}")
        labels = _labels_v3(keys)
    else:
        labels = _LABELS if lines[0] == CONTEXT else _LABELS_V2
    if len(lines) != 1 + len(labels):
        raise CheckpointError(f"checkpoint has {len(lines)} lines, expected {1 + len(labels)}")
    values: dict[str, str] = {}
    key_lines: list[str] = []
    for label, line in zip(labels, lines[1:], strict=True):
        prefix = label + " "
        if not line.startswith(prefix):
            raise CheckpointError(f"checkpoint line {line[:60]!r} should start with {prefix!r}")
        values[label] = line[len(prefix) :]
        if label == "key":
            key_lines.append(values[label])
    for value in key_lines:
        if not _HEX32.match(value):
            raise CheckpointError("checkpoint key is not 64 lowercase hex digits")
    values["key"] = key_lines[0]
    for label in ("root", "archive-blake3", "leaves-blake3"):
        if label in values and not _HEX32.match(values[label]):
            raise CheckpointError(f"checkpoint {label} is not 64 lowercase hex digits")
    for label in ("tree-size", "archive-size", "inconsistent"):
        if not _DECIMAL.match(values[label]):
            raise CheckpointError(f"checkpoint {label} is not a canonical decimal")
    if not _TIME.match(values["created"]):
        raise CheckpointError("checkpoint created is not YYYY-MM-DDTHH:MM:SSZ")
    try:
        created = datetime.strptime(values["created"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc
        )
    except ValueError as e:
        raise CheckpointError(f"checkpoint created: {e}") from e
    checkpoint = Checkpoint(
        backup=values["backup"],
        uid=values["uid"],
        tree_size=int(values["tree-size"]),
        root=bytes.fromhex(values["root"]),
        archive_digest=bytes.fromhex(values["archive-blake3"]),
        archive_size=int(values["archive-size"]),
        created=created,
        key_id=bytes.fromhex(values["key"]),
        inconsistent=int(values["inconsistent"]),
        leaves_digest=bytes.fromhex(values["leaves-blake3"]) if "leaves-blake3" in values else None,
        co_key_ids=tuple(bytes.fromhex(k) for k in key_lines[1:]),
    )
    if checkpoint.version != CONTEXTS.index(lines[0]) + 1:  # e.g. a v2 text naming no keys
        raise CheckpointError("checkpoint version does not match its context line")
    if checkpoint.body() != data:  # belt and braces: exactly one encoding per checkpoint
        raise CheckpointError("checkpoint is not in canonical form")
    return checkpoint
