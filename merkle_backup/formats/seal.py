"""The seal file: bytes <-> SealFile (docs/format.md §7).

One msgpack map with exactly the keys ``magic``, ``version``, ``checkpoint``, ``signature`` and
``leaves``. Decoding is strict: wrong magic, unknown version, missing or extra keys, wrong
types, trailing bytes and over-limit sizes are all FormatError. Nothing here is trusted: the
verifier checks the signature over ``checkpoint`` first and only then the leaf table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from merkle_backup.errors import FormatError

SEAL_MAGIC = "merkle-backup-seal"
SEAL_VERSION = 1
MAX_SEAL_BYTES = 2 * 2**30        # a seal of 5 million leaves is about 1 GiB
MAX_LEAVES = 10_000_000
MAX_RECORD_BYTES = 6 * (2 + 0xFFFF) + 40
MAX_CHECKPOINT_BYTES = 4096
_KEYS = frozenset({"magic", "version", "checkpoint", "signature", "leaves"})


@dataclass(frozen=True)
class SealFile:
    """A decoded, NOT yet verified seal: every field is attacker-controlled until checked."""

    checkpoint: bytes       # the signed checkpoint body (core/checkpoint.py)
    signature: bytes        # Ed25519 over checkpoint
    leaves: list[bytes]     # leaf records (core/leaf.py), in key order


def encode_seal(seal: SealFile) -> bytes:
    return msgpack.packb(
        {
            "magic": SEAL_MAGIC,
            "version": SEAL_VERSION,
            "checkpoint": seal.checkpoint,
            "signature": seal.signature,
            "leaves": seal.leaves,
        },
        use_bin_type=True,
    )


def encode_seal_head(checkpoint: bytes, signature: bytes, leaves: int) -> bytes:
    """The bytes of ``encode_seal`` up to its first leaf: a seal is this, then each record in
    the framing of ``leaf_frame``. Lets a sealer write the leaves as it produces them."""
    packer = msgpack.Packer(use_bin_type=True)
    head = packer.pack_map_header(5)
    for key, value in (("magic", SEAL_MAGIC), ("version", SEAL_VERSION),
                       ("checkpoint", checkpoint), ("signature", signature)):
        head += packer.pack(key) + packer.pack(value)
    return head + packer.pack("leaves") + packer.pack_array_header(leaves)


def leaf_frame(length: int) -> bytes:
    """The msgpack ``bin`` header that precedes a leaf record of ``length`` bytes."""
    if length < 0x100:
        return bytes((0xC4, length))
    if length < 0x10000:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


def unpack_strict(
    data: bytes, *, what: str, max_array: int, max_map: int = 16, max_bin: int = 2**20
) -> Any:
    """msgpack-decode ``data`` as one object with no trailing bytes, raising FormatError."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=MAX_CHECKPOINT_BYTES,
            max_bin_len=max(MAX_RECORD_BYTES, max_bin),
            max_array_len=max_array,
            max_map_len=max_map,
            max_ext_len=0,
            object_pairs_hook=_unique_keys,
        )
    except msgpack.ExtraData as e:
        raise FormatError(f"{what} has trailing bytes after its content") from e
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        # msgpack raises ValueError (incl. StackError, FormatError) and UnpackException subclasses
        raise FormatError(f"{what} is not valid msgpack ({type(e).__name__}: {e})") from e


def _unique_keys(pairs: list[tuple[Any, Any]]) -> dict:
    """msgpack keeps the last of repeated map keys; one seal must have one reading, so refuse."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a map repeats a key")
    return result


def check_envelope(obj: Any, *, what: str, magic: str, version: int, keys: frozenset[str]) -> dict:
    """The shared magic/version/exact-keys checks of our msgpack files."""
    if not isinstance(obj, dict):
        raise FormatError(f"{what} is not a msgpack map")
    if obj.get("magic") != magic:
        raise FormatError(f"not a {what}: magic is {str(obj.get('magic'))[:40]!r}, expected {magic!r}")
    found = obj.get("version")
    if type(found) is not int or found != version:
        raise FormatError(f"{what} version {found!r} is not supported (this tool reads {version})")
    if set(obj) != keys:
        missing, extra = sorted(keys - set(obj)), sorted(set(obj) - keys, key=repr)
        raise FormatError(f"{what} keys differ from version {version}: missing {missing}, extra {extra}")
    return obj


def decode_seal(data: bytes) -> SealFile:
    if len(data) > MAX_SEAL_BYTES:
        raise FormatError(f"seal is {len(data)} bytes, over the {MAX_SEAL_BYTES} byte limit")
    obj = check_envelope(
        unpack_strict(data, what="seal file", max_array=MAX_LEAVES),
        what="seal file", magic=SEAL_MAGIC, version=SEAL_VERSION, keys=_KEYS,
    )
    checkpoint, signature, leaves = obj["checkpoint"], obj["signature"], obj["leaves"]
    if type(checkpoint) is not bytes or len(checkpoint) > MAX_CHECKPOINT_BYTES:
        raise FormatError("seal checkpoint must be binary, at most 4096 bytes")
    if type(signature) is not bytes or len(signature) != 64:
        raise FormatError("seal signature must be 64 bytes of binary")
    if type(leaves) is not list or not all(type(r) is bytes for r in leaves):
        raise FormatError("seal leaves must be a list of binary leaf records")
    return SealFile(checkpoint=checkpoint, signature=signature, leaves=leaves)
