"""The signed checkpoint text (docs/format.md §5): exact bytes, strict parsing.

``EXPECTED_BODY`` is written by hand from §5.1. A parser "MUST accept only text that this
section produces byte for byte": every deviation below must raise CheckpointError, and no
single-byte change of a valid body may parse back to the same checkpoint.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from merkle_backup.core.checkpoint import (
    CONTEXT,
    UNKNOWN_UID,
    Checkpoint,
    CheckpointError,
    parse_checkpoint,
)
from tests.conftest import short_id

ROOT = bytes(range(32))
ARCHIVE = bytes.fromhex("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")
KEY_ID = bytes(range(0xE0, 0x100))
CREATED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)

EXAMPLE = Checkpoint(
    backup="demo-small",
    uid="3f2c8a9e-1b4d-4c6e-9f0a-7d5e2b1c8a34",
    tree_size=330,
    root=ROOT,
    archive_digest=ARCHIVE,
    archive_size=51234,
    created=CREATED,
    key_id=KEY_ID,
)
EXPECTED_BODY = (
    b"merkle-backup/checkpoint/v1\n"
    b"backup demo-small\n"
    b"uid 3f2c8a9e-1b4d-4c6e-9f0a-7d5e2b1c8a34\n"
    b"tree-size 330\n"
    b"root 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
    b"archive-blake3 af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262\n"
    b"archive-size 51234\n"
    b"created 2024-05-06T07:08:09Z\n"
    b"key e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\n"
    b"inconsistent 0\n"
)
LINES = EXPECTED_BODY.split(b"\n")[:-1]


def make(**changes: object) -> Checkpoint:
    fields = {"backup": EXAMPLE.backup, "uid": EXAMPLE.uid, "tree_size": EXAMPLE.tree_size,
                  "root": EXAMPLE.root, "archive_digest": EXAMPLE.archive_digest,
                  "archive_size": EXAMPLE.archive_size, "created": EXAMPLE.created, "key_id": EXAMPLE.key_id}
    fields.update(changes)
    return Checkpoint(**fields)  # type: ignore[arg-type]


def with_line(index: int, line: bytes) -> bytes:
    lines = list(LINES)
    lines[index] = line
    return b"\n".join(lines) + b"\n"


# --- Exact bytes and round trip ------------------------------------------------------------------

def test_body_is_exactly_the_spec_text() -> None:
    assert EXAMPLE.body() == EXPECTED_BODY
    assert len(LINES) == 10
    assert LINES[0] == CONTEXT.encode() == b"merkle-backup/checkpoint/v1"


def test_parse_round_trip() -> None:
    parsed = parse_checkpoint(EXPECTED_BODY)
    assert parsed == EXAMPLE
    assert parsed.body() == EXPECTED_BODY
    assert parsed.created.tzinfo is not None and parsed.created.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "changes, line_index, line",
    [
        ({"uid": UNKNOWN_UID}, 2, b"uid -"),
        ({"uid": "A"}, 2, b"uid A"),
        ({"uid": "a" * 64}, 2, b"uid " + b"a" * 64),
        ({"backup": "a"}, 1, b"backup a"),
        ({"backup": "a" * 253}, 1, b"backup " + b"a" * 253),
        ({"backup": "demo.v1-x"}, 1, b"backup demo.v1-x"),
        ({"tree_size": 0}, 3, b"tree-size 0"),
        ({"tree_size": 2**63 - 1}, 3, b"tree-size 9223372036854775807"),
        ({"archive_size": 0}, 6, b"archive-size 0"),
        ({"archive_size": 10}, 6, b"archive-size 10"),
        ({"created": datetime(1970, 1, 1, tzinfo=timezone.utc)}, 7, b"created 1970-01-01T00:00:00Z"),
        ({"created": datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)}, 7,
         b"created 9999-12-31T23:59:59Z"),
        ({"created": datetime(2024, 2, 29, 12, 0, 0, tzinfo=timezone.utc)}, 7,
         b"created 2024-02-29T12:00:00Z"),
        # the same instant in another representation of UTC renders as UTC
        ({"created": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(0), "GMT"))}, 7,
         b"created 2024-05-06T07:08:09Z"),
    ],
    ids=short_id,
)
def test_edge_values_render_and_round_trip(changes: dict, line_index: int, line: bytes) -> None:
    checkpoint = make(**changes)
    assert checkpoint.body() == with_line(line_index, line)
    assert parse_checkpoint(checkpoint.body()) == checkpoint


# --- Construction refuses values that have no text -----------------------------------------------

@pytest.mark.parametrize(
    "changes",
    [
        {"backup": ""}, {"backup": "Demo"}, {"backup": "-demo"}, {"backup": "demo-"},
        {"backup": "demo_x"}, {"backup": "démo"}, {"backup": "a" * 254}, {"backup": "demo\n"},
        {"backup": "demo x"}, {"backup": ".demo"},
        {"uid": ""}, {"uid": "-x"}, {"uid": "--"}, {"uid": "a" * 65}, {"uid": "a b"},
        {"uid": "a_b"}, {"uid": "a\n"}, {"uid": "ü"},
        {"root": ROOT[:31]}, {"root": ROOT + b"\x00"}, {"archive_digest": b""},
        {"key_id": KEY_ID[:16]},
        {"tree_size": -1}, {"tree_size": 2**63}, {"archive_size": -1}, {"archive_size": 2**64},
        {"created": datetime(2024, 5, 6, 7, 8, 9)},
        {"created": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))},
        {"created": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(seconds=-1)))},
    ],
    ids=short_id,
)
def test_invalid_fields_are_refused(changes: dict) -> None:
    with pytest.raises(CheckpointError):
        make(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"created": datetime(999, 1, 2, 3, 4, 5, tzinfo=timezone.utc)},   # %Y would not pad it
        {"created": datetime(2024, 5, 6, 7, 8, 9, 500, tzinfo=timezone.utc)},  # body() drops µs
        {"tree_size": True},
        {"archive_size": 10.0},
    ],
    ids=["year-999", "microseconds", "bool-tree-size", "float-archive-size"],
)
def test_values_without_a_canonical_text_are_refused(changes: dict) -> None:
    """Each of these once built a Checkpoint whose body() did not parse back to it."""
    with pytest.raises(CheckpointError):
        make(**changes)


# --- The parser accepts nothing else -------------------------------------------------------------

def _swap(i: int, j: int) -> bytes:
    lines = list(LINES)
    lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines) + b"\n"


def _drop(i: int) -> bytes:
    return b"\n".join(LINES[:i] + LINES[i + 1:]) + b"\n"


def _insert(i: int, line: bytes) -> bytes:
    return b"\n".join(LINES[:i] + [line] + LINES[i:]) + b"\n"


REJECTED = {
    # context line
    "context-v2": with_line(0, b"merkle-backup/checkpoint/v2"),
    "context-trailing-space": with_line(0, b"merkle-backup/checkpoint/v1 "),
    "context-upper": with_line(0, b"Merkle-backup/checkpoint/v1"),
    "context-empty": with_line(0, b""),
    "context-c2sp-origin": with_line(0, b"example.com/log"),
    "no-context": EXPECTED_BODY[len(LINES[0]) + 1:],
    "bom": b"\xef\xbb\xbf" + EXPECTED_BODY,
    "leading-newline": b"\n" + EXPECTED_BODY,
    # line structure
    **{f"missing-line-{i}": _drop(i) for i in range(1, 9)},
    **{f"extra-line-at-{i}": _insert(i, b"note hello") for i in range(1, 10)},
    **{f"duplicated-line-{i}": _insert(i, LINES[i]) for i in range(1, 9)},
    **{f"swapped-{i}-{i + 1}": _swap(i, i + 1) for i in range(1, 8)},
    "swapped-first-last": _swap(1, 8),
    "blank-line-at-end": EXPECTED_BODY + b"\n",
    "signature-appended": EXPECTED_BODY + b"\n\xe2\x80\x94 name AAAA\n",
    "missing-final-newline": EXPECTED_BODY[:-1],
    "crlf": EXPECTED_BODY.replace(b"\n", b"\r\n"),
    "cr-on-one-line": with_line(3, b"tree-size 330\r"),
    "cr-only": EXPECTED_BODY.replace(b"\n", b"\r"),
    "empty": b"",
    "newline-only": b"\n",
    "not-utf8": with_line(1, b"backup demo-\xff"),
    # labels and separators
    **{f"trailing-space-{i}": with_line(i, LINES[i] + b" ") for i in range(1, 9)},
    **{f"trailing-tab-{i}": with_line(i, LINES[i] + b"\t") for i in range(1, 9)},
    **{f"double-space-{i}": with_line(i, LINES[i].replace(b" ", b"  ", 1)) for i in range(1, 9)},
    **{f"tab-separator-{i}": with_line(i, LINES[i].replace(b" ", b"\t", 1)) for i in range(1, 9)},
    **{f"leading-space-{i}": with_line(i, b" " + LINES[i]) for i in range(1, 9)},
    **{f"label-upper-{i}": with_line(i, LINES[i][:1].upper() + LINES[i][1:]) for i in range(1, 9)},
    "label-underscore": with_line(3, b"tree_size 330"),
    "label-colon": with_line(1, b"backup: demo-small"),
    "empty-value-backup": with_line(1, b"backup "),
    "no-value-backup": with_line(1, b"backup"),
    # backup name and uid
    "backup-upper": with_line(1, b"backup Demo-small"),
    "backup-underscore": with_line(1, b"backup demo_small"),
    "backup-trailing-dash": with_line(1, b"backup demo-"),
    "backup-too-long": with_line(1, b"backup " + b"a" * 254),
    "backup-space": with_line(1, b"backup demo small"),
    "backup-nbsp": with_line(1, b"backup demo\xc2\xa0small"),
    "uid-empty": with_line(2, b"uid "),
    "uid-dash-x": with_line(2, b"uid -x"),
    "uid-too-long": with_line(2, b"uid " + b"a" * 65),
    "uid-underscore": with_line(2, b"uid a_b"),
    # decimals
    "tree-size-leading-zero": with_line(3, b"tree-size 0330"),
    "tree-size-00": with_line(3, b"tree-size 00"),
    "tree-size-plus": with_line(3, b"tree-size +330"),
    "tree-size-minus": with_line(3, b"tree-size -330"),
    "tree-size-minus-zero": with_line(3, b"tree-size -0"),
    "tree-size-hex": with_line(3, b"tree-size 0x14a"),
    "tree-size-exp": with_line(3, b"tree-size 3.3e2"),
    "tree-size-underscore": with_line(3, b"tree-size 3_30"),
    "tree-size-2^63": with_line(3, b"tree-size 9223372036854775808"),
    "tree-size-20-digits": with_line(3, b"tree-size 10000000000000000000"),
    "tree-size-arabic-digits": with_line(3, "tree-size ٣٣٠".encode()),
    "tree-size-fullwidth": with_line(3, "tree-size ３３０".encode()),
    "tree-size-empty": with_line(3, b"tree-size "),
    "archive-size-leading-zero": with_line(6, b"archive-size 051234"),
    "archive-size-space": with_line(6, b"archive-size 51 234"),
    # hex
    "root-upper": with_line(4, b"root " + ROOT.hex().upper().encode()),
    "root-one-upper": with_line(4, b"root 000102030405060708090A0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
    "root-63": with_line(4, b"root " + ROOT.hex()[:63].encode()),
    "root-65": with_line(4, b"root " + ROOT.hex().encode() + b"0"),
    "root-0x": with_line(4, b"root 0x" + ROOT.hex()[2:].encode()),
    "root-base64": with_line(4, b"root AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
    "archive-upper": with_line(5, b"archive-blake3 " + ARCHIVE.hex().upper().encode()),
    "archive-g": with_line(5, b"archive-blake3 g" + ARCHIVE.hex()[1:].encode()),
    "key-upper": with_line(8, b"key " + KEY_ID.hex().upper().encode()),
    "key-short": with_line(8, b"key " + KEY_ID.hex()[:62].encode()),
    "key-fullwidth-digit": with_line(8, "key ０".encode() + KEY_ID.hex()[1:].encode()),
    # time
    "created-offset": with_line(7, b"created 2024-05-06T07:08:09+00:00"),
    "created-offset-2h": with_line(7, b"created 2024-05-06T09:08:09+02:00"),
    "created-lower-z": with_line(7, b"created 2024-05-06T07:08:09z"),
    "created-no-z": with_line(7, b"created 2024-05-06T07:08:09"),
    "created-utc-word": with_line(7, b"created 2024-05-06T07:08:09 UTC"),
    "created-space": with_line(7, b"created 2024-05-06 07:08:09Z"),
    "created-lower-t": with_line(7, b"created 2024-05-06t07:08:09Z"),
    "created-fraction": with_line(7, b"created 2024-05-06T07:08:09.000Z"),
    "created-no-seconds": with_line(7, b"created 2024-05-06T07:08Z"),
    "created-one-digit-month": with_line(7, b"created 2024-5-06T07:08:09Z"),
    "created-unix": with_line(7, b"created 1714979289"),
    "created-feb-30": with_line(7, b"created 2024-02-30T07:08:09Z"),
    "created-feb-29-2023": with_line(7, b"created 2023-02-29T07:08:09Z"),
    "created-month-13": with_line(7, b"created 2024-13-06T07:08:09Z"),
    "created-hour-24": with_line(7, b"created 2024-05-06T24:00:00Z"),
    "created-leap-second": with_line(7, b"created 2024-06-30T23:59:60Z"),
    "created-year-0": with_line(7, b"created 0000-05-06T07:08:09Z"),
    "created-5-digit-year": with_line(7, b"created 12024-05-06T07:08:09Z"),
    "created-arabic-digits": with_line(7, "created ٢٠٢٤-05-06T07:08:09Z".encode()),
}


@pytest.mark.parametrize("body", list(REJECTED.values()), ids=list(REJECTED))
def test_parse_rejects(body: bytes) -> None:
    assert body != EXPECTED_BODY
    with pytest.raises(CheckpointError):
        parse_checkpoint(body)


def test_checkpoint_error_is_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)


def test_every_single_byte_change_of_the_example_is_refused_or_different() -> None:
    """Exhaustive over all positions and all 255 other byte values."""
    for i in range(len(EXPECTED_BODY)):
        for value in range(256):
            if value == EXPECTED_BODY[i]:
                continue
            mutated = EXPECTED_BODY[:i] + bytes([value]) + EXPECTED_BODY[i + 1:]
            try:
                parsed = parse_checkpoint(mutated)
            except CheckpointError:
                continue
            assert parsed != EXAMPLE, (i, value)
            assert parsed.body() == mutated, (i, value)


# --- Properties over random checkpoints ----------------------------------------------------------

_BACKUP = r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"
_UID = r"-|[A-Za-z0-9][A-Za-z0-9-]{0,63}"
_sizes = st.integers(0, 2**63 - 1) | st.sampled_from([0, 1, 9, 10, 2**63 - 1])
_hashes = st.binary(min_size=32, max_size=32)
_times = st.datetimes(
    min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)
).map(lambda d: d.replace(microsecond=0, tzinfo=timezone.utc))

checkpoints = st.builds(
    Checkpoint,
    backup=st.from_regex(_BACKUP, fullmatch=True) | st.sampled_from(["a", "demo-small", "x.y"]),
    uid=st.from_regex(_UID, fullmatch=True),
    tree_size=_sizes,
    root=_hashes,
    archive_digest=_hashes,
    archive_size=_sizes,
    created=_times,
    key_id=_hashes,
)


@settings(max_examples=100, deadline=None)
@given(checkpoints)
def test_random_checkpoints_round_trip(checkpoint: Checkpoint) -> None:
    body = checkpoint.body()
    assert parse_checkpoint(body) == checkpoint
    lines = body.decode().split("\n")
    assert lines[-1] == "" and len(lines) == 11
    assert [line.split(" ", 1)[0] for line in lines[1:-1]] == [
        "backup", "uid", "tree-size", "root", "archive-blake3", "archive-size", "created", "key",
        "inconsistent"]


@settings(max_examples=150, deadline=None)
@given(checkpoints, st.data())
def test_single_byte_change_is_refused_or_parses_to_another_checkpoint(
    checkpoint: Checkpoint, data: st.DataObject
) -> None:
    body = bytearray(checkpoint.body())
    index = data.draw(st.integers(0, len(body) - 1), label="index")
    body[index] = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]), label="byte")
    try:
        parsed = parse_checkpoint(bytes(body))
    except CheckpointError:
        return
    assert parsed != checkpoint
    assert parsed.body() == bytes(body)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_parse_raises_only_checkpoint_error(data: bytes) -> None:
    try:
        parsed = parse_checkpoint(data)
    except CheckpointError:
        return
    assert parsed.body() == data


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(LINES + [b"", b"note x", b"tree-size 1", b"uid -", b"\r"]),
                max_size=11))
def test_recombined_lines_parse_only_when_canonical(lines: list[bytes]) -> None:
    body = b"\n".join(lines) + b"\n"
    try:
        parsed = parse_checkpoint(body)
    except CheckpointError:
        return
    assert parsed.body() == body
    assert lines[0] == CONTEXT.encode() and len(lines) == 9


def test_inconsistent_count_is_signed_text() -> None:
    """The count of findings sealed with --force is the last line, parsed back exactly."""
    forced = make(inconsistent=3)
    assert forced.body() == EXPECTED_BODY.replace(b"inconsistent 0\n", b"inconsistent 3\n")
    assert parse_checkpoint(forced.body()).inconsistent == 3
    with pytest.raises(CheckpointError):
        parse_checkpoint(EXPECTED_BODY.replace(b"inconsistent 0\n", b"inconsistent -1\n"))
    with pytest.raises(CheckpointError):
        parse_checkpoint(EXPECTED_BODY.replace(b"inconsistent 0\n", b""))


# --- Version 2 (docs/format.md §5.3) -----------------------------------------------------------

LEAVES = bytes(range(0x40, 0x60))
EXAMPLE_V2 = make(leaves_digest=LEAVES)
EXPECTED_BODY_V2 = (
    b"merkle-backup/checkpoint/v2\n"
    + b"".join(line + b"\n" for line in LINES[1:7])
    + b"leaves-blake3 404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f\n"
    + b"".join(line + b"\n" for line in LINES[7:])
)


def test_v2_body_is_exactly_the_spec_text() -> None:
    assert EXAMPLE_V2.body() == EXPECTED_BODY_V2 and EXAMPLE_V2.version == 2
    assert EXAMPLE.version == 1
    assert len(EXPECTED_BODY_V2.split(b"\n")) == 12
    parsed = parse_checkpoint(EXPECTED_BODY_V2)
    assert parsed == EXAMPLE_V2 and parsed.body() == EXPECTED_BODY_V2


V2_LINES = EXPECTED_BODY_V2.split(b"\n")[:-1]


@pytest.mark.parametrize("text", [
    # version 2's lines under the version-1 context, and version 1's under version 2's
    b"merkle-backup/checkpoint/v1\n" + b"".join(line + b"\n" for line in V2_LINES[1:]),
    b"merkle-backup/checkpoint/v2\n" + b"".join(line + b"\n" for line in LINES[1:]),
    # the leaves line elsewhere, uppercase, short, twice
    b"\n".join(V2_LINES[:6] + [V2_LINES[7], V2_LINES[6]] + V2_LINES[8:]) + b"\n",
    EXPECTED_BODY_V2.replace(b"leaves-blake3 4041", b"leaves-blake3 4A41"),
    EXPECTED_BODY_V2.replace(b"leaves-blake3 4041", b"leaves-blake3 41"),
    b"\n".join(V2_LINES[:7] + [V2_LINES[6]] + V2_LINES[7:]) + b"\n",
], ids=["v2-as-v1", "v1-as-v2", "moved", "uppercase", "short", "twice"])
def test_v2_deviations_are_refused(text: bytes) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(text)


def test_v2_leaves_digest_is_32_bytes() -> None:
    with pytest.raises(CheckpointError):
        make(leaves_digest=b"\x00" * 31)
