"""The proof file: bytes <-> ProofFile (docs/format.md §11.1, §11.6).

A msgpack map, strict exactly as the seal file is: magic, version, exact keys, exact types,
no trailing bytes. Version 1 has seven keys; version 2 (written only by ``prove --log``) has
those and ``log``, the backup's log inclusion proof. Everything in it is unverified until
``merkle_backup.proofs`` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from merkle_backup.errors import FormatError
from merkle_backup.formats.seal import check_envelope, signed_fields, unpack_strict

PROOF_MAGIC = "merkle-backup-proof"
PROOF_VERSION = 1
PROOF_VERSION_LOG = 2           # version 1 plus the ``log`` key (§11.6)
PROOF_VERSION_MULTI = 3         # version 1 with ``signatures`` for ``signature`` (§11.1)
MAX_PROOF_BYTES = 1 * 2**30
MAX_ITEMS = 10_000_000
MAX_PROOF_HASHES = 128          # a range proof has at most two hashes per level of a 2**64 tree
MAX_CONTENT_BYTES = 64 * 2**20  # the reader's default largest entry
_KEYS = frozenset(
    {"magic", "version", "checkpoint", "signature", "resources", "namespaces", "contents"}
)
_RESOURCE_KEYS = frozenset({"index", "record", "proof"})
_NAMESPACE_KEYS = frozenset({"namespace", "begin", "records", "proof"})
_KEYS_LOG = _KEYS | {"log"}
_KEYS_MULTI = (_KEYS - {"signature"}) | {"signatures"}
_LOG_KEYS = frozenset({"checkpoint", "index", "entry", "proof"})
MAX_LOG_NOTE = 16 * 1024        # a signed note (merkle_backup.tlog.note.MAX_NOTE)
MAX_LOG_PROOF_HASHES = 64       # an inclusion proof in a log of fewer than 2**63 entries


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
class LogInclusion:
    """§11.6: the backup's seal entry in the transparency log, with its inclusion proof."""

    checkpoint: bytes   # the log's signed tlog-checkpoint note (and any cosignature lines)
    index: int
    entry: bytes        # the log entry, bytes exact (§12.1: the seal's signed note)
    proof: list[bytes]  # RFC 9162 inclusion proof of ``entry`` at ``index``


@dataclass(frozen=True)
class ProofFile:
    checkpoint: bytes
    signature: bytes
    resources: list[ResourceProof] = field(default_factory=list)
    namespaces: list[NamespaceProof] = field(default_factory=list)
    contents: dict[str, bytes] = field(default_factory=dict)   # path -> bytes (--with-content)
    log: LogInclusion | None = None                             # version 2 only (prove --log)
    co_signatures: tuple[bytes, ...] = ()   # version 3: a seal signed by several keys (§11.1)

    @property
    def signatures(self) -> tuple[bytes, ...]:
        return (self.signature, *self.co_signatures)


def encode_proof(proof: ProofFile) -> bytes:
    """Version 1, version 2 when the proof carries a log inclusion proof, version 3 when its
    seal is signed by several keys (never logged: seal --log signs with one key)."""
    if proof.co_signatures and proof.log is not None:
        raise ValueError("a proof of a seal signed by several keys carries no log proof")
    extra: dict[str, Any] = {} if proof.log is None else {"log": {
        "checkpoint": proof.log.checkpoint, "index": proof.log.index,
        "entry": proof.log.entry, "proof": proof.log.proof}}
    packed: bytes = msgpack.packb(
        {
            "magic": PROOF_MAGIC,
            "version": (PROOF_VERSION_MULTI if proof.co_signatures else
                        PROOF_VERSION if proof.log is None else PROOF_VERSION_LOG),
            "checkpoint": proof.checkpoint,
            **({"signatures": list(proof.signatures)} if proof.co_signatures else
               {"signature": proof.signature}),
            "resources": [
                {"index": r.index, "record": r.record, "proof": r.proof} for r in proof.resources
            ],
            "namespaces": [
                {"namespace": n.namespace, "begin": n.begin, "records": n.records, "proof": n.proof}
                for n in proof.namespaces
            ],
            "contents": dict(sorted(proof.contents.items())),
            **extra,
        },
        use_bin_type=True,
    )
    return packed


def decode_proof(data: bytes) -> ProofFile:
    if len(data) > MAX_PROOF_BYTES:
        raise FormatError(f"proof file is {len(data)} bytes, over the {MAX_PROOF_BYTES} byte limit")
    raw = unpack_strict(data, what="proof file", max_array=MAX_ITEMS, max_map=MAX_ITEMS,
                        max_bin=MAX_CONTENT_BYTES)
    found = raw.get("version") if isinstance(raw, dict) else None
    if isinstance(raw, dict) and raw.get("magic") == PROOF_MAGIC and not (
            type(found) is int and found in (PROOF_VERSION, PROOF_VERSION_LOG,
                                             PROOF_VERSION_MULTI)):
        raise FormatError(f"proof file version {str(found)[:20]!r} is not supported (this tool "
                          f"reads {PROOF_VERSION}, {PROOF_VERSION_LOG} and {PROOF_VERSION_MULTI})")
    version = found if found in (PROOF_VERSION_LOG, PROOF_VERSION_MULTI) else PROOF_VERSION
    keys = {PROOF_VERSION_LOG: _KEYS_LOG, PROOF_VERSION_MULTI: _KEYS_MULTI}.get(version, _KEYS)
    obj = check_envelope(raw, what="proof file", magic=PROOF_MAGIC, version=version, keys=keys)
    checkpoint, signature, co_signatures = signed_fields(
        obj, multi=version == PROOF_VERSION_MULTI, what="proof")
    resources = [_resource(item) for item in _list(obj["resources"], "resources")]
    namespaces = [_namespace(item) for item in _list(obj["namespaces"], "namespaces")]
    contents = obj["contents"]
    if type(contents) is not dict or not all(
        type(k) is str and type(v) is bytes for k, v in contents.items()
    ):
        raise FormatError("proof contents must map paths to binary")
    if not resources and not namespaces:
        raise FormatError("proof file proves nothing: no resources and no namespaces")
    log = _log(obj["log"]) if version == PROOF_VERSION_LOG else None
    return ProofFile(checkpoint, signature, resources, namespaces, contents, log, co_signatures)


def _log(item: Any) -> LogInclusion:
    item = _entry(item, _LOG_KEYS, "log")
    checkpoint, entry, proof = item["checkpoint"], item["entry"], item["proof"]
    if type(checkpoint) is not bytes or not 0 < len(checkpoint) <= MAX_LOG_NOTE:
        raise FormatError(f"proof log checkpoint must be binary, 1 to {MAX_LOG_NOTE} bytes")
    if type(entry) is not bytes or not 0 < len(entry) <= MAX_LOG_NOTE:
        raise FormatError(f"proof log entry must be binary, 1 to {MAX_LOG_NOTE} bytes")
    if type(proof) is not list or len(proof) > MAX_LOG_PROOF_HASHES or not all(
        type(h) is bytes and len(h) == 32 for h in proof
    ):
        raise FormatError(f"proof log proof must be an array of at most {MAX_LOG_PROOF_HASHES} "
                          "32-byte hashes")
    return LogInclusion(checkpoint, _uint(item["index"], "log index"), entry, proof)


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
        raise FormatError(
            f"proof {what} must be an array of at most {MAX_PROOF_HASHES} 32-byte hashes"
        )
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
