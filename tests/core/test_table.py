"""core/table.py (the bulk leaf table) against the reference: keys.py, leaf.py, consistency.py."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from merkle_backup.core import table
from merkle_backup.core.keys import PathError, key_for_bucket_object, key_for_tar_path
from merkle_backup.core.leaf import LeafRecord, decode_record
from tests.conftest import short_id


def sortable_tar_leaf(path: str, size: int, digest: bytes) -> bytes:
    """The sortable leaf of a tar entry (the sealer's fast path, tar_leaf_and_key)."""
    return table.tar_leaf_and_key(path, size, digest)[0]


def check_copies(records: list[LeafRecord]) -> list[tuple[str, str]]:
    """The reference for table.CopyChecker, over decoded records in key order: every
    -preferredversion copy must equal (size and digest) the classic copy of the same item."""
    found = []
    classic = {}
    for record in records:
        k = record.key
        if k.scope not in ("cluster", "namespaces"):
            continue
        ident = (k.namespace, k.resource, k.scope, k.name)
        if k.version == "":
            classic = {ident: record}
        elif k.version.endswith("-preferredversion"):
            twin = classic.get(ident)
            if twin is None:
                found.append((record.path, "preferred-version copy has no classic copy"))
            elif (twin.size, twin.digest) != (record.size, record.digest):
                found.append((record.path, f"differs from its classic copy {twin.path}"))
    return found


# Segments mixing what the fast path takes and what it hands to the reference.
SEGMENT = st.one_of(
    st.sampled_from(["pods", "deployments.apps", "v1", "v1-preferredversion", "cluster",
                     "namespaces", "shop", "a", "x.json", ".json", "system:node", "a_b-c"]),
    st.text(alphabet="abcAZ09._:-/é\\", min_size=1, max_size=12),
    st.text(alphabet="a", min_size=240, max_size=300),
)
PATH = st.one_of(
    st.lists(SEGMENT, min_size=1, max_size=6).map(lambda s: "resources/" + "/".join(s) + ".json"),
    st.lists(SEGMENT, min_size=1, max_size=7).map("/".join),
    st.just("metadata/version"),
)
EXAMPLES = [
    "metadata/version",
    "resources/pods/namespaces/shop/api-0.json",
    "resources/pods/v1-preferredversion/namespaces/shop/api-0.json",
    "resources/namespaces/cluster/shop.json",
    "resources/namespaces/v1-preferredversion/cluster/shop.json",
    "resources/clusterroles.rbac.authorization.k8s.io/cluster/system:node.json",
    "resources/a/cluster/cluster/x.json",
    "resources/a/namespaces/cluster/x.json",
    "resources/a/v1/cluster.json",
    "resources/a/.hidden/cluster/x.json",
    "resources/a/cluster/.json",
    "resources/a/cluster/x.json.json",
    "resources/crds/cluster/" + "x" * 300 + ".json",
    "resources/pods/namespaces/café/a.json",
]


def _reference(path: str, size: int, digest: bytes) -> LeafRecord | None:
    try:
        return LeafRecord(key_for_tar_path(path), path, size, digest)
    except PathError:
        return None


def _check_path(path: str) -> None:
    digest = os.urandom(32)
    reference = _reference(path, 77, digest)
    if reference is None:
        with pytest.raises(PathError):
            sortable_tar_leaf(path, 77, digest)
        return
    leaf = sortable_tar_leaf(path, 77, digest)
    k = (leaf[-2] << 8) | leaf[-1]
    assert leaf[:k] == reference.key.sort_bytes() + b"\0"
    # The whole record, or (a path in Velero's usual shape) only its tail, rebuilt on drain.
    assert leaf[k:-2] in (reference.encode(), reference.encode()[-table.TAIL:])
    assert table.record_of(leaf) == reference.encode()
    assert list(table.drain_sorted([leaf])) == [reference.encode()]
    checked = table.check_record(reference.encode())
    assert checked.sort_key == reference.key.sort_bytes()
    assert table.record_of(checked.item) == reference.encode()
    assert checked.item == leaf  # the sealer's and the verifier's sortable leaves are one
    assert (checked.namespace, checked.scope, checked.path) == (
        reference.key.namespace, reference.key.scope, path)
    assert table.path_of(reference.encode()) == path


@pytest.mark.parametrize("path", EXAMPLES, ids=short_id)
def test_examples_match_the_reference(path: str) -> None:
    _check_path(path)


@settings(max_examples=400, deadline=None)
@given(PATH)
def test_paths_match_the_reference(path: str) -> None:
    _check_path(path)


@settings(max_examples=300, deadline=None)
@given(PATH, st.binary(min_size=0, max_size=8), st.integers(0, 400))
def test_check_record_refuses_what_decode_record_refuses(path: str, junk: bytes, at: int) -> None:
    reference = _reference(path, 5, bytes(32))
    if reference is None:
        return
    record = reference.encode()
    at %= len(record) + 1
    mutated = record[:at] + junk + record[at + len(junk) // 2:]
    try:
        expected = decode_record(mutated)
    except ValueError:
        with pytest.raises(ValueError):
            table.check_record(mutated)
        return
    checked = table.check_record(mutated)
    assert checked.sort_key == expected.key.sort_bytes() and checked.path == expected.path


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(PATH, st.integers(0, 2)), max_size=30))
def test_sort_order_duplicates_and_copies_match_the_reference(entries) -> None:
    records = {}
    for path, content in entries:
        record = _reference(path, content, bytes([content]) * 32)
        if record is not None:
            records.setdefault(path, record)
    bucket = LeafRecord(key_for_bucket_object("velero-backup.json"), "velero-backup.json", 1,
                        bytes(32))
    everything = [*records.values(), bucket]
    # Tar entries as the sealer builds them (compact where the path allows) and as the reference.
    leaves = [sortable_tar_leaf(r.path, r.size, r.digest) if i % 2 and r is not bucket
              else table.sortable_leaf(r) for i, r in enumerate(reversed(everything))]
    hash_input: list[bytes] = []
    copies: list[tuple[str, str]] = []
    table.sort_leaves(leaves, hash_input, copies)
    ordered = sorted(everything, key=lambda r: r.key)
    assert leaves == [r.encode() for r in ordered]
    assert hash_input == [b"\0" + r.encode() for r in ordered]
    assert copies == check_copies(ordered)
    if ordered:
        again = ordered[0]
        twice = table.sortable_leaf(again) if again is bucket else sortable_tar_leaf(
            again.path, again.size, again.digest)
        with pytest.raises(table.DuplicateKey) as e:
            table.sort_leaves([table.sortable_leaf(r) for r in everything] + [twice])
        assert e.value.path == again.path


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300))
def test_streaming_root_is_the_rfc_root(n: int) -> None:
    from merkle_backup.core import tree

    hashes = [os.urandom(32) for _ in range(n)]
    builder = tree.RootBuilder()
    for h in hashes:
        builder.add(h)
    assert builder.size == n
    assert builder.root() == tree.root(hashes)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0, 1, 40, 255, 256, 300, 65535, 65536]), max_size=12))
def test_seal_head_and_frames_are_encode_seal(lengths: list[int]) -> None:
    from merkle_backup.formats.seal import SealFile, encode_seal, encode_seal_head, leaf_frame

    leaves = [bytes([n % 251]) * n for n in lengths]
    seal = SealFile(checkpoint=b"c" * 300, signature=b"s" * 64, leaves=leaves)
    streamed = encode_seal_head(seal.checkpoint, seal.signature, len(leaves)) + b"".join(
        leaf_frame(len(leaf)) + leaf for leaf in leaves)
    assert streamed == encode_seal(seal)
