"""T8-T9 of docs/threat-model.md: the seal itself edited: its leaf table, its checkpoint, or
any byte of it."""

from __future__ import annotations

import collections
from datetime import datetime, timezone
from pathlib import Path

import blake3
import pytest

from merkle_backup.builder import seal_backup
from merkle_backup.core import tree
from merkle_backup.core.checkpoint import parse_checkpoint
from merkle_backup.core.keys import key_for_tar_path
from merkle_backup.core.leaf import LeafRecord, content_digest, decode_record
from merkle_backup.errors import Error
from merkle_backup.formats.seal import SealFile, decode_seal, encode_seal
from merkle_backup.signing import load_private_key, load_public_key
from merkle_backup.storage.local import LocalBackup
from merkle_backup.verifier import verify_backup
from tests.attacks import gotar
from tests.attacks.helpers import (
    EXIT_CANNOT_CHECK,
    EXIT_NOT_AUTHENTIC,
    EXIT_OK,
    expect_refusal,
    run,
    seal_path,
    tarball,
)
from tests.conftest import copy_backup
from tests.tamper import add_sidecar

DEPLOYMENT = "resources/deployments.apps/namespaces/monitoring-000/hazelcast-638265.json"
BINDING = "resources/clusterrolebindings.rbac.authorization.k8s.io/cluster/backdoor.json"


def _rewrite_table(sealed: Path, change: str) -> None:
    """The attacker's edit: the tarball changed, and the seal's leaf table changed to match it
    (a record rewritten, removed or added), the checkpoint and its signature kept."""
    members = gotar.load(tarball(sealed))
    seal = decode_seal(seal_path(sealed).read_bytes())
    records = [decode_record(leaf) for leaf in seal.leaves]
    if change == "record-rewritten":
        i = gotar.index_of(members, DEPLOYMENT)
        members[i] = members[i].with_data(add_sidecar(members[i].data))
        j = next(k for k, r in enumerate(records) if r.path == DEPLOYMENT)
        data = members[i].data
        records[j] = LeafRecord(records[j].key, DEPLOYMENT, len(data), content_digest(data))
    elif change == "leaf-removed":
        members = [m for m in members if m.name != DEPLOYMENT]
        records = [r for r in records if r.path != DEPLOYMENT]
    else:  # leaf-added
        data = b'{"kind":"ClusterRoleBinding","metadata":{"name":"backdoor"}}'
        members.append(gotar.go_member(BINDING, data))
        key = key_for_tar_path(BINDING)
        records.append(LeafRecord(key, BINDING, len(data), content_digest(data)))
        records.sort(key=lambda r: r.key)
    gotar.store(tarball(sealed), members)
    leaves = [r.encode() for r in records]
    seal_path(sealed).write_bytes(encode_seal(SealFile(seal.checkpoint, seal.signature, leaves)))


@pytest.mark.parametrize("change", ["record-rewritten", "leaf-removed", "leaf-added"])
def test_t8_leaf_table_edited_to_match_a_tampered_tarball(sealed: Path, keypair,
                                                          change: str) -> None:
    """T8: a leaf record rewritten to the tampered Deployment's size and digest, or a leaf
    removed or added with the entry: the signed root no longer matches the table."""
    _rewrite_table(sealed, change)
    says = ("not authentic", "does not hash to its signed root") if change == "record-rewritten" \
        else ("not authentic", "leaves, its checkpoint says 330")
    expect_refusal(EXIT_NOT_AUTHENTIC, "verify", sealed, "--trust", keypair[1], says=says)


def test_t9_checkpoint_edited_to_the_attackers_root(sealed: Path, keypair) -> None:
    """T9: the leaf table rewritten as in T8, and the checkpoint's root, tree size and archive
    digest rewritten to match: the signature no longer verifies."""
    _rewrite_table(sealed, "leaf-added")
    seal = decode_seal(seal_path(sealed).read_bytes())
    old = parse_checkpoint(seal.checkpoint)
    data = tarball(sealed).read_bytes()
    root = tree.root([tree.BLAKE3.leaf_hash(leaf) for leaf in seal.leaves])
    text = seal.checkpoint.decode()
    for label, before, after in (
        ("tree-size", str(old.tree_size), str(len(seal.leaves))),
        ("root", old.root.hex(), root.hex()),
        ("archive-blake3", old.archive_digest.hex(), blake3.blake3(data).hexdigest()),
        ("archive-size", str(old.archive_size), str(len(data))),
    ):
        text = text.replace(f"\n{label} {before}\n", f"\n{label} {after}\n")
    forged = text.encode()
    parse_checkpoint(forged)  # a well-formed checkpoint: only the signature is wrong
    seal_path(sealed).write_bytes(encode_seal(SealFile(forged, seal.signature, seal.leaves)))
    expect_refusal(EXIT_NOT_AUTHENTIC, "verify", sealed, "--trust", keypair[1],
                   says=("not authentic", "not signed by any trusted key"))


@pytest.fixture
def small_sealed(tmp_path: Path, keypair) -> tuple[Path, bytes]:
    """A small Go-written backup: demo-small's first 6 members (Go's bytes) and its
    velero-backup.json, sealed. The seal is about 1.5 KB: every byte can be flipped."""
    folder = copy_backup("demo-small", tmp_path)
    for p in folder.iterdir():
        if p.name not in ("velero-backup.json", "demo-small.tar.gz"):
            p.unlink()
    gotar.store(tarball(folder), gotar.load(tarball(folder))[:6])
    result = seal_backup(LocalBackup(folder), load_private_key(keypair[0]),
                         created_at=datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc))
    return folder, Path(result.seal_path).read_bytes()


def test_t9_seal_corrupted_at_every_byte(small_sealed: tuple[Path, bytes], keypair) -> None:
    """T9: each byte of the seal with one bit flipped (bit = position mod 8): never verified,
    and only deliberate merkle_backup errors (anything else fails this test with a traceback)."""
    folder, seal_bytes = small_sealed
    source = LocalBackup(folder)
    trusted = [load_public_key(keypair[1])]
    assert verify_backup(source, trusted, seal_bytes=seal_bytes).verified
    outcomes: collections.Counter[str] = collections.Counter()
    for position in range(len(seal_bytes)):
        corrupted = bytearray(seal_bytes)
        corrupted[position] ^= 1 << (position % 8)
        try:
            report = verify_backup(source, trusted, seal_bytes=bytes(corrupted))
        except Error as e:
            assert e.exit_code in (EXIT_NOT_AUTHENTIC, EXIT_CANNOT_CHECK)
            outcomes[type(e).__name__] += 1
            continue
        assert not report.verified, f"a flip at byte {position} verified"
        outcomes["failures"] += 1
    assert sum(outcomes.values()) == len(seal_bytes) > 1000
    # Each layer of the chain catches some: the decoder, the signature, the leaf table.
    assert {"FormatError", "SignatureError", "NotAuthentic"} <= set(outcomes), outcomes


def test_t9_seal_corruption_through_the_cli(small_sealed: tuple[Path, bytes], keypair) -> None:
    """T9 through the CLI, on 48 positions spread over the seal and every byte of the
    checkpoint's first line: exit 1 or 3, one line on stderr, never a traceback."""
    folder, seal_bytes = small_sealed
    path = seal_path(folder)
    start = seal_bytes.index(b"merkle-backup/checkpoint/v2")
    positions = sorted({*range(0, len(seal_bytes), max(1, len(seal_bytes) // 48)),
                        *range(start, start + 28)})
    assert run("verify", folder, "--trust", keypair[1]).code == EXIT_OK
    for position in positions:
        corrupted = bytearray(seal_bytes)
        corrupted[position] ^= 0xFF
        path.write_bytes(bytes(corrupted))
        outcome = run("verify", folder, "--trust", keypair[1])
        assert outcome.code in (EXIT_NOT_AUTHENTIC, EXIT_CANNOT_CHECK), position
