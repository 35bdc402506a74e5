"""T18-T19 of docs/threat-model.md: proof files (docs/format.md §11) handed to someone who holds
only the trusted public key: a proof of another backup, and a tampered proof."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from merkle_backup.core.leaf import LeafRecord, content_digest, decode_record
from merkle_backup.errors import Error
from merkle_backup.formats.proof import ProofFile, decode_proof, encode_proof
from merkle_backup.formats.seal import decode_seal
from merkle_backup.proofs import verify_proof
from merkle_backup.signing import load_public_key
from tests.attacks.helpers import (
    EXIT_CANNOT_CHECK,
    EXIT_NOT_AUTHENTIC,
    EXIT_OK,
    NS_A,
    expect_refusal,
    run,
    seal,
    seal_path,
)
from tests.conftest import copy_backup
from tests.tamper import add_sidecar

SHARED = "resources/namespaces/cluster/production.json"  # in both fixtures, other bytes
DEPLOYMENT = f"resources/deployments.apps/namespaces/{NS_A}/hazelcast-638265.json"


def _prove(backup: Path, out: Path, *args: str) -> ProofFile:
    outcome = run("prove", backup, *args, "--with-content", "-o", out)
    assert outcome.code == EXIT_OK, outcome.err
    return decode_proof(out.read_bytes())


def test_t18_proof_file_for_another_backup(sealed: Path, tmp_path: Path, keypair) -> None:
    """T18: the user asked for a proof of demo-small's "production" namespace and gets one of
    demo-v153 (sealed with the same key). As a whole it proves demo-v153, and says so; with
    --backup demo-small (or --uid) verify-proof refuses it. Spliced under
    demo-small's signed checkpoint it never verifies, and demo-small's bytes never pass as
    its content."""
    other = copy_backup("demo-v153", tmp_path / "other")
    seal(other, keypair[0])
    what = ("--namespace", "production", "--resource", SHARED)
    ours = _prove(sealed, tmp_path / "ours.proof", *what)
    theirs = _prove(other, tmp_path / "theirs.proof", *what)

    given = tmp_path / "theirs.proof"
    outcome = run("verify-proof", given, "--trust", keypair[1], "--json")
    assert outcome.code == EXIT_OK and outcome.json()["backup"] == "demo-v153"
    human = run("verify-proof", given, "--trust", keypair[1])
    assert human.out.startswith("VERIFIED: proof for backup demo-v153 (uid ")
    expect_refusal(EXIT_NOT_AUTHENTIC, "verify-proof", given, "--trust", keypair[1],
                   "--backup", "demo-small", says=("not 'demo-small'",))
    expect_refusal(EXIT_NOT_AUTHENTIC, "verify-proof", given, "--trust", keypair[1],
                   "--uid", "2e242fc8-0e85-4f16-bc6e-9d5f38be1ce3", says=("uid",))
    assert run("verify-proof", tmp_path / "ours.proof", "--trust", keypair[1],
               "--backup", "demo-small", "--uid", "2e242fc8-0e85-4f16-bc6e-9d5f38be1ce3").code == EXIT_OK
    held = tmp_path / "production.json"
    held.write_bytes(ours.contents[SHARED])
    expect_refusal(EXIT_NOT_AUTHENTIC, "verify-proof", given, "--trust", keypair[1],
                   "--content", held, says=("content matches none of the proven resources",))

    spliced = tmp_path / "spliced.proof"
    for forged in (
        ProofFile(ours.checkpoint, ours.signature, theirs.resources, [], {}),
        ProofFile(ours.checkpoint, ours.signature, [], theirs.namespaces, {}),
        ProofFile(ours.checkpoint, ours.signature, ours.resources, ours.namespaces,
                  theirs.contents),
        ProofFile(theirs.checkpoint, theirs.signature, ours.resources, ours.namespaces, {}),
    ):
        spliced.write_bytes(encode_proof(forged))
        expect_refusal(EXIT_NOT_AUTHENTIC, "verify-proof", spliced, "--trust", keypair[1],
                       says=("not authentic",))


@pytest.fixture
def resource_proof(sealed: Path, tmp_path: Path) -> tuple[Path, ProofFile, list[bytes]]:
    """A proof of one Deployment (with its manifest) and of an absent namespace, and the
    sealed leaf table it was cut from."""
    out = tmp_path / "deployment.proof"
    proof = _prove(sealed, out, "--resource", DEPLOYMENT, "--namespace", "absent-namespace")
    return out, proof, decode_seal(seal_path(sealed).read_bytes()).leaves


def test_t19_tampered_proof_semantics(resource_proof, tmp_path: Path, keypair) -> None:
    """T19: the changes an attacker would make on purpose: the embedded manifest given a
    sidecar, the leaf record rewritten to match it, a proof hash or the index changed, the
    absent-namespace proof bent to another name. Each exits 1, none 0."""
    out, good, _ = resource_proof
    r = good.resources[0]
    evil = add_sidecar(good.contents[DEPLOYMENT])
    record = decode_record(r.record)
    forged_record = LeafRecord(record.key, record.path, len(evil), content_digest(evil)).encode()
    ns = good.namespaces[0]
    changes = {
        "content": ProofFile(good.checkpoint, good.signature, good.resources, good.namespaces,
                             {DEPLOYMENT: evil}),
        "record": ProofFile(good.checkpoint, good.signature,
                            [type(r)(r.index, forged_record, r.proof)], [], {DEPLOYMENT: evil}),
        "hash": ProofFile(good.checkpoint, good.signature,
                          [type(r)(r.index, r.record, [bytes(32), *r.proof[1:]])], [], {}),
        "index": ProofFile(good.checkpoint, good.signature,
                           [type(r)(r.index + 1, r.record, r.proof)], [], {}),
        "namespace": ProofFile(good.checkpoint, good.signature, [],
                               [type(ns)(NS_A, ns.begin, ns.records, ns.proof)], {}),
    }
    for forged in changes.values():
        out.write_bytes(encode_proof(forged))
        expect_refusal(EXIT_NOT_AUTHENTIC, "verify-proof", out, "--trust", keypair[1],
                       says=("not authentic",))


def test_t19_proof_corrupted_at_every_byte(resource_proof, keypair) -> None:
    """T19: one bit flipped at every byte of a resource proof with its embedded manifest:
    only merkle_backup errors, and a flipped proof that still verifies claims only what the
    sealed table holds (a flip in the absent namespace's name can make another true absence
    claim); through the CLI on a sample, exit 1 or 3 with one line on stderr."""
    out, good, leaves = resource_proof
    records = [decode_record(leaf) for leaf in leaves]
    data = out.read_bytes()
    trusted = [load_public_key(keypair[1])]
    outcomes: collections.Counter[str] = collections.Counter()
    for position in range(len(data)):
        corrupted = bytearray(data)
        corrupted[position] ^= 1 << (position % 8)
        try:
            report = verify_proof(bytes(corrupted), trusted)
        except Error as e:
            outcomes[type(e).__name__] += 1
            continue
        decoded = decode_proof(bytes(corrupted))
        for item in decoded.resources:
            assert item.record == leaves[item.index], position
        for proven in report.namespaces:
            assert proven.resources == [x.path for x in records
                                        if x.key.namespace == proven.namespace], position
        assert decoded.contents == good.contents, position
        outcomes["verified, claims true"] += 1
    assert outcomes["verified, claims true"] < 20, outcomes
    for position in range(0, len(data), max(1, len(data) // 24)):
        corrupted = bytearray(data)
        corrupted[position] ^= 0xFF
        out.write_bytes(bytes(corrupted))
        code = run("verify-proof", out, "--trust", keypair[1]).code
        assert code in (EXIT_NOT_AUTHENTIC, EXIT_CANNOT_CHECK), position
