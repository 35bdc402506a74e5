"""Hypothesis properties of seal and verify over random Velero-layout archives.

* every leaf of a seal has an inclusion proof that verifies against the signed root;
* tar order never changes the root;
* a single-bit change anywhere in the tarball is never reported as verified unless an independent
  reader (Python's tarfile) sees exactly the same entries; a change of any entry's bytes or name
  always fails;
* a single-bit change anywhere in the seal never verifies.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merkle_backup.builder import seal_backup
from merkle_backup.core import tree
from merkle_backup.core.checkpoint import parse_checkpoint
from merkle_backup.errors import Error
from merkle_backup.formats.seal import decode_seal
from merkle_backup.signing import public_key_of
from merkle_backup.storage.local import LocalBackup
from merkle_backup.verifier import verify_backup
from tests.tamper import write_entries

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TRUSTED = [public_key_of(KEY, "test key")]
WHEN = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)

_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).filter(
    lambda s: s not in ("cluster", "namespaces")
)
_path = st.one_of(
    st.builds(lambda gr, ns, n: f"resources/{gr}/namespaces/{ns}/{n}.json", _segment, _segment, _segment),
    st.builds(lambda gr, v, ns, n: f"resources/{gr}/{v}-preferredversion/namespaces/{ns}/{n}.json",
              _segment, _segment, _segment, _segment),
    st.builds(lambda gr, n: f"resources/{gr}/cluster/{n}.json", _segment, _segment),
    st.builds(lambda n: f"resources/namespaces/cluster/{n}.json", _segment),
)
archives = st.dictionaries(_path, st.binary(max_size=300), min_size=1, max_size=25).map(
    lambda d: [("metadata/version", b"1.1.0\n")] + sorted(d.items())
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seal(entries: list[tuple[str, bytes]], folder: Path) -> tuple[LocalBackup, bytes]:
    tarball = folder / "b.tar.gz"
    write_entries(tarball, entries)
    source = LocalBackup(tarball)
    # Random bytes are not manifests: these properties are about bytes, not about JSON.
    result = seal_backup(source, KEY, created_at=WHEN, replace=True, force=True, check_manifests=False)
    return source, source.seal_path.read_bytes()


def _entries_of(data: bytes) -> list[tuple[str, bytes]] | None:
    """An independent reader's view, or None when it cannot read the archive at all."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            return sorted((m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile())
    except Exception:
        return None


@SETTINGS
@given(archives)
def test_every_leaf_has_a_verifying_inclusion_proof(entries) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _, seal_bytes = _seal(entries, Path(tmp))
    seal = decode_seal(seal_bytes)
    hashes = [tree.BLAKE3.leaf_hash(leaf) for leaf in seal.leaves]
    merkle = tree.MerkleTree(hashes)
    assert len(hashes) == len(entries)
    for index, leaf_hash in enumerate(hashes):
        tree.verify_inclusion(index=index, size=len(hashes), leaf_hash=leaf_hash,
                              proof=merkle.inclusion_proof(index), root=merkle.root)


@SETTINGS
@given(archives, st.randoms(use_true_random=False))
def test_tar_order_never_changes_the_root(entries, rnd) -> None:
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    with tempfile.TemporaryDirectory() as tmp:
        _, first = _seal(entries, Path(tmp))
        _, second = _seal(shuffled, Path(tmp))
    a, b = (parse_checkpoint(decode_seal(s).checkpoint) for s in (first, second))
    # The whole-file digest changes with the order; the tree must not.
    assert (a.root, a.tree_size) == (b.root, b.tree_size)
    assert decode_seal(first).leaves == decode_seal(second).leaves


@SETTINGS
@given(archives, st.data())
def test_single_bit_change_in_tarball_never_verifies_a_different_archive(entries, data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source, seal_bytes = _seal(entries, Path(tmp))
        original = source.tarball.read_bytes()
        position = data.draw(st.integers(0, len(original) * 8 - 1))
        mutated = bytearray(original)
        mutated[position // 8] ^= 1 << (position % 8)
        source.tarball.write_bytes(bytes(mutated))
        try:
            verified = verify_backup(source, TRUSTED, seal_bytes=seal_bytes).verified
        except Error:
            verified = False
    if verified:
        # Only a change that leaves every entry's name and bytes intact (gzip mtime, a tar
        # mode or mtime field) may verify; then an independent reader sees the same entries.
        assert _entries_of(bytes(mutated)) == sorted(entries)


@SETTINGS
@given(archives, st.data())
def test_changing_any_entry_name_or_byte_fails(entries, data) -> None:
    index = data.draw(st.integers(0, len(entries) - 1))
    name, content = entries[index]
    if data.draw(st.booleans()) and content:
        bit = data.draw(st.integers(0, len(content) * 8 - 1))
        changed = bytearray(content)
        changed[bit // 8] ^= 1 << (bit % 8)
        tampered = list(entries)
        tampered[index] = (name, bytes(changed))
    else:
        tampered = list(entries)
        tampered[index] = (name[:-5] + "x.json" if name.endswith(".json") else name + "x", content)
    with tempfile.TemporaryDirectory() as tmp:
        source, seal_bytes = _seal(entries, Path(tmp))
        write_entries(source.tarball, tampered)
        report = verify_backup(source, TRUSTED, seal_bytes=seal_bytes)
    assert not report.verified
    assert any(f.path in (name, tampered[index][0]) for f in report.failures)


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_single_bit_change_in_seal_never_verifies(data) -> None:
    entries = [("metadata/version", b"1.1.0\n"), ("resources/pods/namespaces/a/p.json", b"{}")]
    with tempfile.TemporaryDirectory() as tmp:
        source, seal_bytes = _seal(entries, Path(tmp))
        position = data.draw(st.integers(0, len(seal_bytes) * 8 - 1))
        mutated = bytearray(seal_bytes)
        mutated[position // 8] ^= 1 << (position % 8)
        try:
            verified = verify_backup(source, TRUSTED, seal_bytes=bytes(mutated)).verified
        except Error:
            verified = False
    assert not verified
