"""T60-T62 of docs/threat-model.md: seal version 2, whose checkpoint also signs the BLAKE3 of
the seal's leaf section (docs/format.md §5.3, §7.4, §9.1 step 5').

An unchanged tarball and an unchanged leaf section are proven by two hashes and the signature;
anything else takes the full record-by-record check, so a forged section is caught and named as
before. A version-1 seal (tests/fixtures/seals/demo-small-v1.seal, written by the version-1
sealer with the RFC 8032 §7.1 TEST 1 key) keeps verifying on the record-by-record path.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from merkle_backup.core import table
from merkle_backup.formats.seal import (
    SealFile,
    decode_seal,
    encode_seal,
    leaf_frame,
    leaf_section,
    read_seal_head,
)
from merkle_backup.selection import Scope, Selection
from merkle_backup.signing import load_public_key
from merkle_backup.storage.local import LocalBackup
from merkle_backup.trust import open_signed, open_table
from merkle_backup.verifier import verify_backup
from tests.attacks import gotar
from tests.attacks.helpers import (
    DEMO_UID,
    EXIT_CANNOT_CHECK,
    EXIT_NOT_AUTHENTIC,
    EXIT_OK,
    NS_A,
    NS_B,
    expect_not_authentic,
    expect_refusal,
    run,
    seal,
    seal_path,
    tarball,
    verify,
)
from tests.conftest import copy_backup

FIXTURES = Path(__file__).parent.parent / "fixtures" / "seals"
V1_SEAL = FIXTURES / "demo-small-v1.seal"
V1_PUB = FIXTURES / "rfc8032-test1.pub"  # RFC 8032 §7.1 TEST 1 (a public test vector)
PROVEN = "leaf table is byte-identical to the sealed one (leaves-blake3): no record read"
DEPLOYMENT = "resources/deployments.apps/namespaces/monitoring-000/hazelcast-638265.json"


def _split(path: Path) -> tuple[bytes, bytes]:
    """(the seal's bytes up to its leaf section, the leaf section)."""
    data = path.read_bytes()
    head = read_seal_head(io.BytesIO(data))
    return data[: head.leaves_at], data[head.leaves_at:]


def _records(path: Path) -> list[bytes]:
    return decode_seal(path.read_bytes()).leaves


# --- T60: the shortcut, and when it is not taken ---------------------------------------------

def test_t60_unchanged_backup_is_proven_by_two_hashes(sealed: Path, keypair) -> None:
    """T60: a new seal is version 2; an unchanged backup verifies by the archive's and the leaf
    section's hashes, and says so; the verdict is the record-by-record path's."""
    data = seal_path(sealed).read_bytes()
    assert decode_seal(data).checkpoint.startswith(b"merkle-backup/checkpoint/v2\n")
    code, report = verify(sealed, keypair[1])
    assert code == EXIT_OK and report["verified"], report
    assert PROVEN in report["notes"] and "tarball is byte-identical to the sealed one" in report["notes"]
    assert report["checked"] == report["tree_size"] == 330
    # The same verdict when the shortcut is not taken (archive not given to open_table).
    pub = load_public_key(keypair[1])
    with io.BytesIO(data) as f:
        fast = open_table(f, open_signed(f, [pub]), archive=_archive(sealed))
    with io.BytesIO(data) as f:
        full = open_table(f, open_signed(f, [pub]))
    assert fast.table_proven and not full.table_proven
    assert isinstance(fast.leaves, table.LeafPrefix)  # only the bucket objects' leaves were read
    assert fast.bucket == full.bucket and fast.in_scope == full.in_scope
    assert [fast.leaves.record(i) for i in fast.bucket] == [full.leaves.record(i) for i in full.bucket]


def _archive(folder: Path) -> tuple[bytes, int]:
    import blake3

    data = tarball(folder).read_bytes()
    return blake3.blake3(data).digest(), len(data)


FORGERIES = {
    # A record's digest rewritten (to a tampered Deployment's, say), the archive left honest.
    "record-rewritten": lambda records: records[:40] + [records[40][:-1] + b"\x00"] + records[41:],
    "record-removed": lambda records: records[:40] + records[41:],
    "records-swapped": lambda records: records[:40] + [records[41], records[40]] + records[42:],
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_t60_forged_leaf_section_under_an_honest_archive(sealed: Path, keypair, forgery: str) -> None:
    """T60: the leaf section edited, the checkpoint, its signature and the tarball untouched:
    the section's hash is not the signed one, so every record is checked, and the table does
    not hash to the signed root (or holds another number of leaves)."""
    path = seal_path(sealed)
    original = decode_seal(path.read_bytes())
    path.write_bytes(encode_seal(SealFile(original.checkpoint, original.signature,
                                          FORGERIES[forgery](original.leaves))))
    says = "leaves, its checkpoint says 330" if forgery == "record-removed" else \
        "does not hash to its signed root"
    expect_refusal(EXIT_NOT_AUTHENTIC, "verify", sealed, "--trust", keypair[1],
                   says=("not authentic", says))
    for scoped in (("--namespace", NS_A), ("--resource", DEPLOYMENT)):
        expect_refusal(EXIT_NOT_AUTHENTIC, "verify", sealed, "--trust", keypair[1], *scoped,
                       says=("not authentic", says))


@pytest.mark.parametrize("appended", [b"\x00", b"\xc4\x01x", b"\xa1x\xc0"],
                         ids=["zero-byte", "another-record", "another-map-entry"])
def test_t60_bytes_after_the_leaf_section(sealed: Path, keypair, appended: bytes) -> None:
    """T60: bytes after the last record are in the hashed section (it runs to the end of the
    file), so the hash differs and the strict decoder refuses them."""
    path = seal_path(sealed)
    path.write_bytes(path.read_bytes() + appended)
    expect_refusal(EXIT_CANNOT_CHECK, "verify", sealed, "--trust", keypair[1],
                   says=("error", "trailing bytes"))


def test_t60_reframed_records_still_verify_record_by_record(sealed: Path, keypair) -> None:
    """T60: the same records under other msgpack framing (a bin16 header for a short record):
    not the sealer's bytes, so no shortcut; the records are the signed ones, so it verifies
    (the leaf-section hash only ever saves work, never decides more than the root does)."""
    head, _ = _split(seal_path(sealed))
    records = _records(seal_path(sealed))
    section = b"\xc5" + len(records[0]).to_bytes(2, "big") + records[0] + leaf_section(records[1:])
    assert leaf_frame(len(records[0])) != section[:3]
    seal_path(sealed).write_bytes(head + section)
    code, report = verify(sealed, keypair[1])
    assert code == EXIT_OK, report
    assert PROVEN not in report["notes"]
    assert "tarball is byte-identical to the sealed one" in report["notes"]


def test_t60_changed_archive_takes_the_full_check(sealed: Path, keypair) -> None:
    """T60: the leaf section is unchanged but the tarball is not: every entry is read and the
    change named, exactly as with version 1."""
    members = gotar.load(tarball(sealed))
    i = gotar.index_of(members, DEPLOYMENT)
    members[i] = members[i].with_data(members[i].data.replace(b"hazelcast", b"hazelcasT", 1))
    gotar.store(tarball(sealed), members)
    report = expect_not_authentic(sealed, keypair[1], (DEPLOYMENT, "modified"))
    assert PROVEN not in report["notes"]


def test_t60_forced_seal_reads_the_archive_for_its_warnings(tmp_path: Path, keypair) -> None:
    """T60: a seal made with --force (inconsistent > 0) never takes the shortcut: the entries
    are read to name the findings, as warnings."""
    folder = copy_backup("demo-small", tmp_path)
    members = gotar.load(tarball(folder))
    i = gotar.index_of(members, DEPLOYMENT)
    members[i] = members[i].with_data(members[i].data.replace(b'"hazelcast-638265"', b'"other"', 1))
    gotar.store(tarball(folder), members)
    seal(folder, keypair[0], "--force")
    code, report = verify(folder, keypair[1])
    assert code == EXIT_OK, report
    assert PROVEN not in report["notes"] and report["warnings"], report


# --- T61: downgrade and upgrade ----------------------------------------------------------------

def test_t61_v2_seal_relabelled_version_1_is_refused(sealed: Path, keypair) -> None:
    """T61: the envelope's version set to 1, the v2 checkpoint and signature kept: a version-1
    seal holds a version-1 checkpoint only, so it is malformed (and were it read as version 1,
    every record would be checked against the signed root: nothing to gain)."""
    path = seal_path(sealed)
    original = decode_seal(path.read_bytes())
    path.write_bytes(encode_seal(SealFile(original.checkpoint, original.signature,
                                          original.leaves, version=1)))
    expect_refusal(EXIT_CANNOT_CHECK, "verify", sealed, "--trust", keypair[1],
                   says=("error", "seal version 1 holds a checkpoint of version 2"))


def test_t61_v2_checkpoint_rewritten_as_version_1_breaks_the_signature(sealed: Path, keypair) -> None:
    """T61: the checkpoint's text turned into a version-1 one (context line, no leaves-blake3)
    to escape the leaf-section check: the signed bytes changed, no trusted key signed them."""
    path = seal_path(sealed)
    original = decode_seal(path.read_bytes())
    lines = original.checkpoint.decode().split("\n")
    v1 = "\n".join(["merkle-backup/checkpoint/v1"] + [x for x in lines[1:] if not x.startswith(
        "leaves-blake3 ")]).encode()
    path.write_bytes(encode_seal(SealFile(v1, original.signature, original.leaves)))
    expect_refusal(EXIT_NOT_AUTHENTIC, "verify", sealed, "--trust", keypair[1],
                   says=("not authentic", "not signed by any trusted key"))


@pytest.mark.parametrize("order", [("magic", "version", "leaves", "checkpoint", "signature"),
                                   ("leaves", "magic", "checkpoint", "signature", "version")],
                         ids=["version-before-leaves", "version-after-leaves"])
def test_t61_v2_leaves_not_last_is_refused(sealed: Path, keypair, order: tuple[str, ...]) -> None:
    """T61: a version-2 seal whose leaves are not its last field (so the section would not run
    to the end of the file) is malformed, wherever its version is."""
    import msgpack

    original = decode_seal(seal_path(sealed).read_bytes())
    values = {"magic": "merkle-backup-seal", "version": 2, "leaves": original.leaves,
              "checkpoint": original.checkpoint, "signature": original.signature}
    reordered = {key: values[key] for key in order}
    seal_path(sealed).write_bytes(msgpack.packb(reordered, use_bin_type=True))
    for args in ((), ("--namespace", NS_A)):
        expect_refusal(EXIT_CANNOT_CHECK, "verify", sealed, "--trust", keypair[1], *args,
                       says=("error", "leaves are not its last field"))
    assert run("inspect", seal_path(sealed)).code == EXIT_CANNOT_CHECK


def _v1_backup(tmp_path: Path) -> Path:
    folder = copy_backup("demo-small", tmp_path)
    shutil.copyfile(V1_SEAL, seal_path(folder))
    return folder


def test_t61_v1_seal_relabelled_version_2_is_refused(tmp_path: Path) -> None:
    """T61 (upgrade): a version-1 seal's envelope claims version 2: its checkpoint signs no
    leaf-section hash, so it is malformed; with a forged leaves-blake3 line the signature fails."""
    folder = _v1_backup(tmp_path)
    original = decode_seal(seal_path(folder).read_bytes())
    seal_path(folder).write_bytes(encode_seal(SealFile(original.checkpoint, original.signature,
                                                       original.leaves, version=2)))
    expect_refusal(EXIT_CANNOT_CHECK, "verify", folder, "--trust", V1_PUB,
                   says=("error", "seal version 2 holds a checkpoint of version 1"))
    text = original.checkpoint.decode().replace("merkle-backup/checkpoint/v1", "merkle-backup/checkpoint/v2")
    digest = __import__("blake3").blake3(leaf_section(original.leaves)).hexdigest()
    text = text.replace("\ncreated ", f"\nleaves-blake3 {digest}\ncreated ")
    seal_path(folder).write_bytes(encode_seal(SealFile(text.encode(), original.signature,
                                                       original.leaves)))
    expect_refusal(EXIT_NOT_AUTHENTIC, "verify", folder, "--trust", V1_PUB,
                   says=("not authentic", "not signed by any trusted key"))


# --- T62: version 1 keeps verifying ------------------------------------------------------------

def test_t62_v1_fixture_keeps_verifying(tmp_path: Path) -> None:
    """T62: the committed version-1 seal verifies record by record (whole, one namespace, a
    resource), proves and its proof verifies; tampering is still named."""
    folder = _v1_backup(tmp_path)
    assert decode_seal(seal_path(folder).read_bytes()).checkpoint.startswith(
        b"merkle-backup/checkpoint/v1\n")
    for extra in ((), ("--namespace", NS_B), ("--resource", DEPLOYMENT), ("--uid", DEMO_UID)):
        code, report = verify(folder, V1_PUB, *extra)
        assert code == EXIT_OK, report
        assert PROVEN not in report["notes"]
    proof = tmp_path / "p.proof"
    assert run("prove", folder, "--trust", V1_PUB, "--namespace", NS_A, "-o", proof).code == EXIT_OK
    assert run("verify-proof", proof, "--trust", V1_PUB).code == EXIT_OK
    members = gotar.load(tarball(folder))
    i = gotar.index_of(members, DEPLOYMENT)
    members[i] = members[i].with_data(members[i].data + b" ")
    gotar.store(tarball(folder), members)
    expect_not_authentic(folder, V1_PUB, (DEPLOYMENT, "modified"))


# --- the scoped shortcut decides exactly what the record-by-record pass decides ----------------

# (namespace a, namespace b, a tar path, a bucket object) of each backup
NAMES = {
    "demo-small": (NS_A, NS_B, DEPLOYMENT, "demo-small-logs.gz"),
    "restore-mix": ("prod-a", "dev", "resources/secrets/namespaces/prod-a/web-creds.json",
                    "restore-mix-logs.gz"),
}
SCOPES = {
    "namespace": lambda a, b, entry, obj: Scope.namespace(a),
    "two-namespaces": lambda a, b, entry, obj: Scope.namespace(a, b),
    "unknown-namespace": lambda a, b, entry, obj: Scope.namespace("nope"),
    "pattern-matching-nothing": lambda a, b, entry, obj: Scope(Selection(
        include_namespaces=("zz-*",))),
    "exclude": lambda a, b, entry, obj: Scope(Selection(exclude_namespaces=(a,),
                                                        include_cluster_resources=False)),
    "cluster-resources": lambda a, b, entry, obj: Scope(Selection(
        include_namespaces=(b,), include_cluster_resources=True)),
    "resources-filter": lambda a, b, entry, obj: Scope(Selection(
        include_namespaces=(b,), include_resources=("deployments.apps", "secrets"))),
    "unresolved-resource": lambda a, b, entry, obj: Scope(Selection(include_resources=("deploy",))),
    "single-resources": lambda a, b, entry, obj: Scope(resources=frozenset({entry, obj})),
    "namespace-and-resource": lambda a, b, entry, obj: Scope(Selection(exact_namespaces=(b,)),
                                                             frozenset({entry})),
}


@pytest.mark.parametrize("backup", ["demo-small", "restore-mix"])
@pytest.mark.parametrize("name", list(SCOPES))
def test_scoped_shortcut_equals_the_record_by_record_pass(tmp_path: Path, keypair, backup: str,
                                                          name: str) -> None:
    """Run by run (trust._ProvenTable) and leaf by leaf (trust._TablePass) decide the same
    leaves, namespaces, resources and notes, and the reports agree."""
    folder = copy_backup(backup, tmp_path)
    seal(folder, keypair[0])
    pub = load_public_key(keypair[1])
    scope = SCOPES[name](*NAMES[backup])
    data = seal_path(folder).read_bytes()
    with io.BytesIO(data) as f:
        fast = open_table(f, open_signed(f, [pub]), scope, archive=_archive(folder))
    with io.BytesIO(data) as f:
        full = open_table(f, open_signed(f, [pub]), scope)
    assert fast.table_proven and not full.table_proven
    assert fast.in_scope == full.in_scope
    assert (fast.namespaces, fast.resources, fast.bucket) == (full.namespaces, full.resources,
                                                              full.bucket)
    assert fast.scope_notes == full.scope_notes
    for i in range(len(full.leaves)):
        assert fast.leaves.record(i) == full.leaves.record(i)
    report = verify_backup(LocalBackup(folder), [pub], scope=scope).to_json()
    notes = report.pop("notes")
    assert PROVEN in notes
    assert report["verified"], report
