"""The proof file codec (docs/format.md §11.1): one msgpack map with exactly seven keys.

``GOLDEN_HEX`` is written by hand from the msgpack spec. Invalid files are built with ``raw_map``
and ``raw_array`` (entries written verbatim, so duplicate keys can be expressed); every malformed
input must raise FormatError and nothing else. verify_proof under mutation of a real, signed
proof file is in tests/test_proofs.py.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merkle_backup.errors import CannotCheck, FormatError
from merkle_backup.formats import proof as proof_module
from merkle_backup.formats.proof import (
    PROOF_MAGIC,
    PROOF_VERSION,
    NamespaceProof,
    ProofFile,
    ResourceProof,
    decode_proof,
    encode_proof,
)
from tests.conftest import short_id
from tests.mutate import mutate

H1, H2 = b"\x11" * 32, b"\x22" * 32
SMALL = ProofFile(
    checkpoint=b"cp\n",
    signature=bytes(64),
    resources=[ResourceProof(3, b"rec", [H1])],
    namespaces=[NamespaceProof("ns", 2, [b"r1", b"r2"], [H2])],
    contents={"a.json": b"{}"},
)

GOLDEN_HEX = "".join([
    "87",                                                               # fixmap, 7 entries
    ("a5" "6d61676963"),                                                # "magic":
    ("b3" "6d65726b6c652d6261636b75702d70726f6f66"),                    #   "merkle-backup-proof"
    ("a7" "76657273696f6e"), "01",                                      # "version": 1
    ("aa" "636865636b706f696e74"), ("c403" "63700a"),                   # "checkpoint": bin8 "cp\n"
    ("a9" "7369676e6174757265"), "c440" + "00" * 64,                    # "signature": 64 zero bytes
    ("a9" "7265736f7572636573"), ("91" "83"),                           # "resources": [ {3}
    ("a5" "696e646578"), "03",                                          #   "index": 3
    ("a6" "7265636f7264"), ("c403" "726563"),                           #   "record": b"rec"
    ("a5" "70726f6f66"), ("91" "c420" + "11" * 32),                     #   "proof": [H1] ]
    ("aa" "6e616d65737061636573"), ("91" "84"),                         # "namespaces": [ {4}
    ("a9" "6e616d657370616365"), ("a2" "6e73"),                         #   "namespace": "ns"
    ("a5" "626567696e"), "02",                                          #   "begin": 2
    ("a7" "7265636f726473"), ("92" "c402" "7231" "c402" "7232"),        #   "records": [r1, r2]
    ("a5" "70726f6f66"), ("91" "c420" + "22" * 32),                     #   "proof": [H2] ]
    ("a8" "636f6e74656e7473"),                                          # "contents":
    ("81" "a6" "612e6a736f6e" "c402" "7b7d"),                           #   {"a.json": b"{}"}
])


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


class Raw(bytes):
    """Already-encoded msgpack, written verbatim by raw_map / raw_array."""


def _enc(x: object) -> bytes:
    return bytes(x) if isinstance(x, Raw) else pack(x)


def raw_map(pairs: list[tuple[object, object]]) -> Raw:
    """A msgpack map with exactly these entries, in this order (duplicates allowed)."""
    n = len(pairs)
    header = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
    return Raw(header + b"".join(_enc(k) + _enc(v) for k, v in pairs))


def raw_array(items: list[object]) -> Raw:
    assert len(items) < 16
    return Raw(bytes([0x90 | len(items)]) + b"".join(_enc(i) for i in items))


def resource_fields(**changes: object) -> dict[str, object]:
    return {"index": 3, "record": b"rec", "proof": [H1], **changes}


def namespace_fields(**changes: object) -> dict[str, object]:
    return {"namespace": "ns", "begin": 2, "records": [b"r1", b"r2"], "proof": [H2], **changes}


def fields(**changes: object) -> dict[str, object]:
    return {"magic": PROOF_MAGIC, "version": PROOF_VERSION, "checkpoint": b"cp\n",
            "signature": bytes(64), "resources": [resource_fields()],
            "namespaces": [namespace_fields()], "contents": {"a.json": b"{}"}, **changes}


def without(obj: dict[str, object], key: str) -> dict[str, object]:
    return {k: v for k, v in obj.items() if k != key}


def assert_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode_proof(data)


# --- Golden and round trip ---------------------------------------------------------------------

def test_golden_encoding() -> None:
    golden = bytes.fromhex(GOLDEN_HEX)
    assert encode_proof(SMALL) == golden
    assert decode_proof(golden) == SMALL
    assert pack(fields()) == golden


def test_constants_match_spec() -> None:
    assert PROOF_MAGIC == "merkle-backup-proof" and PROOF_VERSION == 1
    assert proof_module.MAX_PROOF_HASHES == 128


@pytest.mark.parametrize("proof", [
    SMALL,
    ProofFile(b"c", bytes(range(64)), resources=[ResourceProof(0, b"", [])]),
    ProofFile(b"c", bytes(64), namespaces=[NamespaceProof("n", 0, [], [])]),
    ProofFile(b"x" * 4096, bytes(64),
              resources=[ResourceProof(2**64 - 1, b"r" * 70000, [H1] * 128)] * 3,
              namespaces=[NamespaceProof("é" * 100, 2**64 - 1, [b"r"] * 70000, [H2] * 128)],
              contents={f"p{i}": bytes([i]) * i for i in range(40)}),
], ids=["small", "resource-only", "namespace-only", "large"])
def test_round_trip(proof: ProofFile) -> None:
    encoded = encode_proof(proof)
    decoded = decode_proof(encoded)
    assert decoded == proof
    assert encode_proof(decoded) == encoded
    assert all(type(h) is bytes for r in decoded.resources for h in r.proof)
    assert all(type(r) is bytes for n in decoded.namespaces for r in n.records)


def test_contents_are_written_sorted() -> None:
    """One encoding per proof: the contents map is written in path order."""
    a = ProofFile(b"c", bytes(64), [ResourceProof(0, b"", [])], [], {"b": b"2", "a": b"1"})
    b = ProofFile(b"c", bytes(64), [ResourceProof(0, b"", [])], [], {"a": b"1", "b": b"2"})
    assert encode_proof(a) == encode_proof(b)


# --- Strict rejections -------------------------------------------------------------------------

@pytest.mark.parametrize("magic", ["merkle-backup-seal", "merkle-backup-proof2", "", None,
                                   b"merkle-backup-proof", "Merkle-backup-proof"], ids=short_id)
def test_wrong_magic(magic: object) -> None:
    assert_format_error(pack(fields(magic=magic)))


@pytest.mark.parametrize("version", [0, 2, -1, 2**64 - 1, True, 1.0, "1", b"\x01", None], ids=short_id)
def test_wrong_version(version: object) -> None:
    assert_format_error(pack(fields(version=version)))


def test_a_seal_file_is_not_a_proof_file() -> None:
    from merkle_backup.formats.seal import SealFile, encode_seal

    assert_format_error(encode_seal(SealFile(b"cp\n", bytes(64), [b"rec"])))


@pytest.mark.parametrize("key", list(fields()))
def test_missing_top_level_key(key: str) -> None:
    # "contents" too: §11.1 lists it among the "exactly these keys" (its *value* may be empty).
    assert_format_error(pack(without(fields(), key)))


@pytest.mark.parametrize("extra", [("extra", 1), ("Contents", {}), (b"magic", PROOF_MAGIC), (1, 1)],
                         ids=short_id)
def test_extra_top_level_key(extra: tuple[object, object]) -> None:
    assert_format_error(raw_map(list(fields().items()) + [extra]))


@pytest.mark.parametrize("key", list(resource_fields()))
def test_missing_key_in_resource_entry(key: str) -> None:
    assert_format_error(pack(fields(resources=[without(resource_fields(), key)])))


@pytest.mark.parametrize("key", list(namespace_fields()))
def test_missing_key_in_namespace_entry(key: str) -> None:
    assert_format_error(pack(fields(namespaces=[without(namespace_fields(), key)])))


@pytest.mark.parametrize("extra", [("size", 1), ("Index", 3), (b"index", 3)], ids=short_id)
def test_extra_key_in_entries(extra: tuple[object, object]) -> None:
    entry = raw_map(list(resource_fields().items()) + [extra])
    assert_format_error(raw_map(list(fields(resources=raw_array([entry])).items())))
    entry = raw_map(list(namespace_fields().items()) + [extra])
    assert_format_error(raw_map(list(fields(namespaces=raw_array([entry])).items())))


WRONG_TYPES: dict[str, dict[str, object]] = {
    "checkpoint-str": fields(checkpoint="cp\n"),
    "checkpoint-4097": fields(checkpoint=b"x" * 4097),
    "checkpoint-nil": fields(checkpoint=None),
    "signature-63": fields(signature=bytes(63)),
    "signature-65": fields(signature=bytes(65)),
    "signature-str": fields(signature="x" * 64),
    "resources-map": fields(resources={"0": resource_fields()}),
    "resources-nil": fields(resources=None),
    "resources-entry-list": fields(resources=[list(resource_fields().values())]),
    "resources-entry-nil": fields(resources=[None]),
    "index-negative": fields(resources=[resource_fields(index=-1)]),
    "index-str": fields(resources=[resource_fields(index="3")]),
    "index-bool": fields(resources=[resource_fields(index=True)]),
    "index-float": fields(resources=[resource_fields(index=3.0)]),
    "index-nil": fields(resources=[resource_fields(index=None)]),
    "record-str": fields(resources=[resource_fields(record="rec")]),
    "record-nil": fields(resources=[resource_fields(record=None)]),
    "record-list": fields(resources=[resource_fields(record=[b"rec"])]),
    "resource-proof-31": fields(resources=[resource_fields(proof=[b"\x11" * 31])]),
    "resource-proof-33": fields(resources=[resource_fields(proof=[b"\x11" * 33])]),
    "resource-proof-empty-hash": fields(resources=[resource_fields(proof=[b""])]),
    "resource-proof-str": fields(resources=[resource_fields(proof=["1" * 32])]),
    "resource-proof-bin": fields(resources=[resource_fields(proof=H1)]),
    "resource-proof-nil": fields(resources=[resource_fields(proof=None)]),
    "resource-proof-nested": fields(resources=[resource_fields(proof=[[H1]])]),
    "resource-proof-129": fields(resources=[resource_fields(proof=[H1] * 129)]),
    "namespace-empty": fields(namespaces=[namespace_fields(namespace="")]),
    "namespace-bin": fields(namespaces=[namespace_fields(namespace=b"ns")]),
    "namespace-int": fields(namespaces=[namespace_fields(namespace=1)]),
    "namespace-nil": fields(namespaces=[namespace_fields(namespace=None)]),
    "begin-negative": fields(namespaces=[namespace_fields(begin=-1)]),
    "begin-bool": fields(namespaces=[namespace_fields(begin=False)]),
    "begin-str": fields(namespaces=[namespace_fields(begin="2")]),
    "begin-float": fields(namespaces=[namespace_fields(begin=2.0)]),
    "records-bin": fields(namespaces=[namespace_fields(records=b"r1")]),
    "records-nil": fields(namespaces=[namespace_fields(records=None)]),
    "records-item-str": fields(namespaces=[namespace_fields(records=[b"r1", "r2"])]),
    "records-item-nil": fields(namespaces=[namespace_fields(records=[None])]),
    "namespace-proof-31": fields(namespaces=[namespace_fields(proof=[H2, b"\x22" * 31])]),
    "namespace-proof-129": fields(namespaces=[namespace_fields(proof=[H2] * 129)]),
    "namespace-proof-map": fields(namespaces=[namespace_fields(proof={"0": H2})]),
    "contents-list": fields(contents=[["a.json", b"{}"]]),
    "contents-nil": fields(contents=None),
    "contents-bin-key": fields(contents={b"a.json": b"{}"}),
    "contents-str-value": fields(contents={"a.json": "{}"}),
    "contents-int-value": fields(contents={"a.json": 0}),
    "nothing-proven": fields(resources=[], namespaces=[]),
}


@pytest.mark.parametrize("obj", list(WRONG_TYPES.values()), ids=list(WRONG_TYPES))
def test_wrong_types(obj: dict[str, object]) -> None:
    assert_format_error(pack(obj))


def test_exactly_128_hashes_are_accepted() -> None:
    decoded = decode_proof(pack(fields(resources=[resource_fields(proof=[H1] * 128)],
                                       namespaces=[namespace_fields(proof=[H2] * 128)])))
    assert len(decoded.resources[0].proof) == len(decoded.namespaces[0].proof) == 128


def test_ext_types_are_refused() -> None:
    assert_format_error(pack(fields(checkpoint=msgpack.ExtType(1, b"cp"))))
    assert_format_error(pack(fields(resources=[resource_fields(proof=[msgpack.ExtType(1, H1)])])))


@pytest.mark.parametrize("trailing", [b"\x00", b"\xc0", b"\x90", bytes.fromhex(GOLDEN_HEX)],
                         ids=short_id)
def test_trailing_bytes(trailing: bytes) -> None:
    assert_format_error(bytes.fromhex(GOLDEN_HEX) + trailing)


@pytest.mark.parametrize("obj", [list(fields().values()), b"proof", PROOF_MAGIC, 1, None, {}],
                         ids=short_id)
def test_not_a_proof_map(obj: object) -> None:
    assert_format_error(pack(obj))


def test_truncated_at_every_prefix_length() -> None:
    encoded = bytes.fromhex(GOLDEN_HEX)
    for n in range(len(encoded)):
        with pytest.raises(FormatError):
            decode_proof(encoded[:n])


def test_max_proof_bytes_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = encode_proof(SMALL)
    monkeypatch.setattr(proof_module, "MAX_PROOF_BYTES", len(encoded))
    assert decode_proof(encoded) == SMALL
    monkeypatch.setattr(proof_module, "MAX_PROOF_BYTES", len(encoded) - 1)
    assert_format_error(encoded)


def test_format_error_is_could_not_check() -> None:
    assert issubclass(FormatError, CannotCheck) and FormatError("x").exit_code == 3


@pytest.mark.parametrize("where", ["top-level", "resource", "namespace", "contents"])
def test_duplicate_keys_are_refused(where: str) -> None:
    """A key twice (last one wins in msgpack) would give one file two readings."""
    top = list(fields().items())
    if where == "top-level":
        data = raw_map(top + [("contents", {"a.json": b"evil"})])
    elif where == "resource":
        entry = raw_map(list(resource_fields().items()) + [("index", 4)])
        data = raw_map(list(fields(resources=raw_array([entry])).items()))
    elif where == "namespace":
        entry = raw_map(list(namespace_fields().items()) + [("namespace", "other")])
        data = raw_map(list(fields(namespaces=raw_array([entry])).items()))
    else:
        contents = raw_map([("a.json", b"{}"), ("a.json", b"evil")])
        data = raw_map(list(fields(contents=contents).items()))
    assert_format_error(data)


# --- Fuzzing -----------------------------------------------------------------------------------

def _decode_or_format_error(data: bytes) -> ProofFile | None:
    try:
        proof = decode_proof(data)
    except FormatError:
        return None
    assert type(proof.checkpoint) is bytes and len(proof.checkpoint) <= 4096
    assert type(proof.signature) is bytes and len(proof.signature) == 64
    assert proof.resources or proof.namespaces
    for r in proof.resources:
        assert type(r.index) is int and r.index >= 0 and type(r.record) is bytes
        assert len(r.proof) <= 128 and all(type(h) is bytes and len(h) == 32 for h in r.proof)
    for n in proof.namespaces:
        assert type(n.namespace) is str and n.namespace
        assert type(n.begin) is int and n.begin >= 0
        assert all(type(r) is bytes for r in n.records)
        assert len(n.proof) <= 128 and all(type(h) is bytes and len(h) == 32 for h in n.proof)
    assert all(type(k) is str and type(v) is bytes for k, v in proof.contents.items())
    return proof


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_mutations_decode_or_raise_format_error(data: st.DataObject) -> None:
    _decode_or_format_error(mutate(bytes.fromhex(GOLDEN_HEX), data))


_values: Any = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40)
    | st.text(max_size=10) | st.sampled_from([H1, PROOF_MAGIC, 1, b"rec"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["index", "record", "proof", "namespace", "begin", "records", "x"]),
        inner, max_size=5),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(list(fields()) + ["x"]), _values, max_size=8), st.data())
def test_random_structures(obj: dict[str, object], data: st.DataObject) -> None:
    base = fields()
    # Mostly valid envelopes, so the entries themselves get fuzzed.
    for key in ("magic", "version", "checkpoint", "signature"):
        if key not in obj and data.draw(st.booleans()):
            obj[key] = base[key]
    if _decode_or_format_error(pack(obj)) is not None:
        assert set(obj) == set(base)
