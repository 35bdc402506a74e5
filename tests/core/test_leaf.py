"""Leaf records (docs/format.md §4.1): encoding, strict decoding, and one golden record.

The golden record is written out by hand, field by field, from §4.1, and checked against a
second encoder built with ``struct`` here; neither shares code with ``merkle_backup.core.leaf``.
"""

from __future__ import annotations

import functools
import itertools
import struct
import tarfile
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merkle_backup.core.keys import ResourceKey, key_for_bucket_object, key_for_tar_path
from merkle_backup.core.leaf import LeafRecord, content_digest, decode_record
from merkle_backup.core.tree import BLAKE3
from tests.conftest import short_id

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "bucket" / "backups" / "demo-small"

# BLAKE3 of the empty input and of bytes(i % 251 for i in range(1023)), from the official
# test vectors (tests/vectors/blake3_test_vectors.json, "hash", first 32 bytes).
BLAKE3_EMPTY = bytes.fromhex("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")
BLAKE3_1023 = bytes.fromhex("10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11")
CONTENT_1023 = bytes(i % 251 for i in range(1023))


@functools.cache
def fixture_tar_paths() -> tuple[str, ...]:
    with tarfile.open(FIXTURE_DIR / "demo-small.tar.gz", "r:gz") as tar:
        return tuple(member.name for member in tar.getmembers())


def tar_record(path: str, content: bytes = b"x") -> LeafRecord:
    return LeafRecord(key_for_tar_path(path), path, len(content), content_digest(content))


def bucket_record(name: str, content: bytes = b"x") -> LeafRecord:
    return LeafRecord(key_for_bucket_object(name), name, len(content), content_digest(content))


# --- Golden ------------------------------------------------------------------------------------

GOLDEN_PATH = "resources/pods/v1-preferredversion/namespaces/demo/web-0.json"
GOLDEN_RECORD = LeafRecord(
    key=ResourceKey("demo", "pods", "namespaces", "web-0", "v1-preferredversion"),
    path=GOLDEN_PATH,
    size=1023,
    digest=BLAKE3_1023,
)
# Written by hand from §4.1: LP(s) = u16be(len) ‖ s, then u64be(size) ‖ H(content).
GOLDEN_PARTS = (
    ("0004", "64656d6f"),                                       # namespace "demo"
    ("0004", "706f6473"),                                       # resource "pods"
    ("000a", "6e616d65737061636573"),                           # scope "namespaces"
    ("0005", "7765622d30"),                                     # name "web-0"
    ("0013", "76312d707265666572726564766572736" + "96f6e"),    # version "v1-preferredversion"
    ("003d", "7265736f75726365732f706f64732f"                   # path (61 bytes): "resources/pods/"
             + "76312d707265666572726564766572736" + "96f6e2f"  #   "v1-preferredversion/"
             + "6e616d657370616365732f" + "64656d6f2f"          #   "namespaces/demo/"
             + "7765622d302e6a736f6e"),                         #   "web-0.json"
    ("", "00000000000003ff"),                                   # size 1023, u64be
    ("", "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"),  # BLAKE3(content)
)
GOLDEN_HEX = "".join(length + value for length, value in GOLDEN_PARTS)


def struct_encode(record: LeafRecord) -> bytes:
    """A second encoder, from §4.1."""
    out = b""
    for text in (*record.key.components(), record.path):
        raw = text.encode("utf-8")
        out += struct.pack(">H", len(raw)) + raw
    return out + struct.pack(">Q", record.size) + record.digest


def test_content_digest_is_blake3_256() -> None:
    assert content_digest(b"") == BLAKE3_EMPTY
    assert content_digest(CONTENT_1023) == BLAKE3_1023


def test_golden_record() -> None:
    golden = bytes.fromhex(GOLDEN_HEX)
    assert len(golden) == 6 * 2 + 4 + 4 + 10 + 5 + 19 + 61 + 8 + 32
    assert struct_encode(GOLDEN_RECORD) == golden
    assert GOLDEN_RECORD.encode() == golden
    assert decode_record(golden) == GOLDEN_RECORD
    assert key_for_tar_path(GOLDEN_PATH) == GOLDEN_RECORD.key
    # §4.2: the leaf hash is H(0x00 ‖ record)
    assert BLAKE3.leaf_hash(golden) == blake3.blake3(b"\x00" + golden).digest()


def test_encode_matches_struct_encoder_on_fixture() -> None:
    for path in fixture_tar_paths():
        record = tar_record(path)
        assert record.encode() == struct_encode(record)


# --- Round trip ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 255, 256, 2**32, 2**64 - 1])
def test_round_trip_sizes(size: int) -> None:
    record = LeafRecord(key_for_tar_path("metadata/version"), "metadata/version", size, BLAKE3_EMPTY)
    assert decode_record(record.encode()) == record


def test_round_trip_every_fixture_object() -> None:
    records = [tar_record(p, p.encode()) for p in fixture_tar_paths()]
    records += [
        bucket_record(p.name, p.name.encode())
        for p in FIXTURE_DIR.iterdir() if p.name != "demo-small.tar.gz"
    ]
    assert len(records) == 322 + 8
    for record in records:
        decoded = decode_record(record.encode())
        assert decoded == record
        assert decoded.is_bucket_object == (record.key.scope == "bucket")


def test_round_trip_non_ascii_name() -> None:
    path = "resources/configmaps/namespaces/ns/Ünïcödé-😀.json"
    record = tar_record(path)
    encoded = record.encode()
    assert decode_record(encoded) == record
    assert len("Ünïcödé-😀".encode()).to_bytes(2, "big") in encoded  # lengths count bytes


def test_field_longer_than_u16_is_refused() -> None:
    name = "a" * 65536
    record = LeafRecord(ResourceKey("", "pods", "cluster", name, ""),
                        f"resources/pods/cluster/{name}.json", 0, BLAKE3_EMPTY)
    with pytest.raises(ValueError):
        record.encode()


# --- Strict decoding ------------------------------------------------------------------------------

SAMPLES = [
    GOLDEN_RECORD,
    tar_record("metadata/version"),
    tar_record("resources/namespaces/cluster/payments-001.json"),
    bucket_record("velero-backup.json"),
]


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: r.path)
def test_truncation_at_every_length_is_refused(record: LeafRecord) -> None:
    encoded = record.encode()
    for n in range(len(encoded)):
        with pytest.raises(ValueError):
            decode_record(encoded[:n])


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: r.path)
@pytest.mark.parametrize("extra", [b"\x00", b"\xff", b"\x00" * 32, bytes.fromhex(GOLDEN_HEX)],
                         ids=short_id)
def test_trailing_bytes_are_refused(record: LeafRecord, extra: bytes) -> None:
    with pytest.raises(ValueError):
        decode_record(record.encode() + extra)


def test_digest_of_wrong_length_is_refused() -> None:
    golden = bytes.fromhex(GOLDEN_HEX)
    with pytest.raises(ValueError):
        decode_record(golden[:-1])
    with pytest.raises(ValueError):
        decode_record(golden + b"\x00")


def _with_key(record: LeafRecord, key: ResourceKey) -> bytes:
    return LeafRecord(key, record.path, record.size, record.digest).encode()


MISMATCHED = [
    # (path, key that is NOT its key)
    (GOLDEN_PATH, ResourceKey("other", "pods", "namespaces", "web-0", "v1-preferredversion")),
    (GOLDEN_PATH, ResourceKey("demo", "services", "namespaces", "web-0", "v1-preferredversion")),
    (GOLDEN_PATH, ResourceKey("demo", "pods", "cluster", "web-0", "v1-preferredversion")),
    (GOLDEN_PATH, ResourceKey("demo", "pods", "namespaces", "web-1", "v1-preferredversion")),
    (GOLDEN_PATH, ResourceKey("demo", "pods", "namespaces", "web-0", "")),
    (GOLDEN_PATH, ResourceKey("demo", "pods", "namespaces", "web-0", "v1")),
    (GOLDEN_PATH, ResourceKey("", "", "bucket", GOLDEN_PATH, "")),
    (GOLDEN_PATH, ResourceKey("", "", "metadata", "version", "")),
    # a Namespace object keyed as a plain cluster resource (out of its namespace's run)
    ("resources/namespaces/cluster/demo.json", ResourceKey("", "namespaces", "cluster", "demo", "")),
    ("resources/namespaces/cluster/demo.json", ResourceKey("demo", "namespaces", "cluster", "other", "")),
    ("resources/nodes/cluster/n1.json", ResourceKey("n1", "nodes", "cluster", "n1", "")),
    ("metadata/version", ResourceKey("", "", "bucket", "metadata/version", "")),
    ("metadata/version", ResourceKey("", "", "metadata", "version", "v1")),
    # a bucket object claimed as a tar entry and vice versa
    ("velero-backup.json", ResourceKey("", "", "metadata", "velero-backup.json", "")),
    ("velero-backup.json", ResourceKey("", "", "bucket", "demo-small-logs.gz", "")),
    ("velero-backup.json", ResourceKey("x", "", "bucket", "velero-backup.json", "")),
    ("velero-backup.json", ResourceKey("", "", "bucket", "velero-backup.json", "v")),
    # paths outside the layout, whatever the key
    ("resources/pods/cluster/.json", ResourceKey("", "pods", "cluster", "", "")),
    ("resources//cluster/a.json", ResourceKey("", "", "cluster", "a", "")),
    ("resources/pods/cluster/a\x00.json", ResourceKey("", "pods", "cluster", "a\x00", "")),
    ("resources/pods/cluster/cluster/a.json", ResourceKey("", "pods", "cluster", "a", "cluster")),
    ("../velero-backup.json", ResourceKey("", "", "bucket", "../velero-backup.json", "")),
]


@pytest.mark.parametrize(("path", "key"), MISMATCHED, ids=[f"{p}->{k}"[:90] for p, k in MISMATCHED])
def test_key_that_does_not_match_its_path_is_refused(path: str, key: ResourceKey) -> None:
    encoded = LeafRecord(key, path, 1, BLAKE3_EMPTY).encode()
    with pytest.raises(ValueError):
        decode_record(encoded)


def test_namespace_component_swapped_between_two_fixture_records() -> None:
    a = tar_record("resources/pods/namespaces/payments-001/exclusive-3.json")
    b = tar_record("resources/pods/namespaces/monitoring-000/flocker-web.json")
    swapped = ResourceKey(b.key.namespace, *a.key.components()[1:])
    with pytest.raises(ValueError):
        decode_record(_with_key(a, swapped))


def _field_offsets(encoded: bytes) -> list[tuple[int, int]]:
    """(start, length) of the 6 string fields of an encoded record."""
    offsets, offset = [], 0
    for _ in range(6):
        (length,) = struct.unpack_from(">H", encoded, offset)
        offsets.append((offset + 2, length))
        offset += 2 + length
    return offsets


@pytest.mark.parametrize("field", range(6), ids=["namespace", "resource", "scope", "name",
                                                  "version", "path"])
@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80"],
                         ids=["ff", "overlong", "surrogate", "continuation", "above-10ffff"])
def test_invalid_utf8_is_refused(field: int, bad: bytes) -> None:
    encoded = bytes.fromhex(GOLDEN_HEX)
    start, length = _field_offsets(encoded)[field]
    # Replace the field's first bytes with the invalid sequence, keeping every length intact.
    assert length >= len(bad)
    corrupted = encoded[:start] + bad + encoded[start + len(bad):]
    assert len(corrupted) == len(encoded)
    with pytest.raises(ValueError):
        decode_record(corrupted)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80"], ids=["ff", "overlong", "surrogate"])
def test_invalid_utf8_is_refused_even_when_key_and_path_agree(bad: bytes) -> None:
    """The same invalid bytes in the name and in the path: only strict UTF-8 decoding refuses."""
    name = b"web-0"
    broken = bad + name[1:]
    encoded = bytes.fromhex(GOLDEN_HEX)
    start, length = _field_offsets(encoded)[3]
    assert encoded[start : start + length] == name
    encoded = encoded.replace(b"\x00\x05" + name, struct.pack(">H", len(broken)) + broken, 1)
    path = GOLDEN_PATH.encode()
    corrupted = encoded.replace(struct.pack(">H", len(path)) + path,
                                struct.pack(">H", len(path) - 1 + len(bad))
                                + path.replace(b"/web-0", b"/" + broken), 1)
    assert corrupted.count(broken) == 2
    with pytest.raises(ValueError):
        decode_record(corrupted)


def test_length_prefix_pointing_past_the_end_is_refused() -> None:
    encoded = bytes.fromhex(GOLDEN_HEX)
    for field, (start, length) in enumerate(_field_offsets(encoded)):
        for new_length in (length + 1, length - 1, 0xFFFF):
            corrupted = encoded[: start - 2] + struct.pack(">H", new_length) + encoded[start:]
            with pytest.raises(ValueError):
                decode_record(corrupted)


# --- Records bind the path ------------------------------------------------------------------------

def test_fixture_records_with_same_content_are_all_distinct() -> None:
    content = b'{"kind": "ConfigMap"}'
    records = {tar_record(p, content).encode() for p in fixture_tar_paths()}
    assert len(records) == len(fixture_tar_paths())
    leaf_hashes = {BLAKE3.leaf_hash(r) for r in records}
    assert len(leaf_hashes) == len(records)


_names = st.text(alphabet="ab.-é ", min_size=1, max_size=4)
_labels = st.sampled_from(["a", "b", "a-b", "ab", "a0", "demo"])
_versions = st.sampled_from(["", "v1", "v1-preferredversion", "v1beta1"])


@st.composite
def _paths(draw: st.DrawFn) -> tuple[bool, str]:
    """(bucket object?, path) for a valid object."""
    kind = draw(st.integers(0, 4))
    v = draw(_versions)
    vdir = f"{v}/" if v else ""
    if kind == 0:
        return True, draw(st.sampled_from(["velero-backup.json", "a", "a.b", "b-c.gz"]))
    if kind == 1:
        return False, "metadata/version"
    if kind == 2:
        return False, f"resources/namespaces/{vdir}cluster/{draw(_labels)}.json"
    if kind == 3:
        return False, f"resources/{draw(_labels)}/{vdir}cluster/{draw(_names)}.json"
    return False, f"resources/{draw(_labels)}/{vdir}namespaces/{draw(_labels)}/{draw(_names)}.json"


def _record(case: tuple[bool, str], content: bytes) -> LeafRecord:
    bucket, path = case
    return bucket_record(path, content) if bucket else tar_record(path, content)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_paths(), _paths(), st.binary(max_size=64))
def test_record_for_x_never_equals_record_for_y(x: tuple[bool, str], y: tuple[bool, str],
                                                content: bytes) -> None:
    if x == y:
        return
    rx, ry = _record(x, content), _record(y, content)
    assert rx.encode() != ry.encode()
    assert BLAKE3.leaf_hash(rx.encode()) != BLAKE3.leaf_hash(ry.encode())
    assert decode_record(rx.encode()) == rx and decode_record(ry.encode()) == ry


@settings(max_examples=100, deadline=None)
@given(_paths(), st.binary(max_size=64), st.binary(max_size=64))
def test_records_differ_when_content_differs(x: tuple[bool, str], a: bytes, b: bytes) -> None:
    if a == b:
        return
    assert _record(x, a).encode() != _record(x, b).encode()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_only_to_canonical_records(data: bytes) -> None:
    try:
        record = decode_record(data)
    except ValueError:
        return
    assert record.encode() == data


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_records_fail_or_reencode_identically(record: LeafRecord, data: st.DataObject) -> None:
    encoded = bytearray(record.encode())
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] = data.draw(st.integers(0, 255).filter(lambda b: b != encoded[index]))
    try:
        decoded = decode_record(bytes(encoded))
    except ValueError:
        return
    assert decoded != record
    assert decoded.encode() == bytes(encoded)


def test_no_two_sample_records_share_an_encoding() -> None:
    for a, b in itertools.combinations(SAMPLES, 2):
        assert a.encode() != b.encode()
