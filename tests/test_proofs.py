"""Portable proofs end to end (merkle_backup/proofs.py, the `prove` and `verify-proof` commands,
docs/format.md §11).

* Library: verify_proof on proof files signed here over synthetic leaf tables, including
  celestiaorg/nmt#161 (inclusion of some leaves is never reported as a complete namespace) and
  random mutations of a whole signed proof file (only merkle_backup errors; never a false claim).
* CLI, on the Go-written fixture: prove a resource, a namespace and an absent namespace, with and
  without --with-content; the proven paths are exactly the tarball's entries of the namespace;
  exit codes; refusal to embed tampered content; a proof of backup A is never B's.
"""

from __future__ import annotations

import json
import math
import tarfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merkle_backup.core.checkpoint import Checkpoint
from merkle_backup.errors import (
    Error,
    NotAuthentic,
    ProofError,
    SignatureError,
)
from merkle_backup.formats.proof import (
    NamespaceProof,
    ProofFile,
    ResourceProof,
    decode_proof,
    encode_proof,
)
from merkle_backup.proofs import verify_proof
from merkle_backup.signing import public_key_of, sign
from tests.cli import run
from tests.conftest import copy_backup
from tests.core.test_proofs_core import Table, make_record
from tests.mutate import mutate
from tests.tamper import add_sidecar, first, read_entries, rewrite, write_entries

# --- Library: proof files signed here ----------------------------------------------------------

PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TRUSTED = public_key_of(PRIVATE, "test key")
OTHER = public_key_of(Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))), "other key")


def synthetic(paths: list[str], salt: bytes = b"") -> tuple[Table, dict[str, bytes]]:
    contents = {p: b'{"path":"%s","salt":"%s"}' % (p.encode(), salt) for p in paths}
    records = [make_record(p, data) for p, data in contents.items()]
    return Table(sorted(records, key=lambda r: r.key)), contents


def signed(table: Table, backup: str = "synthetic") -> tuple[bytes, bytes]:
    checkpoint = Checkpoint(
        backup=backup, uid="-", tree_size=table.size, root=table.root, archive_digest=bytes(32),
        archive_size=0, created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        key_id=TRUSTED.key_id,
    ).body()
    return checkpoint, sign(PRIVATE, checkpoint)


def resource_proof(table: Table, path: str) -> ResourceProof:
    index = [r.path for r in table.records].index(path)
    return ResourceProof(index, table.encoded[index], table.merkle.inclusion_proof(index))


def namespace_proof(table: Table, namespace: str) -> NamespaceProof:
    _, begin, records, proof = table.honest(namespace)
    return NamespaceProof(namespace, begin, records, proof)


# "" (3 leaves), "app" (4), "billing" (2), "zeta" (2): no namespace below touches a tree edge.
PATHS = [
    "metadata/version",
    "resources/persistentvolumes/cluster/pv1.json",
    "resources/storageclasses.storage.k8s.io/cluster/slow.json",
    "resources/configmaps/namespaces/app/settings.json",
    "resources/pods/namespaces/app/web.json",
    "resources/pods/v1/namespaces/app/web.json",
    "resources/namespaces/cluster/app.json",
    "resources/pods/namespaces/billing/api.json",
    "resources/secrets/namespaces/billing/key.json",
    "resources/pods/namespaces/zeta/x.json",
    "resources/namespaces/cluster/zeta.json",
]
SYN, SYN_CONTENTS = synthetic(PATHS)
APP = [r.path for r in SYN.own("app")]
BILLING_POD = "resources/pods/namespaces/billing/api.json"


def syn_proof(**changes: Any) -> ProofFile:
    checkpoint, signature = signed(SYN)
    fields: dict[str, Any] = {
        "checkpoint": checkpoint, "signature": signature,
        "resources": [resource_proof(SYN, BILLING_POD)],
        "namespaces": [namespace_proof(SYN, n) for n in ("app", "absent-x", "zzz")],
        "contents": {p: SYN_CONTENTS[p] for p in [*APP, BILLING_POD]},
    }
    fields.update(changes)
    return ProofFile(**fields)


def test_verify_proof_reports_exactly_what_is_proven() -> None:
    report = verify_proof(encode_proof(syn_proof()), [OTHER, TRUSTED],
                          contents=[("mine.json", SYN_CONTENTS[APP[0]])])
    assert report.signer == "test key" and report.checkpoint.tree_size == len(PATHS)
    assert report.resources == [BILLING_POD]
    assert [(n.namespace, n.resources) for n in report.namespaces] == [
        ("app", APP), ("absent-x", []), ("zzz", [])]
    assert sorted(APP) == sorted(p for p in PATHS if "/app/" in p or p.endswith("/app.json"))
    assert sorted(report.contents) == sorted(APP + [BILLING_POD, f"mine.json = {APP[0]}"])
    js = report.to_json()
    assert js["verified"] is True and js["backup"] == "synthetic" and js["root"] == SYN.root.hex()
    assert [n["present"] for n in js["namespaces"]] == [True, False, False]


def test_verify_proof_needs_a_trusted_key() -> None:
    with pytest.raises(SignatureError):
        verify_proof(encode_proof(syn_proof()), [OTHER])


@pytest.mark.parametrize("case", ["tampered", "unproven-neighbour", "unknown-path", "truncated"])
def test_embedded_content_must_be_a_proven_resource(case: str) -> None:
    contents = dict(syn_proof().contents)
    if case == "tampered":
        contents[APP[0]] = contents[APP[0]].replace(b"app", b"evil")
    elif case == "unproven-neighbour":  # the leaf right before "app" is in its proof, unproven
        neighbour = SYN.records[[r.path for r in SYN.records].index(APP[0]) - 1].path
        assert neighbour not in APP + [BILLING_POD]
        contents[neighbour] = SYN_CONTENTS[neighbour]
    elif case == "unknown-path":
        contents["resources/pods/namespaces/app/extra.json"] = b"{}"
    else:
        contents[BILLING_POD] = contents[BILLING_POD][:-1]
    with pytest.raises(NotAuthentic):
        verify_proof(encode_proof(syn_proof(contents=contents)), [TRUSTED])


def test_user_content_must_match_a_proven_resource() -> None:
    neighbour = SYN.records[[r.path for r in SYN.records].index(APP[0]) - 1].path  # not proven
    for data in (b"{}", SYN_CONTENTS[neighbour], SYN_CONTENTS[APP[0]] + b" "):
        with pytest.raises(NotAuthentic):
            verify_proof(encode_proof(syn_proof()), [TRUSTED], contents=[("held.json", data)])


@pytest.mark.parametrize("begin", [0, 2, 3, 7, len(PATHS), 2**64 - 1])
def test_nmt86_empty_namespace_proof_in_a_file(begin: int) -> None:
    """celestiaorg/nmt#86 through the file: an entry with no records never proves absence."""
    for namespace in ("absent-x", "app"):
        forged = NamespaceProof(namespace, begin, [], [])
        with pytest.raises(ProofError):
            verify_proof(encode_proof(syn_proof(namespaces=[forged], resources=[], contents={})),
                         [TRUSTED])


def test_nmt161_inclusion_of_all_but_one_leaf_is_reported_as_resources_only() -> None:
    """celestiaorg/nmt#161: each leaf of "app" but one, with its inclusion proof, verifies, and
    verify_proof reports them as single resources: no namespace is claimed complete. The same
    records as a namespace proof fail."""
    left_out = APP[1]
    some = [resource_proof(SYN, p) for p in APP if p != left_out]
    report = verify_proof(encode_proof(syn_proof(resources=some, namespaces=[], contents={})),
                          [TRUSTED])
    assert report.resources == [p for p in APP if p != left_out]
    assert report.namespaces == [] and report.to_json()["namespaces"] == []
    honest = namespace_proof(SYN, "app")
    drop = honest.records.index(SYN.encoded[[r.path for r in SYN.records].index(left_out)])
    forged = NamespaceProof("app", honest.begin, honest.records[:drop] + honest.records[drop + 1:],
                            honest.proof)
    with pytest.raises(ProofError):
        verify_proof(encode_proof(syn_proof(namespaces=[forged])), [TRUSTED])
    # The resources prove what they prove, and a namespace proof beside them is still checked.
    with pytest.raises(ProofError):
        verify_proof(encode_proof(syn_proof(resources=some, namespaces=[forged], contents={})),
                     [TRUSTED])


def test_proofs_of_one_backup_never_verify_under_another() -> None:
    a_contents = SYN_CONTENTS
    b, b_contents = synthetic(PATHS, salt=b"b")
    a_proof = syn_proof()
    b_checkpoint, b_signature = signed(b, backup="other-backup")
    transplanted = ProofFile(b_checkpoint, b_signature, a_proof.resources, a_proof.namespaces, {})
    with pytest.raises(ProofError):
        verify_proof(encode_proof(transplanted), [TRUSTED])
    for namespace in a_proof.namespaces:  # even the absence proofs: the neighbours differ
        with pytest.raises(ProofError):
            alone = ProofFile(b_checkpoint, b_signature, [], [namespace])
            verify_proof(encode_proof(alone), [TRUSTED])
    # B's content is not A's: same paths, other bytes.
    with pytest.raises(NotAuthentic):
        verify_proof(encode_proof(a_proof), [TRUSTED], contents=[("b", b_contents[BILLING_POD])])
    assert a_contents[BILLING_POD] != b_contents[BILLING_POD]


_SOURCE = encode_proof(syn_proof())


def _check_claims_are_true(mutated: bytes, report: Any) -> None:
    """A proof that verified may only claim what the signed table holds."""
    decoded = decode_proof(mutated)
    for item in decoded.resources:
        assert item.record == SYN.encoded[item.index]
    for item in decoded.namespaces:
        assert item.records == SYN.encoded[item.begin:item.begin + len(item.records)]
    for proven in report.namespaces:
        assert proven.resources == [r.path for r in SYN.own(proven.namespace)]
    for path, data in decoded.contents.items():
        assert data == SYN_CONTENTS[path]
    assert set(report.resources) <= set(PATHS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_mutations_of_a_signed_proof_file(data: st.DataObject) -> None:
    """verify_proof raises only merkle_backup errors on a mutated file, and a mutated file that
    still verifies claims nothing false (e.g. "zzz" absent mutated to "zzy" absent is true)."""
    mutated = mutate(_SOURCE, data, most=3, keep=1)
    try:
        report = verify_proof(mutated, [TRUSTED])
    except Error:
        return
    _check_claims_are_true(mutated, report)


def _mutate_list(
    data: st.DataObject, values: list[bytes], pool: st.SearchStrategy[bytes]
) -> list[bytes]:
    values = list(values)
    op = data.draw(st.sampled_from(["drop", "dup", "swap", "alter", "add"]), label="op")
    if not values or op == "add":
        at = data.draw(st.integers(0, len(values)), label="at")
        values.insert(at, data.draw(pool, label="new"))
        return values
    j = data.draw(st.integers(0, len(values) - 1), label="position")
    if op == "drop":
        del values[j]
    elif op == "dup":
        values.insert(j, values[j])
    elif op == "swap" and len(values) > 1:
        k = (j + 1) % len(values)
        values[j], values[k] = values[k], values[j]
    else:
        b = data.draw(st.integers(0, len(values[j]) - 1), label="byte")
        bit = 1 << data.draw(st.integers(0, 7), label="bit")
        values[j] = values[j][:b] + bytes([values[j][b] ^ bit]) + values[j][b + 1:]
    return values


_HASHES = st.binary(min_size=32, max_size=32)
_RECORDS = st.sampled_from(SYN.encoded)
_NAMES = st.sampled_from(["app", "apq", "ap", "absent-y", "billing", "zeta", "zzy", "a"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_structural_mutations_of_a_signed_proof_file(data: st.DataObject) -> None:
    """Mutations of the decoded file: drop, duplicate, swap, alter or add one hash or record, or
    change an index, a begin, a record or a name. Only Errors; a verified claim is true."""
    proof = syn_proof()
    resources, namespaces = list(proof.resources), list(proof.namespaces)
    integers = st.integers(0, 2**64 - 1)
    if data.draw(st.booleans(), label="resource"):
        r = resources[0]
        field = data.draw(st.sampled_from(["proof", "index", "record"]), label="field")
        if field == "proof":
            r = ResourceProof(r.index, r.record, _mutate_list(data, r.proof, _HASHES))
        elif field == "index":
            near = st.integers(max(r.index - 3, 0), r.index + 3)
            r = ResourceProof(data.draw(near | integers), r.record, r.proof)
        else:
            r = ResourceProof(r.index, data.draw(_RECORDS), r.proof)
        resources[0] = r
    else:
        k = data.draw(st.integers(0, len(namespaces) - 1), label="namespace proof")
        n = namespaces[k]
        field = data.draw(st.sampled_from(["proof", "records", "begin", "name"]), label="field")
        if field == "proof":
            hashes = _mutate_list(data, n.proof, _HASHES)
            n = NamespaceProof(n.namespace, n.begin, n.records, hashes)
        elif field == "records":
            records = _mutate_list(data, n.records, _RECORDS)
            n = NamespaceProof(n.namespace, n.begin, records, n.proof)
        elif field == "begin":
            near = st.integers(max(n.begin - 3, 0), n.begin + 3)
            n = NamespaceProof(n.namespace, data.draw(near | integers), n.records, n.proof)
        else:
            n = NamespaceProof(data.draw(_NAMES), n.begin, n.records, n.proof)
        namespaces[k] = n
    mutated = encode_proof(syn_proof(resources=resources, namespaces=namespaces))
    try:
        report = verify_proof(mutated, [TRUSTED])
    except Error:
        return
    _check_claims_are_true(mutated, report)


# --- CLI on the Go-written fixture -------------------------------------------------------------

NS = "monitoring-000"


def seal(folder: Path, key: Path) -> None:
    code, _, err = run("seal", folder, "--key", key)
    assert code == 0, err


def verify_json(proof: Path, pub: Path, *extra: str | Path) -> tuple[int, dict]:
    code, out, _ = run("verify-proof", proof, "--trust", pub, "--json", *extra)
    return code, json.loads(out)


def tarball(folder: Path) -> Path:
    return folder / f"{folder.name}.tar.gz"


def namespace_entries(path: Path, namespace: str) -> dict[str, bytes]:
    """The tar entries a restore of ``namespace`` reads, found by their paths (§3.1), not keys."""
    found = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            namespaced = parts[0] == "resources" and parts[-3:-1] == ["namespaces", namespace]
            own_object = (parts[0] == "resources" and parts[1] == "namespaces"
                          and parts[-2:] == ["cluster", f"{namespace}.json"])
            if namespaced or own_object:
                found[member.name] = tar.extractfile(member).read()
    return found


@pytest.fixture
def sealed(backup: Path, keypair: tuple[Path, Path]) -> Path:
    seal(backup, keypair[0])
    return backup


def _seal_root(folder: Path, pub: Path) -> str:
    code, out, _ = run("verify", folder, "--trust", pub, "--json", "--resource", "metadata/version")
    assert code == 0
    return json.loads(out)["root"]


def test_every_sealed_leaf_is_found_by_its_path_and_nothing_else(sealed: Path, keypair) -> None:
    """prove finds a resource by bisection on its key (TrustedSeal.index_of), not by a dict of
    every path: each leaf, tar entry or bucket object, must be found at its own index, and a
    path that is not sealed (or not a path at all) nowhere."""
    from merkle_backup.signing import load_public_key
    from merkle_backup.storage.local import LocalBackup
    from merkle_backup.trust import open_seal

    with LocalBackup(sealed).open_seal() as f:
        trusted = open_seal(f, [load_public_key(keypair[1])])
    leaves = trusted.leaves
    paths = [leaves.path(i) for i in range(len(leaves))]
    assert "velero-backup.json" in paths and "metadata/version" in paths
    assert [leaves.index_of(p) for p in paths] == list(range(len(paths)))
    for path in ("resources/pods/namespaces/nope/x.json", paths[0] + "x", "nope.json", "../x", ""):
        assert leaves.index_of(path) is None
    code, _, err = run("prove", sealed, "--resource", "resources/pods/namespaces/nope/x.json",
                       "-o", sealed.parent / "x.proof")
    assert code == 2 and "no such resource in the seal of demo-small" in err  # a usage error
    assert not (sealed.parent / "x.proof").exists()


@pytest.mark.parametrize("with_content", [False, True], ids=["bare", "with-content"])
def test_prove_a_resource(sealed: Path, keypair, tmp_path: Path, with_content: bool) -> None:
    path = first(read_entries(tarball(sealed)), f"resources/deployments.apps/namespaces/{NS}/")
    out = tmp_path / "r.proof"
    flags = ["--with-content"] if with_content else []
    code, stdout, err = run("prove", sealed, "--resource", path, "--resource", "velero-backup.json",
                            "--trust", keypair[1], "-o", out, *flags)
    assert code == 0, err
    assert "2 resource(s)" in stdout
    code, report = verify_json(out, keypair[1])
    assert code == 0 and report["verified"] is True
    assert report["backup"] == "demo-small" and report["root"] == _seal_root(sealed, keypair[1])
    assert report["resources"] == [path, "velero-backup.json"] and report["namespaces"] == []
    embedded = sorted([path, "velero-backup.json"]) if with_content else []
    assert sorted(report["contents_checked"]) == embedded
    proof = decode_proof(out.read_bytes())
    assert all(len(r.proof) <= math.ceil(math.log2(report["tree_size"])) for r in proof.resources)


@pytest.mark.parametrize("with_content", [False, True], ids=["bare", "with-content"])
def test_prove_a_namespace_is_exactly_its_tar_entries(sealed: Path, keypair, tmp_path: Path,
                                                       with_content: bool) -> None:
    expected = namespace_entries(tarball(sealed), NS)
    assert len(expected) > 100
    out = tmp_path / "ns.proof"
    code, _, err = run("prove", sealed, "--namespace", NS, "-o", out,
                       *(["--with-content"] if with_content else []))
    assert code == 0, err
    code, report = verify_json(out, keypair[1])
    assert code == 0
    [proven] = report["namespaces"]
    assert proven["namespace"] == NS and proven["present"] is True
    assert sorted(proven["resources"]) == sorted(expected)
    assert len(proven["resources"]) == len(expected)
    proof = decode_proof(out.read_bytes())
    if with_content:
        assert proof.contents == expected
        assert sorted(report["contents_checked"]) == sorted(expected)
    else:
        assert proof.contents == {} and report["contents_checked"] == []
    # Size: about 2 log2 n hashes and the namespace's leaves plus at most two neighbours.
    [ns_proof] = proof.namespaces
    n = report["tree_size"]
    assert len(ns_proof.proof) <= 2 * math.ceil(math.log2(n)) + 2
    assert len(expected) <= len(ns_proof.records) <= len(expected) + 2
    code, text, _ = run("verify-proof", out, "--trust", keypair[1])
    assert code == 0 and f"namespace {NS}: complete, {len(expected)} entries" in text


@pytest.mark.parametrize("namespace", ["aaa-before", "n-between", "zzz-after"])
@pytest.mark.parametrize("with_content", [False, True], ids=["bare", "with-content"])
def test_prove_an_absent_namespace(sealed: Path, keypair, tmp_path: Path, namespace: str,
                                   with_content: bool) -> None:
    assert namespace_entries(tarball(sealed), namespace) == {}
    out = tmp_path / "absent.proof"
    code, _, err = run("prove", sealed, "--namespace", namespace, "-o", out,
                       *(["--with-content"] if with_content else []))
    assert code == 0, err
    code, report = verify_json(out, keypair[1])
    assert code == 0
    assert report["namespaces"] == [{"namespace": namespace, "present": False, "resources": []}]
    proof = decode_proof(out.read_bytes())
    assert proof.contents == {}
    [ns_proof] = proof.namespaces
    assert 1 <= len(ns_proof.records) <= 2
    assert len(ns_proof.proof) <= 2 * math.ceil(math.log2(report["tree_size"])) + 2
    # The same file is not a proof that the existing namespace is absent, nor complete.
    forged = ProofFile(proof.checkpoint, proof.signature, [],
                       [NamespaceProof(NS, ns_proof.begin, ns_proof.records, ns_proof.proof)])
    out.write_bytes(encode_proof(forged))
    assert verify_json(out, keypair[1])[0] == 1


def test_verify_proof_exit_codes(sealed: Path, keypair, other_keypair, tmp_path: Path) -> None:
    out = tmp_path / "ns.proof"
    assert run("prove", sealed, "--namespace", NS, "--with-content", "-o", out)[0] == 0
    good = decode_proof(out.read_bytes())
    a_path, a_data = min(good.contents.items())
    held = tmp_path / "held.json"

    assert verify_json(out, keypair[1])[0] == 0
    held.write_bytes(a_data)
    code, report = verify_json(out, keypair[1], "--content", held)
    same_bytes = {p for p, d in good.contents.items() if d == a_data}  # versioned copies
    assert code == 0 and a_path in same_bytes
    assert [c for c in report["contents_checked"] if c.startswith(f"{held} = ")] in (
        [[f"{held} = {p}"] for p in same_bytes])

    # 1: not authentic
    code, report = verify_json(out, other_keypair[1])
    assert code == 1 and report["verified"] is False and report["exit_code"] == 1
    assert report["failures"] == [{"path": str(out), "problem": "not authentic",
                                   "detail": report["error"]}]
    assert "not signed by any trusted key" in report["error"]
    held.write_bytes(a_data + b"\n")
    assert verify_json(out, keypair[1], "--content", held)[0] == 1
    tampered = tmp_path / "tampered.proof"
    tampered.write_bytes(encode_proof(ProofFile(
        good.checkpoint, good.signature, good.resources, good.namespaces,
        {**good.contents, a_path: a_data.replace(b"monitoring", b"m0nitoring")})))
    code, _, err = run("verify-proof", tampered, "--trust", keypair[1])
    assert code == 1 and "not authentic" in err and a_path in err

    # 3: could not check
    garbage = tmp_path / "garbage.proof"
    for data in (b"", b"garbage", out.read_bytes()[:-1], out.read_bytes() + b"\x00"):
        garbage.write_bytes(data)
        code, report = verify_json(garbage, keypair[1])
        assert code == 3 and report["verified"] is False
    code, _, err = run("verify-proof", tmp_path / "missing.proof", "--trust", keypair[1])
    assert code == 3 and err.startswith("merkle-backup: error: ") and "Traceback" not in err
    missing = tmp_path / "missing.json"
    assert run("verify-proof", out, "--trust", keypair[1], "--content", missing)[0] == 3
    assert run("verify-proof", out, "--trust", tmp_path / "missing.pub")[0] == 3


@pytest.mark.parametrize("damage", ["modified", "missing"])
def test_prove_with_content_refuses_a_tampered_archive(sealed: Path, keypair, tmp_path: Path,
                                                       damage: str) -> None:
    victim = {}

    def change(entries):
        name = first(entries, f"resources/deployments.apps/namespaces/{NS}/")
        victim["path"] = name
        if damage == "missing":
            return [(n, d) for n, d in entries if n != name]
        return [(n, add_sidecar(d) if n == name else d) for n, d in entries]

    rewrite(tarball(sealed), change)
    outdir = tmp_path / "out"
    outdir.mkdir()
    for args in (["--namespace", NS], ["--resource", victim["path"]]):
        code, _, err = run("prove", sealed, *args, "--with-content", "--trust", keypair[1],
                           "-o", outdir / "p.proof")
        assert code == 1 and victim["path"] in err and "refusing" in err
        assert list(outdir.iterdir()) == []
    # Without content the proof needs only the seal, and it still verifies.
    assert run("prove", sealed, "--namespace", NS, "-o", outdir / "p.proof")[0] == 0
    assert verify_json(outdir / "p.proof", keypair[1])[0] == 0


def test_a_proof_for_backup_a_is_never_b(tmp_path: Path, keypair) -> None:
    """demo-small and demo-v153 both hold namespace "production", with other bytes."""
    folders = {name: copy_backup(name, tmp_path / name) for name in ("demo-small", "demo-v153")}
    proofs = {}
    for name, folder in folders.items():
        seal(folder, keypair[0])
        proofs[name] = tmp_path / f"{name}.proof"
        code, _, err = run("prove", folder, "--namespace", "production", "--with-content",
                           "-o", proofs[name])
        assert code == 0, err
        code, report = verify_json(proofs[name], keypair[1])
        assert code == 0 and report["backup"] == name
        assert report["namespaces"][0]["present"] is True
    a, b = (decode_proof(proofs[n].read_bytes()) for n in ("demo-small", "demo-v153"))
    shared = "resources/namespaces/cluster/production.json"
    assert a.contents[shared] != b.contents[shared]
    # B's manifest is not A's content.
    held = tmp_path / "production.json"
    held.write_bytes(b.contents[shared])
    assert verify_json(proofs["demo-small"], keypair[1], "--content", held)[0] == 1
    # A's proof under B's signed checkpoint, and the other way round; A's content in B's proof.
    for x, y in ((a, b), (b, a)):
        mixed = tmp_path / "mixed.proof"
        proofs_x = ProofFile(y.checkpoint, y.signature, x.resources, x.namespaces)
        mixed.write_bytes(encode_proof(proofs_x))
        assert verify_json(mixed, keypair[1])[0] == 1
        contents_x = ProofFile(y.checkpoint, y.signature, y.resources, y.namespaces, x.contents)
        mixed.write_bytes(encode_proof(contents_x))
        assert verify_json(mixed, keypair[1])[0] == 1


def test_prove_namespace_of_the_format_md_example(tmp_path: Path, keypair) -> None:
    """The backup of docs/format.md §10: "shop" starts at leaf 1 (after metadata/version), so
    the prover sends begin = 0 and the verifier refuses the honest proof it wrote."""
    bare = tmp_path / "shop-nightly.tar.gz"
    write_entries(bare, [
        ("metadata/version", b"1.1.0\n"),
        ("resources/namespaces/cluster/shop.json", b'{"kind":"Namespace","metadata":{"name":"shop"}}'),
        ("resources/configmaps/namespaces/shop/app.json",
         b'{"kind":"ConfigMap","metadata":{"name":"app","namespace":"shop"}}'),
    ])
    seal(bare, keypair[0])
    out = tmp_path / "shop.proof"
    assert run("prove", bare, "--namespace", "shop", "-o", out)[0] == 0
    code, report = verify_json(out, keypair[1])
    assert code == 0, report
    assert len(report["namespaces"][0]["resources"]) == 2


def test_prove_empty_namespace_is_a_usage_error(sealed: Path, tmp_path: Path) -> None:
    code, _, err = run("prove", sealed, "--namespace", "", "-o", tmp_path / "p.proof")
    assert code == 2 and err.startswith("merkle-backup: error: ")
    assert not (tmp_path / "p.proof").exists()
