"""The seal file codec (docs/format.md §7.1): one msgpack map with exactly five keys.

``GOLDEN_HEX`` is written by hand from the msgpack spec. Invalid seals are built with ``raw_map``,
which writes map entries verbatim, so that duplicate keys and mixed key types can be expressed;
every malformed input must raise FormatError and nothing else.
"""

from __future__ import annotations

import itertools
import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merkle_backup.errors import CannotCheck, FormatError
from merkle_backup.formats import seal as seal_module
from merkle_backup.formats.seal import SEAL_MAGIC, SEAL_VERSION, SealFile, decode_seal, encode_seal
from tests.conftest import short_id
from tests.mutate import mutate

SIGNATURE = bytes(range(64))
SMALL = SealFile(checkpoint=b"cp\n", signature=bytes(64), leaves=[b"r1", b""])

GOLDEN_PARTS = (
    ("85", ""),                                               # fixmap, 5 entries
    ("a5", "6d61676963"),                                     # "magic"
    ("b2", "6d65726b6c652d6261636b75702d7365616c"),           # "merkle-backup-seal" (18)
    ("a7", "76657273696f6e"), ("01", ""),                     # "version": 1
    ("aa", "636865636b706f696e74"), ("c403", "63700a"),       # "checkpoint": bin8 "cp\n"
    ("a9", "7369676e6174757265"), ("c440", "00" * 64),        # "signature": bin8, 64 zero bytes
    ("a6", "6c6561766573"), ("92", ""),                       # "leaves": array of 2
    ("c402", "7231"), ("c400", ""),                           #   b"r1", b""
)
GOLDEN_HEX = "".join(header + body for header, body in GOLDEN_PARTS)


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def fields(seal: SealFile = SMALL) -> dict[str, object]:
    return {"magic": SEAL_MAGIC, "version": 1, "checkpoint": seal.checkpoint,
            "signature": seal.signature, "leaves": seal.leaves}


class Raw(bytes):
    """Already-encoded msgpack, written verbatim by raw_map."""


def raw_map(pairs: list[tuple[object, object]]) -> bytes:
    """A msgpack map with exactly these entries, in this order (duplicates allowed)."""
    n = len(pairs)
    header = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
    encode = lambda x: bytes(x) if isinstance(x, Raw) else pack(x)
    return header + b"".join(encode(k) + encode(v) for k, v in pairs)


def seal_with(**changes: object) -> bytes:
    obj = fields()
    for key, value in changes.items():
        obj[key] = value
    return pack(obj)


def seal_without(key: str) -> bytes:
    obj = fields()
    del obj[key]
    return pack(obj)


def assert_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode_seal(data)


# --- Golden and round trip -----------------------------------------------------------------------

def test_golden_encoding() -> None:
    golden = bytes.fromhex(GOLDEN_HEX)
    assert encode_seal(SMALL) == golden
    assert decode_seal(golden) == SMALL


def test_constants_match_spec() -> None:
    assert SEAL_MAGIC == "merkle-backup-seal"
    assert SEAL_VERSION == 2  # written for one key (3 for several, §7.5); 1, 2 and 3 are read
    assert seal_module.SEAL_VERSIONS == (1, 2, 3)
    assert seal_module.MAX_LEAVES == 10_000_000
    assert seal_module.MAX_CHECKPOINT_BYTES == 4096


@pytest.mark.parametrize(
    "seal",
    [
        SMALL,
        SealFile(b"", SIGNATURE, []),
        SealFile(b"x" * 4096, SIGNATURE, [b"a"]),
        SealFile(b"merkle-backup/checkpoint/v1\n", SIGNATURE, [bytes([i % 256]) * i for i in range(300)]),
        SealFile(b"c", SIGNATURE, [b"\x00" * 255, b"\x00" * 256, b"\x00" * 65535, b"\x00" * 65536]),
        SealFile(b"c", SIGNATURE, [b"leaf"] * 70000),  # array32
    ],
    ids=["small", "no-leaves", "max-checkpoint", "300-leaves", "bin8-16-32", "array32"],
)
def test_round_trip(seal: SealFile) -> None:
    encoded = encode_seal(seal)
    decoded = decode_seal(encoded)
    assert decoded == seal
    assert type(decoded.checkpoint) is bytes and type(decoded.signature) is bytes
    assert all(type(leaf) is bytes for leaf in decoded.leaves)
    assert encode_seal(decoded) == encoded


def test_key_order_is_free() -> None:
    """§7.1 fixes the keys, not their order: every permutation decodes to the same seal."""
    items = list(fields().items())
    for permutation in itertools.permutations(items):
        assert decode_seal(raw_map(list(permutation))) == SMALL


# --- Envelope ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "magic",
    ["", "merkle-backup-seal2", "Merkle-backup-seal", "merkle-backup-seal ", "merkle-backup-proof",
     b"merkle-backup-seal", None, 1, ["merkle-backup-seal"]],
    ids=short_id,
)
def test_wrong_magic(magic: object) -> None:
    assert_format_error(seal_with(magic=magic))


@pytest.mark.parametrize("version", [2, 3, 0, -1, 2**64 - 1, True, "1", b"\x01", 1.0, None, [1]],
                         ids=short_id)
def test_wrong_version(version: object) -> None:
    assert_format_error(seal_with(version=version))


@pytest.mark.parametrize("key", ["magic", "version", "checkpoint", "signature", "leaves"])
def test_missing_key(key: str) -> None:
    assert_format_error(seal_without(key))


@pytest.mark.parametrize(
    "extra",
    [("extra", 1), ("Magic", SEAL_MAGIC), ("leaves2", []), ("", None), (b"extra", b""),
     (b"magic", SEAL_MAGIC), (1, 1), (None, 1), (True, 1)],
    ids=short_id,
)
def test_extra_key(extra: tuple[object, object]) -> None:
    assert_format_error(raw_map(list(fields().items()) + [extra]))


def test_extra_keys_of_mixed_types() -> None:
    assert_format_error(raw_map(list(fields().items()) + [("x", 1), (b"y", 2)]))


@pytest.mark.parametrize(
    "duplicate",
    [("leaves", [b"other"]), ("checkpoint", b"other"), ("magic", SEAL_MAGIC), ("version", 1),
     ("signature", bytes(64))],
    ids=lambda d: d[0],
)
def test_duplicate_key(duplicate: tuple[str, object]) -> None:
    assert_format_error(raw_map(list(fields().items()) + [duplicate]))


# --- Field types ---------------------------------------------------------------------------------

WRONG_TYPES = {
    "checkpoint-str": {"checkpoint": "cp\n"},
    "checkpoint-int": {"checkpoint": 1},
    "checkpoint-nil": {"checkpoint": None},
    "checkpoint-list": {"checkpoint": [b"cp"]},
    "checkpoint-4097": {"checkpoint": b"x" * 4097},
    "checkpoint-1MiB": {"checkpoint": b"x" * 2**20},
    "signature-63": {"signature": bytes(63)},
    "signature-65": {"signature": bytes(65)},
    "signature-0": {"signature": b""},
    "signature-str": {"signature": "x" * 64},
    "signature-list": {"signature": list(range(64))},
    "signature-nil": {"signature": None},
    "leaves-bin": {"leaves": b"r1"},
    "leaves-str": {"leaves": "r1"},
    "leaves-map": {"leaves": {"0": b"r1"}},
    "leaves-nil": {"leaves": None},
    "leaves-int": {"leaves": 0},
    "leaf-str": {"leaves": [b"r1", "r2"]},
    "leaf-int": {"leaves": [1]},
    "leaf-nil": {"leaves": [None]},
    "leaf-list": {"leaves": [[b"r1"]]},
    "leaf-bool": {"leaves": [True]},
    "leaf-map": {"leaves": [{"a": b"b"}]},
}


@pytest.mark.parametrize("changes", list(WRONG_TYPES.values()), ids=list(WRONG_TYPES))
def test_wrong_types(changes: dict[str, object]) -> None:
    assert_format_error(seal_with(**changes))


def test_ext_types_are_refused() -> None:
    assert_format_error(seal_with(checkpoint=msgpack.ExtType(1, b"cp")))
    assert_format_error(seal_with(leaves=[msgpack.ExtType(5, b"r1")]))
    # a timestamp extension (type -1, fixext4) as the version
    assert_format_error(raw_map([(k, Raw(b"\xd6\xff\x00\x00\x00\x01") if k == "version" else v)
                                 for k, v in fields().items()]))


def test_invalid_utf8_in_magic_is_refused() -> None:
    golden = bytes.fromhex(GOLDEN_HEX)
    corrupted = golden.replace(b"merkle", b"\xfferkle", 1)
    assert_format_error(corrupted)


def test_invalid_utf8_in_a_key_is_refused() -> None:
    golden = bytes.fromhex(GOLDEN_HEX)
    assert_format_error(golden.replace(b"leaves", b"leave\xff", 1))


# --- Framing -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "trailing",
    [b"\x00", b"\xc0", b"\x90", b"\x80", b"\n", bytes.fromhex(GOLDEN_HEX), b"\x00" * 1000],
    ids=short_id,
)
def test_trailing_bytes(trailing: bytes) -> None:
    assert_format_error(bytes.fromhex(GOLDEN_HEX) + trailing)


@pytest.mark.parametrize(
    "obj",
    [list(fields().values()), list(fields().items()), b"seal", SEAL_MAGIC, 1, None, True, 1.5, {},
     {"magic": SEAL_MAGIC}],
    ids=short_id,
)
def test_not_a_seal_map(obj: object) -> None:
    assert_format_error(pack(obj))


def test_empty_input() -> None:
    assert_format_error(b"")


@pytest.mark.parametrize(
    "seal",
    [SMALL, SealFile(b"merkle-backup/checkpoint/v1\n" * 3, SIGNATURE, [b"a" * 300, b"b", b""])],
    ids=["small", "bin16-leaf"],
)
def test_truncated_at_every_prefix_length(seal: SealFile) -> None:
    encoded = encode_seal(seal)
    for n in range(len(encoded)):
        with pytest.raises(FormatError):
            decode_seal(encoded[:n])


@pytest.mark.parametrize(
    "header",
    [b"\xdd" + struct.pack(">I", 10_000_001), b"\xdd\xff\xff\xff\xff"],
    ids=["10M+1", "2^32-1"],
)
def test_leaf_count_over_limit_is_refused_without_allocating(header: bytes) -> None:
    prefix = raw_map([(k, v) for k, v in fields().items() if k != "leaves"])
    data = bytes([prefix[0] + 1]) + prefix[1:] + pack("leaves") + header
    assert_format_error(data)
    assert_format_error(data + b"\xc4\x00" * 1000)


def test_max_leaves_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seal_module, "MAX_LEAVES", 3)
    assert decode_seal(encode_seal(SealFile(b"c", SIGNATURE, [b"a"] * 3))).leaves == [b"a"] * 3
    assert_format_error(encode_seal(SealFile(b"c", SIGNATURE, [b"a"] * 4)))


def test_max_seal_bytes_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = encode_seal(SMALL)
    monkeypatch.setattr(seal_module, "MAX_SEAL_BYTES", len(encoded))
    assert decode_seal(encoded) == SMALL
    monkeypatch.setattr(seal_module, "MAX_SEAL_BYTES", len(encoded) - 1)
    assert_format_error(encoded)


@pytest.mark.parametrize("claim", [b"\xc6\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                                   b"\xdf\xff\xff\xff\xff", b"\xc9\xff\xff\xff\xff\x01"],
                         ids=["bin32", "str32", "map32", "ext32"])
def test_huge_length_claims_are_refused(claim: bytes) -> None:
    assert_format_error(claim)
    assert_format_error(raw_map(list(fields().items()))[:-1] + claim)


def test_deep_nesting_is_refused() -> None:
    assert_format_error(seal_with(leaves=[])[:-1] + b"\x91" * 100_000 + b"\x90")
    assert_format_error(b"\x81\xa1a" * 100_000 + b"\xc0")


def test_format_error_is_cannot_check() -> None:
    assert issubclass(FormatError, CannotCheck)
    assert FormatError("x").exit_code == 3


# --- Fuzzing -------------------------------------------------------------------------------------

def _decode_or_format_error(data: bytes) -> SealFile | None:
    try:
        seal = decode_seal(data)
    except FormatError:
        return None
    assert type(seal.checkpoint) is bytes and len(seal.checkpoint) <= 4096
    assert type(seal.signature) is bytes and len(seal.signature) == 64
    assert type(seal.leaves) is list and all(type(r) is bytes for r in seal.leaves)
    return seal


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _decode_or_format_error(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_after_a_valid_prefix(tail: bytes) -> None:
    golden = bytes.fromhex(GOLDEN_HEX)
    _decode_or_format_error(golden[: len(golden) // 2] + tail)
    _decode_or_format_error(golden + tail)


_MUTATION_SOURCES = [
    encode_seal(SMALL),
    encode_seal(SealFile(b"merkle-backup/checkpoint/v1\n", SIGNATURE, [b"a" * 20, b"b" * 300])),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_MUTATION_SOURCES), st.data())
def test_random_mutations_of_a_valid_seal(source: bytes, data: st.DataObject) -> None:
    _decode_or_format_error(mutate(source, data))


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.binary(max_size=70) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["magic", "version", "checkpoint", "signature", "leaves", "x", ""]),
        _values | st.sampled_from([SEAL_MAGIC, 1, bytes(64), [b"r"], b"cp"]),
        max_size=7,
    )
)
def test_random_maps(obj: dict[str, object]) -> None:
    seal = _decode_or_format_error(pack(obj))
    if seal is not None:
        assert obj["magic"] == SEAL_MAGIC and obj["version"] == 1 and len(obj) == 5
