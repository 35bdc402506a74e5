"""Namespace and resource proofs over sealed leaf tables (core/proofs.py, docs/format.md §11).

1. The range proofs under them: ``range_inclusion_proofs_inorder`` of tests/vectors/rfc6962.json
   (SHA-256), positive and derived negatives.
2. Hypothesis over random sorted leaf tables of several namespaces: every namespace proof (and
   absence proof) verifies and yields exactly the namespace's records; the honest range is the
   only one any namespace accepts; every tampering raises ProofError and nothing else.
3. celestiaorg/nmt's bugs as named regressions (#86, #110, #317 / GHSA-r9fq-g486-v8pg, #141,
   #161; tests/test_proofs.py shows #86 and #161 again through verify_proof and its report).

Regression (EDGE_BUG): "begin > 0" cannot tell "the namespace starts at leaf 0" from "it starts at
leaf 1, so its left neighbour is leaf 0" (the prover sends ``begin = max(first - 1, 0)`` = 0 in
both cases); likewise on the right for ``end == size``. Honest proofs of such namespaces were
refused; now a neighbour is recognised by its namespace, and §11.3 step 3 says so.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from merkle_backup.core import tree
from merkle_backup.core.keys import key_for_bucket_object, key_for_tar_path
from merkle_backup.core.leaf import LeafRecord, content_digest
from merkle_backup.core.proofs import (
    NamespaceRange,
    check_namespace_records,
    namespace_range,
    verify_namespace_proof,
)
from merkle_backup.errors import FormatError, ProofError

from ..conftest import VECTORS

SHA256 = tree.TreeHasher("sha256", lambda b: hashlib.sha256(b).digest())
RFC = json.loads((VECTORS / "rfc6962.json").read_text())
RANGE_VECTORS = RFC["range_inclusion_proofs_inorder"]


_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- 1. Range proof vectors (SHA-256) -------------------------------------------------------------

def _h(x: str) -> bytes:
    return bytes.fromhex(x)


def _vector(v: dict[str, Any]) -> tuple[int, int, int, list[bytes], list[bytes], bytes]:
    return (v["tree_size"], v["begin"], v["end"], [_h(x) for x in v["leaf_hashes"]],
            [_h(x) for x in v["proof"]], _h(v["root"]))


def _rfc_leaf_hashes(size: int) -> list[bytes]:
    return [SHA256.leaf_hash(_h(x)) for x in RFC["leaves_hex"][:size]]


def _vector_id(v: dict[str, Any]) -> str:
    return f"{v['begin']}-{v['end']}-of-{v['tree_size']}"


@pytest.mark.parametrize("v", RANGE_VECTORS, ids=_vector_id)
def test_range_vector_verifies_and_is_reproduced(v: dict[str, Any]) -> None:
    size, begin, end, leaves, proof, root = _vector(v)
    assert leaves == _rfc_leaf_hashes(size)[begin:end]  # the vector's leaves are RFC 6962's
    assert tree.root_from_range_proof(
        begin=begin, end=end, size=size, leaf_hashes=leaves, proof=proof, hasher=SHA256
    ) == root
    tree.verify_range(begin=begin, end=end, size=size, leaf_hashes=leaves, proof=proof,
                      root=root, hasher=SHA256)
    assert tree.MerkleTree(_rfc_leaf_hashes(size), hasher=SHA256).range_proof(begin, end) == proof
    assert len(proof) <= 2 * math.ceil(math.log2(size))


def test_range_proof_does_not_bind_the_size() -> None:
    """As with RFC 9162 inclusion proofs, an outside subtree is one opaque hash: the proof of
    [2, 5) in 8 leaves also leads to the same root for "size 7", taking MTH(D[6:8]) for leaf 6.
    Only the pair (size, root) from one signed checkpoint means anything (docs/format.md §11.5)."""
    v = next(v for v in RANGE_VECTORS if (v["tree_size"], v["begin"], v["end"]) == (8, 2, 5))
    size, begin, end, leaves, proof, root = _vector(v)
    assert _same_range_shape(begin, end, size, 7)
    assert tree.root_from_range_proof(begin=begin, end=end, size=7, leaf_hashes=leaves,
                                      proof=proof, hasher=SHA256) == root
    with pytest.raises(ProofError):
        tree.verify_range(begin=begin, end=end, size=9, leaf_hashes=leaves, proof=proof,
                          root=root, hasher=SHA256)


def _flip(b: bytes, i: int = 0) -> bytes:
    return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1:]


def _list_mutations(items: list[bytes], filler: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """Drop, add, duplicate, swap and alter each element of a list of hashes (or records)."""
    for i in range(len(items)):
        yield f"drop[{i}]", items[:i] + items[i + 1:]
        yield f"dup[{i}]", items[:i + 1] + items[i:]
        yield f"alter-first-byte[{i}]", items[:i] + [_flip(items[i])] + items[i + 1:]
        yield f"alter-last-byte[{i}]", items[:i] + [_flip(items[i], -1)] + items[i + 1:]
        if i + 1 < len(items) and items[i] != items[i + 1]:
            yield f"swap[{i}]", items[:i] + [items[i + 1], items[i]] + items[i + 2:]
    for i in range(len(items) + 1):
        yield f"add[{i}]", items[:i] + [filler] + items[i:]
    if len(items) > 2 and items[::-1] != items:
        yield "reverse", items[::-1]


def _range_shape(begin: int, end: int, size: int) -> list[tuple[int, int]] | None:
    """The outside subtrees [lo, hi) a range proof of [begin, end) in ``size`` leaves holds."""
    if not 0 <= begin < end <= size:
        return None
    shape: list[tuple[int, int]] = []

    def walk(lo: int, hi: int) -> None:
        if hi <= begin or end <= lo:
            shape.append((lo, hi))
        elif not (begin <= lo and hi <= end):
            k = 1 << ((hi - lo - 1).bit_length() - 1)
            walk(lo, lo + k)
            walk(lo + k, hi)

    walk(0, size)
    return shape


def _same_range_shape(begin: int, end: int, size: int, other: int) -> bool:
    if other > 2**16:
        return False  # far longer proofs; not worth walking
    a, b = _range_shape(begin, end, size), _range_shape(begin, end, other)
    # The same number of outside subtrees, and the same nesting up to the last one's right edge.
    return a is not None and b is not None and [x[0] for x in a] == [x[0] for x in b]


def _range_negatives() -> Iterator[tuple[str, dict[str, Any]]]:
    for v in RANGE_VECTORS:
        size, begin, end, leaves, proof, root = _vector(v)
        base = {"begin": begin, "end": end, "size": size, "leaf_hashes": leaves, "proof": proof,
                "root": root}
        tag = f"{begin}-{end}-of-{size}"
        for label, changed in _list_mutations(proof, SHA256.leaf_hash(b"filler")):
            yield f"{tag}:proof-{label}", {**base, "proof": changed}
        for label, changed in _list_mutations(leaves, SHA256.leaf_hash(b"filler")):
            n = len(changed)
            # keep begin, and move end with the number of leaves (else it is a count error only)
            yield f"{tag}:leaves-{label}", {**base, "leaf_hashes": changed, "end": begin + n}
        for shift in (-2, -1, 1, 2):
            if 0 <= begin + shift and end + shift <= size:
                yield f"{tag}:shift{shift:+d}", {**base, "begin": begin + shift, "end": end + shift}
            yield f"{tag}:begin{shift:+d}", {**base, "begin": begin + shift}
        for new_size in {size - 1, size + 1, 2 * size, end, begin, 2**64 - 1} - {size}:
            # A size whose range proof has the same shape is not caught by the proof: the signed
            # checkpoint binds (size, root) together (see test_range_proof_does_not_bind_the_size).
            if not _same_range_shape(begin, end, size, new_size):
                yield f"{tag}:size={new_size}", {**base, "size": new_size}
        yield f"{tag}:root-flipped", {**base, "root": _flip(root)}
        yield f"{tag}:other-hasher", {**base, "hasher": tree.BLAKE3}


@pytest.mark.parametrize("case", list(_range_negatives()), ids=lambda c: c[0])
def test_range_vector_negative(case: tuple[str, dict[str, Any]]) -> None:
    args = {"hasher": SHA256, **case[1]}
    with pytest.raises(ProofError):
        tree.verify_range(**args)


# --- 2. Random sorted leaf tables ---------------------------------------------------------------

PRESENT = ("b", "bb", "d", "d-1", "f", "kube-system")
# Names no table uses: before every named namespace, between, and after all of them.
ABSENT = ("0", "a", "b0", "ba", "c", "d-", "d-0", "e", "g", "zz")
_GROUPS = ("configmaps", "deployments.apps", "pods")
_CLUSTER_GROUPS = ("clusterroles.rbac.authorization.k8s.io", "persistentvolumes")
_VERSIONS = ("", "v1", "v1beta1")
_NAMES = ("api", "db", "web", "x")
_BUCKET = ("velero-backup.json", "t-logs.gz", "t-podvolumebackups.json.gz")


def _versioned(group: str, version: str) -> str:
    return f"resources/{group}/{version + '/' if version else ''}"


_namespaced = st.builds(
    lambda g, v, ns, n: _versioned(g, v) + f"namespaces/{ns}/{n}.json",
    st.sampled_from(_GROUPS), st.sampled_from(_VERSIONS), st.sampled_from(PRESENT),
    st.sampled_from(_NAMES),
)
_namespace_object = st.builds(
    lambda v, ns: _versioned("namespaces", v) + f"cluster/{ns}.json",
    st.sampled_from(_VERSIONS), st.sampled_from(PRESENT),
)
_cluster = st.builds(
    lambda g, v, n: _versioned(g, v) + f"cluster/{n}.json",
    st.sampled_from(_CLUSTER_GROUPS), st.sampled_from(_VERSIONS), st.sampled_from(_NAMES),
)
_tar_path = st.one_of(_namespaced, _namespaced, _namespaced, _namespace_object, _cluster,
                      st.just("metadata/version"))


def make_record(path: str, content: bytes, *, bucket: bool = False) -> LeafRecord:
    key = key_for_bucket_object(path) if bucket else key_for_tar_path(path)
    return LeafRecord(key, path, len(content), content_digest(content))


@dataclass
class Table:
    """A sealed leaf table: records in key order, their encodings and the tree over them."""

    records: list[LeafRecord]

    def __post_init__(self) -> None:
        self.encoded = [r.encode() for r in self.records]
        self.merkle = tree.MerkleTree([tree.BLAKE3.leaf_hash(e) for e in self.encoded])

    @property
    def size(self) -> int:
        return len(self.records)

    @property
    def root(self) -> bytes:
        return self.merkle.root

    def namespaces(self) -> list[str]:
        return sorted({r.key.namespace for r in self.records} - {""})

    def own(self, namespace: str) -> list[LeafRecord]:
        return [r for r in self.records if r.key.namespace == namespace]

    def honest(self, namespace: str) -> tuple[NamespaceRange, int, list[bytes], list[bytes]]:
        """What the prover sends for ``namespace`` (docs/format.md §11.3)."""
        run = namespace_range(self.records, namespace)
        records = self.encoded[run.begin:run.end]
        return run, run.begin, records, self.merkle.range_proof(run.begin, run.end)

    def verify(self, namespace: Any, begin: Any, records: Any, proof: Any) -> list[LeafRecord]:
        """A verifier holding this table's signed (size, root): the namespace's records or raise."""
        return verify_namespace_proof(namespace=namespace, begin=begin, size=self.size,
                                      records=records, proof=proof, root=self.root)


def table_of(paths: Sequence[str], bucket: Sequence[str] = ()) -> Table:
    records = {}
    for i, path in enumerate(paths):
        r = make_record(path, b"content %d of %s" % (i, path.encode()))
        records.setdefault(r.key, r)
    for name in bucket:
        r = make_record(name, b"bucket " + name.encode(), bucket=True)
        records.setdefault(r.key, r)
    return Table([records[k] for k in sorted(records)])


@st.composite
def tables(draw: st.DrawFn, max_leaves: int = 18) -> Table:
    paths = draw(st.lists(_tar_path, min_size=1, max_size=max_leaves))
    bucket = draw(st.lists(st.sampled_from(_BUCKET), max_size=2, unique=True))
    return table_of(paths, bucket)


def hits_edge_bug(run: NamespaceRange, size: int) -> bool:
    """The honest proof's left neighbour is leaf 0, or its right neighbour is the last leaf."""
    return run.first == 1 or run.last == size - 1


def probes(table: Table) -> list[str]:
    return table.namespaces() + [n for n in ABSENT if n not in table.namespaces()]


# A table whose namespace "b" starts at leaf 1 and whose "kube-system" ends one before the end.
EDGE_TABLE = table_of([
    "metadata/version",
    "resources/pods/namespaces/b/api.json",
    "resources/pods/namespaces/b/web.json",
    "resources/pods/namespaces/kube-system/api.json",
    "resources/pods/namespaces/zz-last/api.json",
])


def test_edge_table_is_what_it_claims() -> None:
    assert [r.key.namespace for r in EDGE_TABLE.records] == ["", "b", "b", "kube-system", "zz-last"]
    assert hits_edge_bug(namespace_range(EDGE_TABLE.records, "b"), 5)
    for namespace in ("kube-system", "a", "l"):
        assert hits_edge_bug(namespace_range(EDGE_TABLE.records, namespace), 5)
    assert not hits_edge_bug(namespace_range(EDGE_TABLE.records, "c"), 5)


@pytest.mark.parametrize("namespace", ["b", "kube-system", "a", "l"])
def test_honest_proof_with_a_neighbour_at_the_tree_edge(namespace: str) -> None:
    """Present "b" (left neighbour leaf 0), "kube-system" (right neighbour the last leaf), absent
    "a" (between leaves 0 and 1) and "l" (between leaves 3 and 4): four honest proofs refused."""
    _, begin, records, proof = EDGE_TABLE.honest(namespace)
    assert EDGE_TABLE.verify(namespace, begin, records, proof) == EDGE_TABLE.own(namespace)


@_SETTINGS
@given(tables())
@example(EDGE_TABLE)
def test_every_honest_namespace_proof_verifies_including_edges(table: Table) -> None:
    for namespace in probes(table):
        _, begin, records, proof = table.honest(namespace)
        assert table.verify(namespace, begin, records, proof) == table.own(namespace)


@_SETTINGS
@given(tables())
def test_every_namespace_proof_verifies_and_is_exact(table: Table) -> None:
    """Every present and absent namespace (the EDGE_BUG cases included): the honest proof leads
    to the root and gives exactly the namespace's records; its size does not grow with them."""
    assert table.size > 0
    for namespace in probes(table):
        run, begin, records, proof = table.honest(namespace)
        own = table.verify(namespace, begin, records, proof)
        assert own == table.own(namespace)
        assert run.present == bool(own)
        assert len(own) <= len(records) <= len(own) + 2
        assert len(proof) <= 2 * max(1, math.ceil(math.log2(table.size)))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(max_leaves=12))
def test_only_the_honest_range_is_accepted(table: Table) -> None:
    """The attacker's best tries, exhaustively: every window [b, e) of the real table with its
    real range proof. One accepted for N must be N's honest range, giving exactly N's records:
    no truncated or extended run (#317), no absence proof while N exists, no partial absence
    proof (#110)."""
    for namespace in probes(table):
        run = namespace_range(table.records, namespace)
        for b in range(table.size):
            for e in range(b + 1, table.size + 1):
                proof = table.merkle.range_proof(b, e)
                try:
                    own = table.verify(namespace, b, table.encoded[b:e], proof)
                except ProofError:
                    continue
                assert (b, e) == (run.begin, run.end), (namespace, b, e)
                assert own == table.own(namespace)


@_SETTINGS
@given(tables())
def test_a_proof_for_one_namespace_is_not_accepted_for_another(table: Table) -> None:
    """A proof accepted for another name must be that name's own honest proof (same range, and
    exactly its records): in practice, the absence proof of a gap serves every name in the gap."""
    names = probes(table)
    for namespace in names:
        _, begin, records, proof = table.honest(namespace)
        for other in names:
            if other == namespace:
                continue
            try:
                own = table.verify(other, begin, records, proof)
            except ProofError:
                continue
            other_run = namespace_range(table.records, other)
            end = begin + len(records)
            assert (other_run.begin, other_run.end) == (begin, end), (namespace, other)
            assert own == table.own(other)


def _namespace_tamperings(
    table: Table, begin: int, records: list[bytes], proof: list[bytes]
) -> Iterator[tuple[str, int, list[bytes], list[bytes]]]:
    for label, changed in _list_mutations(proof, tree.BLAKE3.leaf_hash(b"filler")):
        yield f"proof-{label}", begin, records, changed
    outside = [e for i, e in enumerate(table.encoded) if not begin <= i < begin + len(records)]
    filler = make_record("resources/pods/namespaces/b/zzz.json", b"forged").encode()
    for label, changed in _list_mutations(records, outside[0] if outside else filler):
        yield f"records-{label}", begin, changed, proof
    for i, record in enumerate(records):
        before, after = records[:i], records[i + 1:]
        # A well-formed record with another digest (decodes; only the root can catch it).
        yield f"records-digest[{i}]", begin, [*before, _flip(record, -1), *after], proof
        yield f"records-truncated[{i}]", begin, [*before, record[:-1], *after], proof
        yield f"records-extended[{i}]", begin, [*before, record + b"\0", *after], proof
        yield f"records-garbage[{i}]", begin, [*before, b"\xff" * 48, *after], proof
    end = begin + len(records)
    if end < table.size:
        yield "records-add-real-next", begin, records + [table.encoded[end]], proof
    if 0 < begin <= table.size:
        previous = [table.encoded[begin - 1], *records]
        yield "records-add-real-previous", begin, previous, proof
        yield "records-add-real-previous-and-begin", begin - 1, previous, proof
    yield "records-add-forged", begin, records + [filler], proof
    for b in {begin - 2, begin - 1, begin + 1, begin + 2, 0, table.size - 1, table.size,
              table.size + 1, 2**63, 2**64 - 1, 2**64} - {begin}:
        yield f"begin={b}", b, records, proof
    yield "records-empty", begin, [], proof
    yield "everything-empty", 0, [], []


@_SETTINGS
@given(tables(), st.data())
def test_any_tampering_of_a_namespace_proof_raises_proof_error(
    table: Table, data: st.DataObject
) -> None:
    namespace = data.draw(st.sampled_from(probes(table)), label="namespace")
    _, begin, records, proof = table.honest(namespace)
    for label, b, r, p in _namespace_tamperings(table, begin, records, proof):
        with pytest.raises(ProofError):
            table.verify(namespace, b, r, p)
            pytest.fail(f"{label} was accepted")


@_SETTINGS
@given(tables())
def test_extended_or_shifted_ranges_with_real_range_proofs_fail(table: Table) -> None:
    """Longer or shifted windows, each with its *real* range proof: only completeness refuses."""
    for namespace in probes(table):
        run = namespace_range(table.records, namespace)
        for b, e in {(run.begin - 1, run.end), (run.begin, run.end + 1),
                     (run.begin + 1, run.end), (run.begin, run.end - 1),
                     (run.begin - 1, run.end - 1), (run.begin + 1, run.end + 1)}:
            if 0 <= b < e <= table.size:
                with pytest.raises(ProofError):
                    table.verify(namespace, b, table.encoded[b:e], table.merkle.range_proof(b, e))


def _inclusion_length(index: int, size: int) -> int:
    return len(tree.MerkleTree([tree.BLAKE3.leaf_hash(b"")] * size).inclusion_proof(index))


@_SETTINGS
@given(tables(), st.data())
def test_resource_inclusion_proofs_and_their_tampering(table: Table, data: st.DataObject) -> None:
    size = table.size
    for index, record in enumerate(table.encoded):
        tree.verify_inclusion(index=index, size=size, leaf_hash=tree.BLAKE3.leaf_hash(record),
                              proof=table.merkle.inclusion_proof(index), root=table.root)
    index = data.draw(st.integers(0, size - 1), label="index")
    record, proof = table.encoded[index], table.merkle.inclusion_proof(index)
    assert len(proof) <= max(0, math.ceil(math.log2(size)))
    base = {"index": index, "size": size, "leaf_hash": tree.BLAKE3.leaf_hash(record),
            "proof": proof, "root": table.root}
    cases: list[dict[str, Any]] = []
    cases += [{"index": i} for i in {index - 1, index + 1, size, 2**64} - {index} if i >= -1]
    # A size with a proof of the same length may be accepted: (size, root) come signed together.
    cases += [{"size": s} for s in {size - 1, size + 1, 2 * size, 2**64 - 1} - {size}
              if s > 2**16 or s <= index or _inclusion_length(index, s) != len(proof)]
    cases += [{"proof": p} for _, p in _list_mutations(proof, tree.BLAKE3.leaf_hash(b"filler"))]
    cases += [{"leaf_hash": tree.BLAKE3.leaf_hash(_flip(record, -1))},
              {"leaf_hash": tree.BLAKE3.leaf_hash(record + b"\0")},
              {"leaf_hash": record[:32]}, {"index": True}, {"size": float(size)}]
    for change in cases:
        with pytest.raises(ProofError):
            tree.verify_inclusion(**{**base, **change})


# --- 3. celestiaorg/nmt's bugs, as our own regressions --------------------------------------------

# Namespaces: "" (3 leaves), "b" (1), "d" (3), "f" (2); leaves 0..8. Neither "d" nor the gaps
# used below touch the tree's edges (see EDGE_BUG).
NMT = table_of([
    "metadata/version",
    "resources/persistentvolumes/cluster/api.json",
    "resources/persistentvolumes/cluster/db.json",
    "resources/pods/namespaces/b/api.json",
    "resources/configmaps/namespaces/d/api.json",
    "resources/pods/namespaces/d/api.json",
    "resources/namespaces/cluster/d.json",
    "resources/pods/namespaces/f/api.json",
    "resources/pods/namespaces/f/db.json",
])


def test_nmt_table_layout() -> None:
    assert [r.key.namespace for r in NMT.records] == ["", "", "", "b", "d", "d", "d", "f", "f"]
    for namespace in ("b", "d", "c", "e"):
        _, begin, records, proof = NMT.honest(namespace)
        assert NMT.verify(namespace, begin, records, proof) == NMT.own(namespace)


@pytest.mark.parametrize("namespace", ["c", "d", "a", "zz"])
@pytest.mark.parametrize("begin", [0, 1, 4, 8, 9, 10, 2**64 - 1])
@pytest.mark.parametrize("proof", ["none", "honest", "root"])
def test_nmt86_forged_empty_absence_proof(namespace: str, begin: int, proof: str) -> None:
    """celestiaorg/nmt#86: a proof with no leaves at all was accepted as proof of absence."""
    hashes = {"none": [], "honest": NMT.honest(namespace)[3], "root": [NMT.root]}[proof]
    with pytest.raises(ProofError):
        NMT.verify(namespace, begin, [], hashes)
    with pytest.raises(ProofError):
        check_namespace_records(namespace=namespace, begin=begin, size=NMT.size, records=[])


def test_nmt86_empty_tree_is_the_only_empty_proof() -> None:
    empty = tree.BLAKE3.empty_root()
    assert verify_namespace_proof(namespace="c", begin=0, size=0, records=[], proof=[],
                                  root=empty) == []
    with pytest.raises(ProofError):  # the size comes from the signed checkpoint, not the proof
        verify_namespace_proof(namespace="c", begin=0, size=0, records=[], proof=[], root=NMT.root)
    for begin, records, proof in [(1, [], []), (0, NMT.encoded[:1], []), (0, [], [NMT.root])]:
        with pytest.raises(ProofError):
            verify_namespace_proof(namespace="c", begin=begin, size=0, records=records,
                                   proof=proof, root=empty)


@pytest.mark.parametrize("namespace", ["c", "ba"])  # both in the gap between leaves 3 and 4
def test_nmt110_partial_absence_proof(namespace: str) -> None:
    """celestiaorg/nmt#110: an absence proof must bracket the name from both sides, with adjacent
    leaves. Each try carries the real range proof of its window, so only completeness refuses."""
    run, begin, records, proof = NMT.honest(namespace)
    assert (run.begin, run.end, run.present) == (3, 5, False)
    assert NMT.verify(namespace, begin, records, proof) == []
    tries = {
        "left neighbour only": (3, 4),
        "right neighbour only": (4, 5),
        "two leaves left of the gap": (2, 4),
        "two leaves right of the gap": (4, 6),
        "non-adjacent: a leaf more on the left": (2, 5),
        "non-adjacent: a leaf more on the right": (3, 6),
    }
    for label, (b, e) in tries.items():
        with pytest.raises(ProofError):
            NMT.verify(namespace, b, NMT.encoded[b:e], NMT.merkle.range_proof(b, e))
            pytest.fail(f"{label} was accepted")
    # Non-adjacent neighbours presented as adjacent: leaves 3 and 5 with the proof of [3, 5).
    with pytest.raises(ProofError):
        NMT.verify(namespace, 3, [NMT.encoded[3], NMT.encoded[5]], NMT.merkle.range_proof(3, 5))
    with pytest.raises(ProofError):
        NMT.verify(namespace, 2, [NMT.encoded[2], NMT.encoded[4]], NMT.merkle.range_proof(2, 4))


@pytest.mark.parametrize("window", [
    (4, 8),  # omits the left neighbour (leaf 3, namespace "b")
    (3, 7),  # omits the right neighbour (leaf 7, namespace "f")
    (4, 7),  # omits both neighbours: the bare run
    (3, 6),  # omits the namespace's last leaf (and so the right neighbour)
    (5, 8),  # omits the namespace's first leaf (and so the left neighbour)
    (4, 6),  # a strict sub-run of the namespace
    (3, 5),  # the left neighbour and the first leaf only
    (6, 8),  # the last leaf and the right neighbour only
    (2, 8),  # an extra leaf on the left
    (3, 9),  # an extra leaf on the right
], ids=str)
def test_nmt317_truncated_or_padded_proof_fails_completeness(window: tuple[int, int]) -> None:
    """celestiaorg/nmt#317 / GHSA-r9fq-g486-v8pg: a namespace proof whose range omits leaves of
    the namespace or a neighbour passed the completeness check. Each window carries its real
    range proof, so the root matches and only completeness can refuse it."""
    run = namespace_range(NMT.records, "d")
    assert (run.begin, run.first, run.last, run.end) == (3, 4, 7, 8)
    b, e = window
    proof = NMT.merkle.range_proof(b, e)
    assert tree.root_from_range_proof(
        begin=b, end=e, size=NMT.size,
        leaf_hashes=[tree.BLAKE3.leaf_hash(r) for r in NMT.encoded[b:e]], proof=proof,
    ) == NMT.root
    with pytest.raises(ProofError):
        NMT.verify("d", b, NMT.encoded[b:e], proof)


def test_nmt317_records_dropped_inside_the_range() -> None:
    """Leaves of the namespace removed from the list, the range kept: the root refuses."""
    _, begin, records, proof = NMT.honest("d")
    for i in range(1, len(records) - 1):
        with pytest.raises(ProofError):
            NMT.verify("d", begin, records[:i] + records[i + 1:], proof)


_REAL = NMT.honest("d")


@pytest.mark.parametrize("change", [
    {"proof": [b"\x00" * 31] + _REAL[3][1:]},
    {"proof": _REAL[3][:-1] + [b"\x00" * 33]},
    {"proof": [b""] * len(_REAL[3])},
    {"proof": ["ab" * 16] + _REAL[3][1:]},
    {"proof": [None] + _REAL[3][1:]},
    {"proof": [int.from_bytes(_REAL[3][0], "big")] + _REAL[3][1:]},
    {"proof": [bytearray(_REAL[3][0])] + _REAL[3][1:]},
    {"proof": b"".join(_REAL[3])},
    {"proof": None},
    {"proof": [_REAL[3]]},
    {"records": [b"\xff" * 10] + _REAL[2][1:]},
    {"records": [b""] * len(_REAL[2])},
    {"records": _REAL[2][:-1] + [_REAL[2][-1][:-1]]},
    {"records": _REAL[2][:-1] + [_REAL[2][-1] + b"\0"]},
    {"records": [_REAL[2][0][:2] + b"\xff\xff" + _REAL[2][0][4:]] + _REAL[2][1:]},
    {"records": "not a list of records"},
    {"begin": NMT.size}, {"begin": NMT.size + 1}, {"begin": 2**64}, {"begin": 2**200},
    {"begin": -1}, {"begin": -(2**64)}, {"begin": True}, {"begin": False}, {"begin": 3.0},
    {"namespace": ""}, {"namespace": None},
], ids=lambda c: repr(c)[:50])
def test_nmt141_malformed_nodes_raise_proof_error(change: dict[str, Any]) -> None:
    """celestiaorg/nmt#141: malformed nodes crashed the verifier. Ours raises ProofError only."""
    _, begin, records, proof = _REAL
    args = {"namespace": "d", "begin": begin, "records": records, "proof": proof, **change}
    with pytest.raises(ProofError):
        NMT.verify(**args)


@pytest.mark.parametrize("change", [
    {"records": [None]}, {"records": [1, 2]}, {"records": None}, {"records": b"\x00\x01"},
    {"records": [memoryview(_REAL[2][0])] + _REAL[2][1:]},
    {"begin": None}, {"begin": "3"},
    {"namespace": b"d"}, {"namespace": 4},
], ids=lambda c: repr(c)[:40])
def test_nmt141_malformed_types_raise_proof_error(change: dict[str, Any]) -> None:
    _, begin, records, proof = _REAL
    args = {"namespace": "d", "begin": begin, "records": records, "proof": proof, **change}
    try:
        NMT.verify(**args)
    except (ProofError, FormatError):
        return
    pytest.fail("accepted a malformed proof")


def test_nmt161_inclusion_of_some_leaves_is_not_completeness() -> None:
    """celestiaorg/nmt#161: plain inclusion of leaves never proves the namespace complete. The
    namespace's leaves but one, each with its own inclusion proof, all verify; bundled as a
    namespace proof (with or without the real range proof of the full run) they do not."""
    run, begin, _, proof = NMT.honest("d")
    for i in range(run.first, run.last):
        leaf_hash = tree.BLAKE3.leaf_hash(NMT.encoded[i])
        tree.verify_inclusion(index=i, size=NMT.size, leaf_hash=leaf_hash,
                              proof=NMT.merkle.inclusion_proof(i), root=NMT.root)
    for skip in range(run.first, run.last):
        subset = [e for i, e in enumerate(NMT.encoded[begin:run.end], begin) if i != skip]
        for b, p in [(begin, proof), (begin, NMT.merkle.range_proof(begin, run.end - 1))]:
            with pytest.raises(ProofError):
                NMT.verify("d", b, subset, p)
