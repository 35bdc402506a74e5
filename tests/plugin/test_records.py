"""The plugin's per-object records (docs/format.md §13.2-§13.4): exact text, strict parsing,
signatures, and the leaves object."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from merkle_backup.errors import FormatError, NotAuthentic
from merkle_backup.plugin import records
from merkle_backup.plugin.records import ObjectRecord
from merkle_backup.signing import public_key_of
from tests.conftest import short_id

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
RECORD = ObjectRecord("nightly", "2e242fc8-0e85-4f16-bc6e-9d5f38be1ce3", "nightly.tar.gz", 369400,
                      bytes(range(32)), 1_765_000_000_123_456_789, (322, bytes(32)), None)
TEXT = (b"merkle-backup.io/velero-plugin/record/v1\n"
        b"backup nightly\n"
        b"uid 2e242fc8-0e85-4f16-bc6e-9d5f38be1ce3\n"
        b"object nightly.tar.gz\n"
        b"size 369400\n"
        b"blake3 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
        b"leaves 322 0000000000000000000000000000000000000000000000000000000000000000\n"
        b"phase -\n"
        b"written 1765000000123456789\n")


def test_text_is_exactly_the_spec_and_parses_back() -> None:
    assert RECORD.text() == TEXT
    assert records.parse_text(TEXT) == RECORD


@pytest.mark.parametrize("bad", [
    TEXT.replace(b"/v1\n", b"/v2\n"),                       # another version
    TEXT.replace(b"size 369400", b"size 0369400"),          # leading zero
    TEXT.replace(b"size 369400", b"size  369400"),          # two spaces
    TEXT.replace(b"phase -\n", b""),                        # a line missing
    TEXT + b"extra 1\n",                                    # a line added
    TEXT.replace(b"object nightly.tar.gz", b"object a/b"),  # a path, not a name
    TEXT.replace(b"backup nightly", b"backup Nightly"),     # not a Backup name
    TEXT.replace(b"blake3 00", b"blake3 0"),                # short digest
    TEXT.replace(b"leaves 322 ", b"leaves x "),
    TEXT[:-1],                                              # no final newline
    TEXT.replace(b"nightly\n", "nightl\u00ff\n".encode()),  # not ASCII
], ids=short_id)
def test_anything_else_is_refused(bad: bytes) -> None:
    with pytest.raises(FormatError):
        records.parse_text(bad)


def test_signature_backup_and_object_are_checked() -> None:
    signed = records.signed_record(RECORD, KEY)
    trusted = [public_key_of(KEY)]
    assert records.open_record(signed, trusted, backup="nightly", obj="nightly.tar.gz") == RECORD
    with pytest.raises(NotAuthentic, match="not signed by a trusted key"):
        records.open_record(signed, [public_key_of(OTHER)], backup="nightly",
                            obj="nightly.tar.gz")
    with pytest.raises(NotAuthentic, match="is about"):
        records.open_record(signed, trusted, backup="nightly", obj="nightly-logs.gz")
    with pytest.raises(NotAuthentic, match="is about"):
        records.open_record(signed, trusted, backup="weekly", obj="nightly.tar.gz")
    forged = signed.replace(b"size 369400", b"size 369401")
    with pytest.raises(NotAuthentic):
        records.open_record(forged, trusted, backup="nightly", obj="nightly.tar.gz")


def test_leaves_object_round_trip_and_tamper() -> None:
    leaves = [b"a" * 40, b"", b"\x00" * 300]
    data = records.encode_leaves(leaves)
    record = _leaves_record(data, len(leaves))
    assert records.decode_leaves(data, record) == leaves
    with pytest.raises(NotAuthentic):
        records.decode_leaves(data + b"\x00", record)
    with pytest.raises(FormatError):
        records.decode_leaves(data, _leaves_record(data, 2))


def _leaves_record(data: bytes, count: int) -> ObjectRecord:
    import blake3

    return ObjectRecord("n", "u", "n.tar.gz", 1, bytes(32), 1,
                        (count, blake3.blake3(data).digest()))


def test_leaves_object_is_gzipped_and_v1_is_still_read() -> None:
    """v2 (what the plugin writes) is a gzip member, read by any gzip reader; v1, the plain
    array an earlier plugin wrote, decodes to the same leaves."""
    import gzip

    import msgpack

    leaves = [bytes([i % 7]) * 100 + i.to_bytes(4, "big") for i in range(1000)]
    data = records.encode_leaves(leaves)
    assert data.startswith(b"merkle-backup/plugin-leaves/v2\n")
    packed = msgpack.packb(leaves, use_bin_type=True)
    assert gzip.decompress(data[len(records.LEAVES_MAGIC):]) == packed
    assert len(data) < len(packed) / 3
    assert records.decode_leaves(data, _leaves_record(data, 1000)) == leaves
    v1 = b"merkle-backup/plugin-leaves/v1\n" + packed
    assert records.decode_leaves(v1, _leaves_record(v1, 1000)) == leaves


@pytest.mark.parametrize(("body", "says"), [
    (b"not gzip", "not exactly one whole gzip member"),
    (b"\x1f\x8b\x08\x00garbage garbage", "do not inflate"),
    (lambda g: g + g, "not exactly one whole gzip member"),
    (lambda g: g[:-4], "not exactly one whole gzip member"),
    (lambda g: g + b"x", "not exactly one whole gzip member"),
], ids=["not-gzip", "bad-deflate", "two-members", "truncated", "trailing-byte"])
def test_leaves_object_that_is_not_one_gzip_member_is_refused(body, says) -> None:
    import gzip

    import msgpack

    member = gzip.compress(msgpack.packb([b"x"], use_bin_type=True))
    data = records.LEAVES_MAGIC + (body(member) if callable(body) else body)
    with pytest.raises(FormatError, match=says):
        records.decode_leaves(data, _leaves_record(data, 1))


def test_leaves_object_inflating_past_its_count_is_refused() -> None:
    """The inflated size is bounded by the signed count before msgpack sees it (a bomb of zeros
    signed by a key that signs junk stops at the bound, not at memory's end)."""
    import gzip

    data = records.LEAVES_MAGIC + gzip.compress(b"\x00" * (2 * (records.MAX_LEAF + 5) + 6))
    with pytest.raises(FormatError, match="inflate to more than"):
        records.decode_leaves(data, _leaves_record(data, 2))
