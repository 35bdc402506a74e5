"""Tests for merkle_backup.core.tree (RFC 9162 §2.1 Merkle trees, BLAKE3-256).

1. The structure, with SHA-256: every value in tests/vectors/rfc6962.json, and every
   transparency-dev inclusion and consistency probe.
2. Our BLAKE3 instantiation: SELFGEN_blake3_rfc6962_shape.json, a second naive implementation
   (naive_tree.py, straight from the RFC's recursive definitions) over every size 0..70 and
   every index and range, and golden roots committed below.
3. Hypothesis properties over random trees: proofs verify; any change to them does not.
4. Malformed input of every kind raises ProofError and nothing else.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merkle_backup.core import tree
from merkle_backup.core.tree import (
    BLAKE3,
    HASH_SIZE,
    LEAF_PREFIX,
    MAX_TREE_SIZE,
    NODE_PREFIX,
    MerkleTree,
    TreeHasher,
    root,
    root_from_inclusion_proof,
    root_from_range_proof,
    verify_consistency,
    verify_inclusion,
    verify_range,
)
from merkle_backup.errors import NotAuthentic, ProofError

from . import naive_tree

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# RFC 6962 / RFC 9162 with SHA-256: only the tests use it, to run the published vectors.
SHA256 = TreeHasher(name="sha256", digest=_sha256)


def unhex(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def test_constants_are_rfc9162() -> None:
    assert LEAF_PREFIX == b"\x00"
    assert NODE_PREFIX == b"\x01"
    assert HASH_SIZE == 32
    assert BLAKE3.name == "blake3"
    assert issubclass(ProofError, NotAuthentic)


def test_core_tree_imports_only_stdlib_and_blake3() -> None:
    # docs: the core is pure (STYLE.md "Layers"): no files, sockets, clock, or I/O libraries.
    source = Path(tree.__file__).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {
        "__future__",
        "hmac",
        "collections.abc",
        "dataclasses",
        "blake3",
        "merkle_backup.errors",
    }, imported


# --- 1a. rfc6962.json (SHA-256) ------------------------------------------------------------------

RFC = json.loads((VECTORS / "rfc6962.json").read_text())
RFC_LEAVES = [SHA256.leaf_hash(d) for d in unhex(RFC["leaves_hex"])]


def test_rfc6962_empty_tree() -> None:
    want = bytes.fromhex(RFC["empty_tree_root"])
    assert SHA256.empty_root() == want
    assert root([], hasher=SHA256) == want
    assert MerkleTree([], hasher=SHA256).root == want
    assert MerkleTree([], hasher=SHA256).size == 0


@pytest.mark.parametrize("v", RFC["hasher_vectors"], ids=lambda v: v["desc"])
def test_rfc6962_hasher_vectors(v: dict[str, Any]) -> None:
    if v["kind"] == "empty_root":
        got = SHA256.empty_root()
    elif v["kind"] == "leaf":
        got = SHA256.leaf_hash(bytes.fromhex(v["data_hex"]))
    else:
        assert v["kind"] == "node"
        got = SHA256.node_hash(bytes.fromhex(v["left_hex"]), bytes.fromhex(v["right_hex"]))
    assert got.hex() == v["want"]


def test_rfc6962_leaf_hashes() -> None:
    assert [h.hex() for h in RFC_LEAVES] == [v["leaf_hash"] for v in RFC["leaf_hashes"]]
    assert [v["index"] for v in RFC["leaf_hashes"]] == list(range(len(RFC_LEAVES)))


@pytest.mark.parametrize("v", RFC["roots"], ids=lambda v: f"size{v['size']}")
def test_rfc6962_roots(v: dict[str, Any]) -> None:
    leaves = RFC_LEAVES[: v["size"]]
    assert root(leaves, hasher=SHA256).hex() == v["root"]
    assert MerkleTree(leaves, hasher=SHA256).root.hex() == v["root"]
    assert naive_tree.mth(leaves, naive_tree.sha256).hex() == v["root"]


RFC_INCLUSION = RFC["inclusion_proofs"] + RFC["inclusion_proofs_all"]


@pytest.mark.parametrize(
    "v", RFC_INCLUSION, ids=lambda v: f"{v['leaf_index']}of{v['tree_size']}-{v['source']}"
)
def test_rfc6962_inclusion_proofs(v: dict[str, Any]) -> None:
    index, size, want = v["leaf_index"], v["tree_size"], unhex(v["proof"])
    leaf_hash, want_root = bytes.fromhex(v["leaf_hash"]), bytes.fromhex(v["root"])
    assert leaf_hash == RFC_LEAVES[index]
    t = MerkleTree(RFC_LEAVES[:size], hasher=SHA256)
    assert t.root == want_root
    assert t.inclusion_proof(index) == want
    assert naive_tree.path(index, RFC_LEAVES[:size], naive_tree.sha256) == want
    got = root_from_inclusion_proof(
        index=index, size=size, leaf_hash=leaf_hash, proof=want, hasher=SHA256
    )
    assert got == want_root
    verify_inclusion(
        index=index, size=size, leaf_hash=leaf_hash, proof=want, root=want_root, hasher=SHA256
    )
    # A one-leaf range proof holds the same hashes as PATH, in left-to-right order.
    assert sorted(t.range_proof(index, index + 1)) == sorted(want)


RFC_CONSISTENCY = RFC["consistency_proofs"] + RFC["consistency_proofs_all"]


@pytest.mark.parametrize(
    "v", RFC_CONSISTENCY, ids=lambda v: f"{v['size1']}to{v['size2']}-{v['source']}"
)
def test_rfc6962_consistency_proofs(v: dict[str, Any]) -> None:
    size1, size2, want = v["size1"], v["size2"], unhex(v["proof"])
    root1, root2 = bytes.fromhex(v["root1"]), bytes.fromhex(v["root2"])
    assert root(RFC_LEAVES[:size1], hasher=SHA256) == root1
    assert MerkleTree(RFC_LEAVES[:size2], hasher=SHA256).consistency_proof(size1) == want
    assert naive_tree.proof(size1, RFC_LEAVES[:size2], naive_tree.sha256) == want
    verify_consistency(
        size1=size1, size2=size2, root1=root1, root2=root2, proof=want, hasher=SHA256
    )


@pytest.mark.parametrize(
    "v",
    RFC["range_inclusion_proofs_inorder"],
    ids=lambda v: f"[{v['begin']},{v['end']})of{v['tree_size']}",
)
def test_rfc6962_range_proofs_inorder(v: dict[str, Any]) -> None:
    begin, end, size, want = v["begin"], v["end"], v["tree_size"], unhex(v["proof"])
    leaf_hashes, want_root = unhex(v["leaf_hashes"]), bytes.fromhex(v["root"])
    assert leaf_hashes == RFC_LEAVES[begin:end]
    t = MerkleTree(RFC_LEAVES[:size], hasher=SHA256)
    assert t.range_proof(begin, end) == want
    assert naive_tree.range_proof(begin, end, RFC_LEAVES[:size], naive_tree.sha256) == want
    got = root_from_range_proof(
        begin=begin, end=end, size=size, leaf_hashes=leaf_hashes, proof=want, hasher=SHA256
    )
    assert got == want_root
    verify_range(
        begin=begin,
        end=end,
        size=size,
        leaf_hashes=leaf_hashes,
        proof=want,
        root=want_root,
        hasher=SHA256,
    )


# rfc6962.json also holds "range_inclusion_proofs" in a compact-range layout (the aligned
# power-of-two blocks of [0, begin) and of [end, size)). That is a different proof format from
# ours (on the right edge RFC subtrees need not be powers of two), so it is not checked here.


def test_rfc9162_section_2_1_5_example() -> None:
    ex = RFC["rfc9162_section_2_1_5_example"]
    d = RFC_LEAVES[:7]
    t = MerkleTree(d, hasher=SHA256)
    assert t.root.hex() == ex["root"]
    spans = {"a": (0, 1), "b": (1, 2), "c": (2, 3), "d": (3, 4), "e": (4, 5), "f": (5, 6)}
    spans |= {"j": (6, 7), "g": (0, 2), "h": (2, 4), "i": (4, 6), "k": (0, 4), "l": (4, 7)}
    for name, (lo, hi) in spans.items():
        assert root(d[lo:hi], hasher=SHA256).hex() == ex["node_hashes"][name], name
    for v in ex["inclusion"]:
        assert v["tree_size"] == 7
        assert t.inclusion_proof(v["leaf_index"]) == unhex(v["proof"])
        assert [ex["node_hashes"][n] for n in v["proof_node_names"]] == v["proof"]
    for v in ex["consistency"]:
        assert t.consistency_proof(v["size1"]) == unhex(v["proof"])
        verify_consistency(
            size1=v["size1"],
            size2=7,
            root1=bytes.fromhex(v["root1"]),
            root2=t.root,
            proof=unhex(v["proof"]),
            hasher=SHA256,
        )


# --- 1b. transparency-dev/merkle probes (SHA-256, base64) ----------------------------------------

PROBES = VECTORS / "transparency-dev-merkle" / "testdata"
# Not run: testdata/subtreeinclusion and testdata/subtreeconsistency. They probe the "subtree"
# proofs of Merkle Tree Certificates (a subtree [start, end) with start aligned to a power of
# two, proven against a tree head), a proof type merkle-backup does not implement; our range
# proofs have their own format and vectors (range_inclusion_proofs_inorder above).
INCLUSION_PROBES = sorted((PROBES / "inclusion").rglob("*.json"))
CONSISTENCY_PROBES = sorted((PROBES / "consistency").rglob("*.json"))

# Probes where we are deliberately stricter than transparency-dev's Go verifier, which does not
# check hash lengths. We refuse any root or hash that is not 32 bytes (strict shape), so these
# must raise ProofError although the probe has wantErr = false.
STRICTER_THAN_PROBE = {
    # size1 == size2 == 1, empty proof, root1 == root2 == b"don't care 2" (12 bytes).
    "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json",
}


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "", validate=True)


def _b64_list(values: list[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


def _run_probes(
    files: list[Path], check: Callable[[dict[str, Any]], None]
) -> tuple[int, list[str]]:
    wrong = []
    for path in files:
        probe = json.loads(path.read_text())
        name = path.relative_to(PROBES).as_posix()
        want_error = probe["wantErr"] or name in STRICTER_THAN_PROBE
        try:
            check(probe)
        except ProofError as e:
            if not want_error:
                wrong.append(f"{name}: unexpected ProofError: {e}")
        else:
            if want_error:
                wrong.append(f"{name}: accepted, want ProofError")
    return len(files), wrong


def test_transparency_dev_inclusion_probes() -> None:
    def check(p: dict[str, Any]) -> None:
        verify_inclusion(
            index=p["leafIdx"],
            size=p["treeSize"],
            leaf_hash=_b64(p["leafHash"]),
            proof=_b64_list(p["proof"]),
            root=_b64(p["root"]),
            hasher=SHA256,
        )

    ran, wrong = _run_probes(INCLUSION_PROBES, check)
    assert wrong == []
    assert ran >= 98  # 98 files at transparency-dev/merkle 417fb0c; never pass on zero


def test_transparency_dev_consistency_probes() -> None:
    def check(p: dict[str, Any]) -> None:
        verify_consistency(
            size1=p["size1"],
            size2=p["size2"],
            root1=_b64(p["root1"]),
            root2=_b64(p["root2"]),
            proof=_b64_list(p["proof"]),
            hasher=SHA256,
        )

    ran, wrong = _run_probes(CONSISTENCY_PROBES, check)
    assert wrong == []
    assert ran >= 98  # 98 files at transparency-dev/merkle 417fb0c; never pass on zero


def test_stricter_than_probe_is_only_about_hash_length() -> None:
    # The one probe we refuse is accepted with 32-byte roots in the same situation.
    for name in STRICTER_THAN_PROBE:
        p = json.loads((PROBES / name).read_text())
        assert not p["wantErr"]
        assert {len(_b64(p["root1"])), len(_b64(p["root2"]))} != {HASH_SIZE}
    r = RFC_LEAVES[0]
    verify_consistency(size1=1, size2=1, root1=r, root2=r, proof=[], hasher=SHA256)


# --- 2a. Our BLAKE3 instantiation: SELFGEN vectors -----------------------------------------------

SELF = json.loads((VECTORS / "SELFGEN_blake3_rfc6962_shape.json").read_text())
SELF_LEAVES = [BLAKE3.leaf_hash(d) for d in unhex(SELF["leaves_hex"])]


def test_selfgen_blake3_roots() -> None:
    assert BLAKE3.empty_root().hex() == SELF["empty_tree_root"]
    assert root([]).hex() == SELF["empty_tree_root"]
    assert len(SELF["roots"]) == 8
    for v in SELF["roots"]:
        assert root(SELF_LEAVES[: v["size"]]).hex() == v["root"]
        assert MerkleTree(SELF_LEAVES[: v["size"]]).root.hex() == v["root"]


def test_selfgen_blake3_proofs() -> None:
    assert len(SELF["inclusion_proofs"]) == 36
    for v in SELF["inclusion_proofs"]:
        index, size, want = v["leaf_index"], v["tree_size"], unhex(v["proof"])
        assert SELF_LEAVES[index].hex() == v["leaf_hash"]
        t = MerkleTree(SELF_LEAVES[:size])
        assert t.inclusion_proof(index) == want
        verify_inclusion(
            index=index, size=size, leaf_hash=SELF_LEAVES[index], proof=want, root=t.root
        )
    assert len(SELF["consistency_proofs"]) == 36
    for v in SELF["consistency_proofs"]:
        size1, size2, want = v["size1"], v["size2"], unhex(v["proof"])
        t = MerkleTree(SELF_LEAVES[:size2])
        assert t.consistency_proof(size1) == want
        verify_consistency(
            size1=size1, size2=size2, root1=root(SELF_LEAVES[:size1]), root2=t.root, proof=want
        )
    assert len(SELF["range_inclusion_proofs_inorder"]) >= 3
    for v in SELF["range_inclusion_proofs_inorder"]:
        begin, end, size, want = v["begin"], v["end"], v["tree_size"], unhex(v["proof"])
        assert unhex(v["leaf_hashes"]) == SELF_LEAVES[begin:end]
        t = MerkleTree(SELF_LEAVES[:size])
        assert t.range_proof(begin, end) == want
        verify_range(
            begin=begin,
            end=end,
            size=size,
            leaf_hashes=SELF_LEAVES[begin:end],
            proof=want,
            root=t.root,
        )


# --- 2b. Our BLAKE3 instantiation against the naive implementation -------------------------------


def blake3_leaves(n: int, tag: bytes = b"leaf") -> list[bytes]:
    return [BLAKE3.leaf_hash(b"%s-%d" % (tag, i)) for i in range(n)]


NAIVE_MAX = 70
NAIVE_LEAVES = blake3_leaves(NAIVE_MAX)


@pytest.mark.parametrize("size", range(NAIVE_MAX + 1))
def test_against_naive_roots_and_inclusion(size: int) -> None:
    leaves = NAIVE_LEAVES[:size]
    t = MerkleTree(leaves)
    want_root = naive_tree.mth(leaves)
    assert root(leaves) == want_root
    assert t.root == want_root
    assert t.size == size
    for i in range(size):
        want = naive_tree.path(i, leaves)
        assert t.inclusion_proof(i) == want
        verify_inclusion(index=i, size=size, leaf_hash=leaves[i], proof=want, root=want_root)
    for size1 in range(1, size + 1):
        want = naive_tree.proof(size1, leaves)
        assert t.consistency_proof(size1) == want
        verify_consistency(
            size1=size1, size2=size, root1=root(leaves[:size1]), root2=want_root, proof=want
        )


@pytest.mark.parametrize("size", range(1, NAIVE_MAX + 1))
def test_against_naive_every_range(size: int) -> None:
    leaves = NAIVE_LEAVES[:size]
    t = MerkleTree(leaves)
    max_len = 2 * (size - 1).bit_length()
    for begin in range(size):
        for end in range(begin + 1, size + 1):
            want = naive_tree.range_proof(begin, end, leaves)
            got = t.range_proof(begin, end)
            assert got == want, (begin, end)
            assert len(got) <= max_len
            if end - begin == 1:
                assert sorted(got) == sorted(t.inclusion_proof(begin))
            r = root_from_range_proof(
                begin=begin, end=end, size=size, leaf_hashes=leaves[begin:end], proof=got
            )
            assert r == t.root, (begin, end)


# Golden BLAKE3 roots over the leaves BLAKE3(0x00 || b"leaf-%d" % i), i = 0..n-1. Generated once
# by tests/core/naive_tree.py (naive_tree.mth) and committed as literals: they pin the
# construction so that any change to it (prefixes, split rule, hash mode) fails here.
GOLDEN_ROOTS = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "13edb6c9983e00ef6588db1c23b3c1d3203826bea8253f49dbd77636fa3561ac",
    2: "4469e9c1c99a67417a567e7e3cb252ac0381a92b86a3b22fcf2987d9eb401669",
    3: "7ad5599016ac74620483c327a0a8223031f6749290915ee1a19ae78663ee2b2d",
    7: "457ee5fb7830a0bfab4028a8840f883735279ae74c5fe6f4500dc05843f79de4",
    1000: "dbd008d12b2e3534f63428fbd0a833d929936c94a6aba30a8af29ad22ecc1ec5",
}
# Same origin: for the 7-leaf tree, PATH(4), the range proof for [1, 5), PROOF(3).
GOLDEN_7_INCLUSION_4 = [
    "6c6d8b4cd9b5b062c220d63de94dcc3c84cbbaaf8a5c01526e3bbfc56eda9d14",
    "b171ff8c11ea31812573bc253b368766f3eaf5e5c66599c4bdceb093ed3abdf6",
    "d5c37bb73429be70ad709b1d4009a68fd7b191a6569aaabeeaee3764819b437e",
]
GOLDEN_7_RANGE_1_5 = [
    "13edb6c9983e00ef6588db1c23b3c1d3203826bea8253f49dbd77636fa3561ac",
    "6c6d8b4cd9b5b062c220d63de94dcc3c84cbbaaf8a5c01526e3bbfc56eda9d14",
    "b171ff8c11ea31812573bc253b368766f3eaf5e5c66599c4bdceb093ed3abdf6",
]
GOLDEN_7_CONSISTENCY_3 = [
    "5eb77589bed15dd79a64dca092d84400dbc09215d356749fd0b2e4de0a9d6463",
    "172294e4b65a0f57041bd97751f758602f48201924ca97832c9a15bc893be72a",
    "4469e9c1c99a67417a567e7e3cb252ac0381a92b86a3b22fcf2987d9eb401669",
    "cf3e77d0963916622e8f3fe74a58ff565d52c0dc92932fbdd27a2764e29a252a",
]


@pytest.mark.parametrize("size", sorted(GOLDEN_ROOTS))
def test_golden_blake3_roots(size: int) -> None:
    leaves = blake3_leaves(size)
    assert root(leaves).hex() == GOLDEN_ROOTS[size]
    assert MerkleTree(leaves).root.hex() == GOLDEN_ROOTS[size]


def test_golden_blake3_proofs() -> None:
    t = MerkleTree(blake3_leaves(7))
    assert [h.hex() for h in t.inclusion_proof(4)] == GOLDEN_7_INCLUSION_4
    assert [h.hex() for h in t.range_proof(1, 5)] == GOLDEN_7_RANGE_1_5
    assert [h.hex() for h in t.consistency_proof(3)] == GOLDEN_7_CONSISTENCY_3


# --- 3. Properties over random trees -------------------------------------------------------------

MAX_SIZE = 300
PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def leaf_lists(draw: st.DrawFn) -> list[bytes]:
    """Leaf hashes of a tree of MAX_SIZE distinct leaves; properties take prefixes of it."""
    salt = draw(st.binary(max_size=8))
    return blake3_leaves(MAX_SIZE, tag=b"prop" + salt)


sizes = st.integers(1, MAX_SIZE)


def flip_bit(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def tampered_lists(
    draw: Callable[[st.SearchStrategy[Any]], Any], proof: list[bytes]
) -> list[list[bytes]]:
    """Proofs made from ``proof`` by dropping, adding, duplicating or reordering hashes."""
    out = []
    extra = draw(st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE))
    where = draw(st.integers(0, len(proof)))
    out.append([*proof[:where], extra, *proof[where:]])  # add
    if proof:
        i = draw(st.integers(0, len(proof) - 1))
        out.append(proof[:i] + proof[i + 1 :])  # drop
        out.append(proof[: i + 1] + proof[i:])  # duplicate
        out.append(proof[:-1])  # truncate
        out.append([*proof, proof[-1]])  # duplicate the last
    if len(proof) >= 2:
        i, j = sorted(
            draw(st.lists(st.integers(0, len(proof) - 1), min_size=2, max_size=2, unique=True))
        )
        swapped = list(proof)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        out.append(swapped)  # reorder
        out.append(proof[::-1])  # reverse
    return [p for p in out if p != proof]


@PROPS
@given(leaves=leaf_lists(), size=sizes)
def test_every_leaf_inclusion_proof_verifies(leaves: list[bytes], size: int) -> None:
    t = MerkleTree(leaves[:size])
    assert t.root == root(leaves[:size])
    for i in range(size):
        proof = t.inclusion_proof(i)
        verify_inclusion(index=i, size=size, leaf_hash=leaves[i], proof=proof, root=t.root)


@PROPS
@given(leaves=leaf_lists(), size=sizes, data=st.data())
def test_ranges_verify(leaves: list[bytes], size: int, data: st.DataObject) -> None:
    t = MerkleTree(leaves[:size])
    for _ in range(10):
        begin = data.draw(st.integers(0, size - 1))
        end = data.draw(st.integers(begin + 1, size))
        proof = t.range_proof(begin, end)
        assert len(proof) <= 2 * (size - 1).bit_length()
        verify_range(
            begin=begin,
            end=end,
            size=size,
            leaf_hashes=leaves[begin:end],
            proof=proof,
            root=t.root,
        )


@PROPS
@given(leaves=leaf_lists(), size=sizes, data=st.data())
def test_inclusion_any_single_bit_flip_fails(
    leaves: list[bytes], size: int, data: st.DataObject
) -> None:
    t = MerkleTree(leaves[:size])
    i = data.draw(st.integers(0, size - 1))
    args: dict[str, Any] = {
        "index": i,
        "size": size,
        "leaf_hash": leaves[i],
        "proof": t.inclusion_proof(i),
        "root": t.root,
    }
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1))
    target = data.draw(st.integers(-2, len(args["proof"]) - 1))
    if target == -2:
        args["leaf_hash"] = flip_bit(args["leaf_hash"], bit)
    elif target == -1:
        args["root"] = flip_bit(args["root"], bit)
    else:
        args["proof"] = list(args["proof"])
        args["proof"][target] = flip_bit(args["proof"][target], bit)
    with pytest.raises(ProofError):
        verify_inclusion(**args)


@PROPS
@given(leaves=leaf_lists(), size=sizes, data=st.data())
def test_range_any_single_bit_flip_fails(
    leaves: list[bytes], size: int, data: st.DataObject
) -> None:
    t = MerkleTree(leaves[:size])
    begin = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(begin + 1, min(size, begin + 40)))
    args: dict[str, Any] = {
        "begin": begin,
        "end": end,
        "size": size,
        "leaf_hashes": leaves[begin:end],
        "proof": t.range_proof(begin, end),
        "root": t.root,
    }
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1))
    kind = data.draw(st.sampled_from(["leaf", "root"] + (["proof"] if args["proof"] else [])))
    if kind == "root":
        args["root"] = flip_bit(args["root"], bit)
    else:
        hashes = list(args["leaf_hashes"] if kind == "leaf" else args["proof"])
        j = data.draw(st.integers(0, len(hashes) - 1))
        hashes[j] = flip_bit(hashes[j], bit)
        args["leaf_hashes" if kind == "leaf" else "proof"] = hashes
    with pytest.raises(ProofError):
        verify_range(**args)


@PROPS
@given(leaves=leaf_lists(), size=st.integers(2, MAX_SIZE), data=st.data())
def test_consistency_verifies_and_any_single_bit_flip_fails(
    leaves: list[bytes], size: int, data: st.DataObject
) -> None:
    t = MerkleTree(leaves[:size])
    size1 = data.draw(st.integers(1, size - 1))
    args: dict[str, Any] = {
        "size1": size1,
        "size2": size,
        "root1": root(leaves[:size1]),
        "root2": t.root,
        "proof": t.consistency_proof(size1),
    }
    verify_consistency(**args)
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1))
    target = data.draw(st.integers(-2, len(args["proof"]) - 1))
    if target < 0:
        key = "root1" if target == -2 else "root2"
        args[key] = flip_bit(args[key], bit)
    else:
        args["proof"] = list(args["proof"])
        args["proof"][target] = flip_bit(args["proof"][target], bit)
    with pytest.raises(ProofError):
        verify_consistency(**args)


@PROPS
@given(leaves=leaf_lists(), size=sizes, data=st.data())
def test_tampered_proof_lists_fail(leaves: list[bytes], size: int, data: st.DataObject) -> None:
    t = MerkleTree(leaves[:size])
    i = data.draw(st.integers(0, size - 1))
    for proof in tampered_lists(data.draw, t.inclusion_proof(i)):
        with pytest.raises(ProofError):
            verify_inclusion(index=i, size=size, leaf_hash=leaves[i], proof=proof, root=t.root)
    begin = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(begin + 1, size))
    for proof in tampered_lists(data.draw, t.range_proof(begin, end)):
        with pytest.raises(ProofError):
            verify_range(
                begin=begin,
                end=end,
                size=size,
                leaf_hashes=leaves[begin:end],
                proof=proof,
                root=t.root,
            )
    # The leaves of a range are tampered with the same way.
    for hashes in tampered_lists(data.draw, leaves[begin:end]):
        with pytest.raises(ProofError):
            verify_range(
                begin=begin,
                end=end,
                size=size,
                leaf_hashes=hashes,
                proof=t.range_proof(begin, end),
                root=t.root,
            )
    if size >= 2:
        size1 = data.draw(st.integers(1, size - 1))
        for proof in tampered_lists(data.draw, t.consistency_proof(size1)):
            with pytest.raises(ProofError):
                verify_consistency(
                    size1=size1, size2=size, root1=root(leaves[:size1]), root2=t.root, proof=proof
                )


@PROPS
@given(leaves=leaf_lists(), size=sizes, other_size=sizes, data=st.data())
def test_inclusion_proof_is_not_accepted_elsewhere(
    leaves: list[bytes], size: int, other_size: int, data: st.DataObject
) -> None:
    # Checked against the root of the tree the verifier is told about (as a signed checkpoint
    # would give it): a proof for leaf i of tree n never proves anything about another leaf or
    # another tree. (The size is bound by the checkpoint with the root, not by the proof.)
    t = MerkleTree(leaves[:size])
    i = data.draw(st.integers(0, size - 1))
    proof = t.inclusion_proof(i)
    j = data.draw(st.integers(0, size - 1).filter(lambda j: j != i)) if size > 1 else None
    if j is not None:
        for leaf_hash in (leaves[i], leaves[j]):
            with pytest.raises(ProofError):
                verify_inclusion(index=j, size=size, leaf_hash=leaf_hash, proof=proof, root=t.root)
    if other_size != size and i < other_size:
        with pytest.raises(ProofError):
            verify_inclusion(
                index=i,
                size=other_size,
                leaf_hash=leaves[i],
                proof=proof,
                root=root(leaves[:other_size]),
            )


@PROPS
@given(leaves=leaf_lists(), size=sizes, other_size=sizes, data=st.data())
def test_range_proof_is_not_accepted_elsewhere(
    leaves: list[bytes], size: int, other_size: int, data: st.DataObject
) -> None:
    t = MerkleTree(leaves[:size])
    begin = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(begin + 1, size))
    proof = t.range_proof(begin, end)
    begin2 = data.draw(st.integers(0, size - 1))
    end2 = data.draw(st.integers(begin2 + 1, size))
    if (begin2, end2) != (begin, end):
        for hashes in (leaves[begin2:end2], leaves[begin:end]):
            with pytest.raises(ProofError):
                verify_range(
                    begin=begin2, end=end2, size=size, leaf_hashes=hashes, proof=proof, root=t.root
                )
    if other_size != size and end <= other_size:
        with pytest.raises(ProofError):
            verify_range(
                begin=begin,
                end=end,
                size=other_size,
                leaf_hashes=leaves[begin:end],
                proof=proof,
                root=root(leaves[:other_size]),
            )


# --- 4. Malformed input raises ProofError, and nothing else --------------------------------------

GOOD = blake3_leaves(11)
GOOD_TREE = MerkleTree(GOOD)


def valid_calls() -> dict[str, tuple[Callable[..., object], dict[str, Any]]]:
    t = GOOD_TREE
    return {
        "root_from_inclusion_proof": (
            root_from_inclusion_proof,
            {"index": 5, "size": 11, "leaf_hash": GOOD[5], "proof": t.inclusion_proof(5)},
        ),
        "verify_inclusion": (
            verify_inclusion,
            {
                "index": 5,
                "size": 11,
                "leaf_hash": GOOD[5],
                "proof": t.inclusion_proof(5),
                "root": t.root,
            },
        ),
        "root_from_range_proof": (
            root_from_range_proof,
            {
                "begin": 3,
                "end": 9,
                "size": 11,
                "leaf_hashes": GOOD[3:9],
                "proof": t.range_proof(3, 9),
            },
        ),
        "verify_range": (
            verify_range,
            {
                "begin": 3,
                "end": 9,
                "size": 11,
                "leaf_hashes": GOOD[3:9],
                "proof": t.range_proof(3, 9),
                "root": t.root,
            },
        ),
        "verify_consistency": (
            verify_consistency,
            {
                "size1": 6,
                "size2": 11,
                "root1": root(GOOD[:6]),
                "root2": t.root,
                "proof": t.consistency_proof(6),
            },
        ),
        "MerkleTree.inclusion_proof": (t.inclusion_proof, {"index": 5}),
        "MerkleTree.range_proof": (t.range_proof, {"begin": 3, "end": 9}),
        "MerkleTree.consistency_proof": (t.consistency_proof, {"size1": 6}),
        "root": (lambda leaf_hashes: root(leaf_hashes), {"leaf_hashes": GOOD}),
        "MerkleTree": (lambda leaf_hashes: MerkleTree(leaf_hashes), {"leaf_hashes": GOOD}),
    }


@pytest.mark.parametrize("name", sorted(valid_calls()))
def test_valid_calls_are_valid(name: str) -> None:
    func, kwargs = valid_calls()[name]
    func(**kwargs)


def _bad_values() -> list[tuple[str, object]]:
    """(argument kind, value) pairs that are malformed for every argument of that kind."""
    h = GOOD[0]
    ints: list[object] = [-1, -(2**64), 2**64, 2**200, True, False, None, 1.0, "1", b"1", [1]]
    hashes: list[object] = [
        b"",
        h[:31],
        h + b"\x00",
        bytearray(h),
        memoryview(h),
        h.hex(),
        None,
        0,
        [h],
        (h,),
    ]
    lists: list[object] = [
        None,
        h,
        h.hex(),
        b"",
        0,
        {0: h},
        {h},
        iter([h]),
        [h[:31]],
        [bytearray(h)],
        [None],
        [h.hex()],
        [h, 0],
        [b""],
    ]
    return [("int", v) for v in ints] + [("hash", v) for v in hashes] + [("list", v) for v in lists]


ARG_KIND = {
    "index": "int",
    "size": "int",
    "begin": "int",
    "end": "int",
    "size1": "int",
    "size2": "int",
    "leaf_hash": "hash",
    "root": "hash",
    "root1": "hash",
    "root2": "hash",
    "proof": "list",
    "leaf_hashes": "list",
}


@pytest.mark.parametrize("name", sorted(valid_calls()))
def test_every_malformed_argument_raises_proof_error(name: str) -> None:
    func, kwargs = valid_calls()[name]
    for arg in kwargs:
        for kind, value in _bad_values():
            if kind != ARG_KIND[arg]:
                continue
            with pytest.raises(ProofError):
                func(**{**kwargs, arg: value})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"index": 11, "size": 11},  # index == size
        {"index": 0, "size": 0},  # empty tree has no leaves
        {"index": 2**64 - 1, "size": 2**64 - 1},
        {"index": 0, "size": MAX_TREE_SIZE + 1},
    ],
)
def test_inclusion_index_out_of_range(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ProofError):
        root_from_inclusion_proof(leaf_hash=GOOD[0], proof=[], **kwargs)


@pytest.mark.parametrize(
    ("begin", "end", "size"),
    [(3, 3, 11), (4, 3, 11), (0, 12, 11), (11, 12, 11), (0, 0, 0), (0, 1, 0), (-1, 1, 11)],
)
def test_range_bounds_out_of_range(begin: int, end: int, size: int) -> None:
    with pytest.raises(ProofError):
        root_from_range_proof(begin=begin, end=end, size=size, leaf_hashes=GOOD[:1], proof=[])
    if size == 11:
        with pytest.raises(ProofError):
            GOOD_TREE.range_proof(begin, end)


def test_range_wrong_number_of_leaves() -> None:
    proof = GOOD_TREE.range_proof(3, 9)
    for leaf_hashes in (GOOD[3:8], GOOD[3:10], [], GOOD):
        with pytest.raises(ProofError, match="leaf hashes"):
            root_from_range_proof(begin=3, end=9, size=11, leaf_hashes=leaf_hashes, proof=proof)


def test_consistency_sizes() -> None:
    r = GOOD_TREE.root
    with pytest.raises(ProofError):  # consistency with the empty tree proves nothing
        verify_consistency(size1=0, size2=11, root1=BLAKE3.empty_root(), root2=r, proof=[])
    with pytest.raises(ProofError):
        verify_consistency(size1=12, size2=11, root1=r, root2=r, proof=[])
    with pytest.raises(ProofError):  # equal sizes: no proof hashes allowed
        verify_consistency(size1=11, size2=11, root1=r, root2=r, proof=[r])
    with pytest.raises(ProofError):
        verify_consistency(size1=11, size2=11, root1=r, root2=GOOD[0], proof=[])
    verify_consistency(size1=11, size2=11, root1=r, root2=r, proof=[])
    for size1 in (0, 12, True):
        with pytest.raises(ProofError):
            GOOD_TREE.consistency_proof(size1)
    assert GOOD_TREE.consistency_proof(11) == []


def test_huge_sizes_do_not_overflow_or_recurse_too_deep() -> None:
    # A 2**64 - 1 leaf tree: the verifiers only walk its shape (64 levels), never its leaves.
    size = MAX_TREE_SIZE
    for index in (0, 2**63 - 1, 2**63, size - 2, size - 1):
        length = tree._inclusion_proof_length(index=index, size=size)
        assert length <= 64
        got = root_from_inclusion_proof(
            index=index, size=size, leaf_hash=GOOD[1], proof=[GOOD[0]] * length
        )
        assert len(got) == HASH_SIZE
    proof = [GOOD[0]] * 64
    # Beyond 2**64 - 1 sizes are refused up front (else the range walk would recurse too deep).
    with pytest.raises(ProofError, match="size"):
        root_from_range_proof(
            begin=0, end=1, size=2**3000, leaf_hashes=[GOOD[1]], proof=[GOOD[0]] * 3000
        )
    got = root_from_range_proof(
        begin=2**63,
        end=2**63 + 1,
        size=size,
        leaf_hashes=[GOOD[1]],
        proof=[GOOD[0]] * tree._inclusion_proof_length(index=2**63, size=size),
    )
    assert len(got) == HASH_SIZE
    with pytest.raises(ProofError):
        root_from_range_proof(begin=0, end=1, size=size, leaf_hashes=[GOOD[1]], proof=proof * 2)


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=4),
    st.binary(max_size=40),
    st.builds(bytearray, st.binary(min_size=32, max_size=32)),
    st.lists(st.one_of(st.binary(max_size=40), st.none(), st.integers()), max_size=6),
    st.tuples(st.binary(min_size=32, max_size=32)),
    st.dictionaries(st.integers(), st.binary(max_size=2), max_size=2),
)


@settings(max_examples=500, deadline=None)
@given(name=st.sampled_from(sorted(valid_calls())), data=st.data())
def test_fuzzed_arguments_raise_only_proof_error(name: str, data: st.DataObject) -> None:
    func, kwargs = valid_calls()[name]
    args = dict(kwargs)
    names = st.lists(st.sampled_from(sorted(kwargs)), min_size=1, max_size=len(kwargs), unique=True)
    for arg in data.draw(names):
        args[arg] = data.draw(st.one_of(junk, st.sampled_from([v for _, v in _bad_values()])))
    # ProofError is the only acceptable failure: anything else (IndexError, TypeError,
    # RecursionError, ...) propagates and fails the test.
    with contextlib.suppress(ProofError):
        func(**args)


# --- 5. Scale ----------------------------------------------------------------------------------


def test_root_of_two_million_leaves() -> None:
    leaves = [i.to_bytes(HASH_SIZE, "big") for i in range(2_000_000)]
    start = time.perf_counter()
    r = root(leaves)
    elapsed = time.perf_counter() - start
    print(f"root() of 2,000,000 leaf hashes: {elapsed:.2f} s")  # no timing assertion
    assert len(r) == HASH_SIZE
    # Spot check against the recursive definition on the two halves (2**20 + the rest).
    assert r == BLAKE3.node_hash(root(leaves[: 2**20]), root(leaves[2**20 :]))
