"""Prove resources or whole namespaces to someone who holds only the public key.

``prove`` reads a backup's seal (and, with contents, its archive) and writes a small proof file;
``verify_proof`` checks one offline: the checkpoint's signature by a trusted key, then each
inclusion or namespace range proof against the signed root, then any content against the proven
leaf records. docs/format.md §11.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from merkle_backup.archive import ArchiveReader, Limits
from merkle_backup.core import tree
from merkle_backup.core.checkpoint import Checkpoint
from merkle_backup.core.keys import SCOPE_BUCKET
from merkle_backup.core.leaf import LeafRecord, content_digest, decode_record
from merkle_backup.core.proofs import verify_namespace_proof
from merkle_backup.errors import NotAuthentic, ProofError, UsageError
from merkle_backup.formats.proof import (
    NamespaceProof,
    ProofFile,
    ResourceProof,
    decode_proof,
)
from merkle_backup.signing import PublicKey
from merkle_backup.storage.files import NotRegularFile
from merkle_backup.storage.source import BackupSource
from merkle_backup.trust import SealTable, check_signature, open_seal, read_unverified
from merkle_backup.velero import check_namespace_name


@dataclass(frozen=True)
class ProvenNamespace:
    namespace: str
    resources: list[str]

    @property
    def present(self) -> bool:
        return bool(self.resources)


@dataclass
class ProofReport:
    """What a proof file proved. Only ever built for a proof that verified."""

    checkpoint: Checkpoint
    signer: str
    resources: list[str] = field(default_factory=list)
    namespaces: list[ProvenNamespace] = field(default_factory=list)
    contents: list[str] = field(default_factory=list)
    log: Any = None              # tlog.inclusion.CheckedInclusion, with --log-key
    log_unchecked: bool = False  # the file holds a log inclusion proof, no --log-key given

    def to_json(self) -> dict[str, Any]:
        cp = self.checkpoint
        log = {"log": self.log.to_json()} if self.log is not None else \
            {"log": {"checked": False}} if self.log_unchecked else {}
        return {
            "verified": True,
            "backup": cp.backup,
            "uid": cp.uid,
            "root": cp.root.hex(),
            "tree_size": cp.tree_size,
            "created": cp.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "trusted_key": self.signer,
            "resources": self.resources,
            "namespaces": [
                {"namespace": n.namespace, "present": n.present, "resources": n.resources}
                for n in self.namespaces
            ],
            "contents_checked": self.contents,
            **log,
        }


# --- prove --------------------------------------------------------------------------------------

def prove(
    source: BackupSource,
    *,
    resources: Sequence[str] = (),
    namespaces: Sequence[str] = (),
    with_content: bool = False,
    trusted: Sequence[PublicKey] = (),
    limits: Limits = Limits(),
) -> ProofFile:
    """Build a proof of ``resources`` (tar paths or bucket object names) and ``namespaces``."""
    if not resources and not namespaces:
        raise UsageError("nothing to prove: give --resource or --namespace")
    for name in namespaces:
        check_namespace_name(name)  # T75: a glob is no namespace; absent, it would "prove" it
    # One pass over the leaves checks the table and keeps the tree the proofs come from; without
    # a key the proof's recipient checks the signature, but a proof that cannot verify is never
    # written (the self-check below).
    with source.open_seal() as f:
        seal: SealTable = (open_seal(f, trusted, keep_tree=True) if trusted
                           else read_unverified(f, keep_tree=True))
    checkpoint, leaves, merkle = seal.checkpoint, seal.leaves, seal.merkle
    assert merkle is not None

    resource_proofs = []
    wanted = []
    for path in dict.fromkeys(resources):
        i = leaves.index_of(path)
        if i is None:
            raise UsageError(f"{path}: no such resource in the seal of {checkpoint.backup}")
        resource_proofs.append(ResourceProof(i, leaves.record(i), merkle.inclusion_proof(i)))
        wanted.append(i)
    namespace_proofs = []
    for namespace in dict.fromkeys(namespaces):
        run = leaves.namespace_range(namespace)
        hashes = merkle.range_proof(run.begin, run.end) if run.end > run.begin else []
        records = [leaves.record(i) for i in range(run.begin, run.end)]
        namespace_proofs.append(NamespaceProof(namespace, run.begin, records, hashes))
        wanted.extend(range(run.first, run.last))
    contents = (_contents(source, [decode_record(leaves.record(i)) for i in wanted], limits)
                if with_content else {})
    proof = ProofFile(seal.head.checkpoint, seal.head.signature, resource_proofs,
                      namespace_proofs, contents, co_signatures=seal.head.co_signatures)
    # Never hand out a proof that its recipient would reject.
    _check_claims(proof, checkpoint, ProofReport(checkpoint, "self-check"))
    return proof


def _contents(source: BackupSource, wanted: list[LeafRecord], limits: Limits) -> dict[str, bytes]:
    """The bytes of the wanted records, each checked against its leaf before it is embedded.
    A link (to the private key, say), FIFO or device in a sealed object's place is tampering:
    it is never read, and no proof is written."""
    try:
        return _read_contents(source, wanted, limits)
    except NotRegularFile as e:
        raise NotAuthentic(f"{e}: refusing to write the proof") from e


def _read_contents(source: BackupSource, wanted: list[LeafRecord],
                   limits: Limits) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    by_path = {r.path: r for r in wanted}
    for record in wanted:
        if record.key.scope == SCOPE_BUCKET:
            data = source.read_object(record.path)
            if data is not None:
                contents[record.path] = data
    if any(r.key.scope != SCOPE_BUCKET for r in wanted):
        with source.open_tarball() as stream:
            for entry in ArchiveReader(stream, limits, None):
                if entry.path in by_path and entry.problem is None:
                    if entry.path in contents:
                        raise NotAuthentic(f"{entry.path}: the archive holds this path twice")
                    contents[entry.path] = entry.data
    for path, record in by_path.items():
        data = contents.get(path)
        if data is None:
            raise NotAuthentic(
                f"{path}: sealed, but not in the backup: refusing to write the proof"
            )
        if len(data) != record.size or not hmac.compare_digest(content_digest(data), record.digest):
            raise NotAuthentic(
                f"{path}: content does not match its seal: refusing to write the proof"
            )
    return contents


# --- verify-proof -------------------------------------------------------------------------------

def verify_proof(
    proof_bytes: bytes,
    trusted: Sequence[PublicKey],
    *,
    contents: Sequence[tuple[str, bytes]] = (),
    expected_backup: str | None = None,
    expected_uid: str | None = None,
    log_keys: Sequence[PublicKey] = (),
    witnesses: Sequence[PublicKey] = (),
) -> ProofReport:
    """Check a proof file offline. Raises NotAuthentic (or a subclass) unless it all holds.

    ``contents`` are (label, bytes) of files the user holds; each must be the content of one
    proven resource. ``expected_backup`` / ``expected_uid``: the backup the user expects.
    ``log_keys``: require the log inclusion proof (§11.6), its head signed by one of them and
    cosigned by every one of ``witnesses``.
    """
    _unverified = decode_proof(proof_bytes)
    # 1. The checkpoint, signed by a trusted key, of the backup the user expects.
    checkpoint, signer = check_signature(_unverified, trusted)
    if expected_backup is not None and checkpoint.backup != expected_backup:
        raise NotAuthentic(
            f"the proof is for backup {checkpoint.backup!r}, not {expected_backup!r}"
        )
    if expected_uid is not None and checkpoint.uid != expected_uid:
        raise NotAuthentic(f"the proof is for backup uid {checkpoint.uid}, not {expected_uid}")
    report = ProofReport(checkpoint, signer.source)
    proven = _check_claims(_unverified, checkpoint, report)
    if log_keys:
        from merkle_backup.tlog.inclusion import check_inclusion

        report.log = check_inclusion(_unverified.log, _unverified.checkpoint,
                                     _unverified.signature, signer=signer, log_keys=log_keys,
                                     witnesses=witnesses)
    elif witnesses:
        raise UsageError("--witness needs --log-key")
    else:
        report.log_unchecked = _unverified.log is not None
    # 4. The user's files, each against a proven record.
    by_digest = {(r.size, r.digest): r for r in proven.values()}
    for label, data in contents:
        record = by_digest.get((len(data), content_digest(data)))
        if record is None:
            raise NotAuthentic(f"{label}: content matches none of the proven resources")
        report.contents.append(f"{label} = {record.path}")
    return report


def _check_claims(
    _unverified: ProofFile, checkpoint: Checkpoint, report: ProofReport
) -> dict[str, LeafRecord]:
    """Steps 2-3 of §11.5 against a checkpoint already trusted; fills ``report``."""
    proven: dict[str, LeafRecord] = {}
    # 2. Each resource: an RFC 9162 inclusion proof of its leaf record.
    for item in _unverified.resources:
        record = _record(item.record)
        with _about(f"resource {record.path}"):
            tree.verify_inclusion(index=item.index, size=checkpoint.tree_size,
                                  leaf_hash=tree.BLAKE3.leaf_hash(item.record), proof=item.proof,
                                  root=checkpoint.root)
        proven[record.path] = record
        report.resources.append(record.path)
    # 3. Each namespace: completeness of the bracketed run, then its range proof.
    for run in _unverified.namespaces:
        with _about(f"namespace {run.namespace}"):
            own = verify_namespace_proof(namespace=run.namespace, begin=run.begin,
                                         size=checkpoint.tree_size, records=run.records,
                                         proof=run.proof, root=checkpoint.root)
        for record in own:
            proven[record.path] = record
        report.namespaces.append(ProvenNamespace(run.namespace, [r.path for r in own]))
    # Embedded content, each against a proven record.
    for path, data in _unverified.contents.items():
        held = proven.get(path)
        if held is None:
            raise NotAuthentic(f"{path}: embedded content for a resource the proof does not prove")
        _same_content(held, data, f"embedded content of {path}")
        report.contents.append(path)
    return proven


def _record(data: bytes) -> LeafRecord:
    try:
        return decode_record(data)
    except ValueError as e:
        raise ProofError(f"proof holds an invalid leaf record: {e}") from e


@contextmanager
def _about(what: str) -> Iterator[None]:
    """A proof's ProofError, named by what it was to prove."""
    try:
        yield
    except ProofError as e:
        raise ProofError(f"{what}: {e}") from e


def _same_content(record: LeafRecord, data: bytes, what: str) -> None:
    if len(data) != record.size or not hmac.compare_digest(content_digest(data), record.digest):
        raise NotAuthentic(f"{what} does not match its sealed leaf")
