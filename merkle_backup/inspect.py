"""`inspect`: what a seal file claims, decoded strictly but NOT verified."""

from __future__ import annotations

from collections import Counter

from merkle_backup.core.checkpoint import CheckpointError, parse_checkpoint
from merkle_backup.core.leaf import decode_record
from merkle_backup.errors import FormatError
from merkle_backup.formats.seal import decode_seal


def describe_seal(data: bytes) -> dict:
    _unverified = decode_seal(data)
    try:
        checkpoint = parse_checkpoint(_unverified.checkpoint)
        records = [decode_record(leaf) for leaf in _unverified.leaves]
    except (CheckpointError, ValueError) as e:
        raise FormatError(f"seal content is malformed: {e}") from e
    by_namespace = Counter(r.key.namespace for r in records)
    return {
        "verified": False,
        "backup": checkpoint.backup,
        "uid": checkpoint.uid,
        "tree_size": checkpoint.tree_size,
        "root": checkpoint.root.hex(),
        "archive_blake3": checkpoint.archive_digest.hex(),
        "archive_size": checkpoint.archive_size,
        "created": checkpoint.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "key_id": checkpoint.key_id.hex(),
        "leaves": len(records),
        "leaves_by_namespace": dict(sorted(by_namespace.items())),
        "checkpoint": _unverified.checkpoint.decode(),
        "signature": _unverified.signature.hex(),
    }
