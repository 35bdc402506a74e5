"""`inspect`: what a seal file claims, decoded strictly but NOT verified."""

from __future__ import annotations

from collections import Counter
from typing import Any, BinaryIO

from merkle_backup.core.checkpoint import CheckpointError, parse_checkpoint
from merkle_backup.core.leaf import decode_record
from merkle_backup.errors import FormatError
from merkle_backup.formats.seal import read_leaves, read_seal_head

# Distinct namespaces counted before inspect gives up: the count is the only thing kept per
# leaf, so this bounds inspect's memory whatever the (crafted) seal lists.
MAX_INSPECT_NAMESPACES = 100_000


def describe_seal_file(f: BinaryIO) -> dict[str, Any]:
    """The claims of the seal in the seekable file ``f``, streamed: one leaf at a time, so
    memory does not grow with the seal's size (up to its 2 GiB limit)."""
    _unverified = read_seal_head(f)
    by_namespace: Counter[str] = Counter()
    leaves = 0
    try:
        checkpoint = parse_checkpoint(_unverified.checkpoint)
        for leaf in read_leaves(f, _unverified):
            namespace = decode_record(leaf).key.namespace
            if namespace not in by_namespace and len(by_namespace) >= MAX_INSPECT_NAMESPACES:
                raise FormatError(
                    f"seal lists more than {MAX_INSPECT_NAMESPACES} namespaces: not inspecting it"
                )
            by_namespace[namespace] += 1
            leaves += 1
    except (CheckpointError, ValueError) as e:
        raise FormatError(f"seal content is malformed: {e}") from e
    return {
        "verified": False,
        "backup": checkpoint.backup,
        "uid": checkpoint.uid,
        "tree_size": checkpoint.tree_size,
        "root": checkpoint.root.hex(),
        "archive_blake3": checkpoint.archive_digest.hex(),
        "archive_size": checkpoint.archive_size,
        "version": checkpoint.version,
        "leaves_blake3": checkpoint.leaves_digest.hex() if checkpoint.leaves_digest else None,
        "created": checkpoint.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "key_id": checkpoint.key_id.hex(),
        "leaves": leaves,
        "leaves_by_namespace": dict(sorted(by_namespace.items())),
        "checkpoint": _unverified.checkpoint.decode(),
        "signature": _unverified.signature.hex(),
        # Version 3 (docs/format.md §7.5): every key line and signature, in their order.
        **({"key_ids": [k.hex() for k in checkpoint.key_ids],
            "signatures": [s.hex() for s in _unverified.signatures]}
           if checkpoint.co_key_ids else {}),
    }
