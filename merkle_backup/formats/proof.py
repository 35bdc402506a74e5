"""The proof file: bytes <-> ProofFile (docs/format.md §11.1).

A msgpack map, strict exactly as the seal file is: magic, version, exact keys, exact types,
no trailing bytes. Everything in it is unverified until ``merkle_backup.proofs`` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from merkle_backup.errors import FormatError
from merkle_backup.formats.seal import MAX_CHECKPOINT_BYTES, check_envelope, unpack_strict

PROOF_MAGIC = "merkle-backup-proof"
PROOF_VERSION = 1
MAX_PROOF_BYTES = 1 * 2**30
MAX_ITEMS = 10_000_000
MAX_PROOF_HASHES = 128          # a range proof has at most two hashes per level of a 2**64 tree
MAX_CONTENT_BYTES = 64 * 2**20  # the reader's default largest entry
_KEYS = frozenset({"magic", "version", "checkpoint", "signature", "resources", "namespaces", "contents"})
_RESOURCE_KEYS = frozenset({"index", "record", "proof"})
_NAMESPACE_KEYS = frozenset({"namespace", "begin", "records", "proof"})


@dataclass(frozen=True)
class ResourceProof:
    index: int
    record: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class NamespaceProof:
    namespace: str
    begin: int
    records: list[bytes]
    proof: list[bytes]


@dataclass(frozen=True)
class ProofFile:
    checkpoint: bytes
    signature: bytes
    resources: list[ResourceProof] = field(default_factory=list)
    namespaces: list[NamespaceProof] = field(default_factory=list)
    contents: dict[str, bytes] = field(default_factory=dict)   # path -> bytes (--with-content)


def encode_proof(proof: ProofFile) -> bytes:
    return msgpack.packb(
        {
            "magic": PROOF_MAGIC,
            "version": PROOF_VERSION,
            "checkpoint": proof.checkpoint,
            "signature": proof.signature,
            "resources": [
                {"index": r.index, "record": r.record, "proof": r.proof} for r in proof.resources
            ],
            "namespaces": [
                {"namespace": n.namespace, "begin": n.begin, "records": n.records, "proof": n.proof}
                for n in proof.namespaces
            ],
            "contents": dict(sorted(proof.contents.items())),
        },
        use_bin_type=True,
    )


def decode_proof(data: bytes) -> ProofFile:
    if len(data) > MAX_PROOF_BYTES:
        raise FormatError(f"proof file is {len(data)} bytes, over the {MAX_PROOF_BYTES} byte limit")
    obj = check_envelope(
        unpack_strict(data, what="proof file", max_array=MAX_ITEMS, max_map=MAX_ITEMS,
                      max_bin=MAX_CONTENT_BYTES),
        what="proof file", magic=PROOF_MAGIC, version=PROOF_VERSION, keys=_KEYS,
    )
    checkpoint, signature = obj["checkpoint"], obj["signature"]
    if type(checkpoint) is not bytes or len(checkpoint) > MAX_CHECKPOINT_BYTES:
        raise FormatError("proof checkpoint must be binary, at most 4096 bytes")
    if type(signature) is not bytes or len(signature) != 64:
        raise FormatError("proof signature must be 64 bytes of binary")
    resources = [_resource(item) for item in _list(obj["resources"], "resources")]
    namespaces = [_namespace(item) for item in _list(obj["namespaces"], "namespaces")]
    contents = obj["contents"]
    if type(contents) is not dict or not all(
        type(k) is str and type(v) is bytes for k, v in contents.items()
    ):
        raise FormatError("proof contents must map paths to binary")
    if not resources and not namespaces:
        raise FormatError("proof file proves nothing: no resources and no namespaces")
    return ProofFile(checkpoint, signature, resources, namespaces, contents)


def _list(value: Any, what: str) -> list[Any]:
    if type(value) is not list:
        raise FormatError(f"proof {what} must be an array")
    return value


def _entry(item: Any, keys: frozenset[str], what: str) -> dict[str, Any]:
    if type(item) is not dict or set(item) != keys:
        raise FormatError(f"proof {what} entry must be a map with exactly the keys {sorted(keys)}")
    return item


def _uint(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise FormatError(f"proof {what} must be a non-negative integer")
    return value


def _hashes(value: Any, what: str) -> list[bytes]:
    if type(value) is not list or len(value) > MAX_PROOF_HASHES or not all(
        type(h) is bytes and len(h) == 32 for h in value
    ):
        raise FormatError(f"proof {what} must be an array of at most {MAX_PROOF_HASHES} 32-byte hashes")
    return value


def _resource(item: Any) -> ResourceProof:
    item = _entry(item, _RESOURCE_KEYS, "resource")
    if type(item["record"]) is not bytes:
        raise FormatError("proof resource record must be binary")
    return ResourceProof(_uint(item["index"], "resource index"), item["record"],
                         _hashes(item["proof"], "resource proof"))


def _namespace(item: Any) -> NamespaceProof:
    item = _entry(item, _NAMESPACE_KEYS, "namespace")
    if type(item["namespace"]) is not str or not item["namespace"]:
        raise FormatError("proof namespace must be a non-empty string")
    records = item["records"]
    if type(records) is not list or not all(type(r) is bytes for r in records):
        raise FormatError("proof namespace records must be an array of binary leaf records")
    return NamespaceProof(item["namespace"], _uint(item["begin"], "namespace begin"), records,
                          _hashes(item["proof"], "namespace proof"))
