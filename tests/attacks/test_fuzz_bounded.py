"""Bounded fuzzing of the seal's trust chain in the normal suite (T8, T9, T12 of
docs/threat-model.md), filling what tests/formats/test_seal.py (the decoder alone) and
tests/test_properties.py (single bit flips) leave open:

* structural mutations of a whole seal (insert, delete, overwrite, truncate, duplicate a
  range) through decode -> signature -> checkpoint -> leaf table -> verify;
* texts that the trusted key did sign but that are not checkpoints (a mutated line of a real
  checkpoint, or any bytes): the parser after the signature;
* leaf tables a trusted (but buggy or foreign) sealer signed with a correct root, whose records
  break docs/format.md §4.1 or §3.2: the record decoder and the order check after the root.

Every property: only merkle_backup errors (``Error``); anything else fails with its traceback.
The atheris harnesses in tests/fuzz run the same targets for longer.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merkle_backup.builder import seal_backup
from merkle_backup.core import tree
from merkle_backup.core.checkpoint import parse_checkpoint
from merkle_backup.core.leaf import decode_record
from merkle_backup.errors import Error
from merkle_backup.formats.seal import SealFile, decode_seal, encode_seal
from merkle_backup.signing import public_key_of, sign
from merkle_backup.storage.local import LocalBackup
from merkle_backup.trust import open_seal
from merkle_backup.verifier import verify_backup
from tests.attacks import gotar
from tests.attacks.helpers import tarball
from tests.conftest import copy_backup

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TRUSTED = [public_key_of(KEY, "test key")]
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclasses.dataclass(frozen=True)
class Small:
    source: LocalBackup
    seal: bytes
    decoded: SealFile


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Small:
    """demo-small's first 8 Go-written members and its velero-backup.json, sealed."""
    folder = copy_backup("demo-small", tmp_path_factory.mktemp("small"))
    for p in folder.iterdir():
        if p.name not in ("velero-backup.json", "demo-small.tar.gz"):
            p.unlink()
    gotar.store(tarball(folder), gotar.load(tarball(folder))[:8])
    source = LocalBackup(folder)
    result = seal_backup(source, KEY, created_at=datetime(2026, 11, 28, 12, tzinfo=timezone.utc))
    seal_bytes = source.seal_path.read_bytes()
    assert len(seal_bytes) == result.seal_size
    return Small(source, seal_bytes, decode_seal(seal_bytes))


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate", "duplicate"]))
        if kind == "set":
            data[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[i : i + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[i:]
        else:
            j = min(len(data), i + draw(st.integers(1, 64)))
            data[j:j] = data[i:j]
    return bytes(data)


@FUZZ
@given(data=st.data())
def test_t9_structural_mutations_of_a_seal(small: Small, data: st.DataObject) -> None:
    seal_bytes = data.draw(mutated(small.seal))
    try:
        report = verify_backup(small.source, TRUSTED, seal_bytes=seal_bytes)
    except Error:
        return
    # It verified: it holds exactly the signed checkpoint and the sealed leaves (a mutation can
    # only re-encode the same map, e.g. the version as a wider msgpack integer).
    decoded = decode_seal(seal_bytes)
    assert (decoded.checkpoint, decoded.leaves) == (small.decoded.checkpoint, small.decoded.leaves)
    assert report.verified


LINE_VALUES = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["", " ", "-", "0", "00", "-1", "9" * 20, "a" * 64, "A" * 64,
                     "2026-02-30T12:00:00Z", "2026-11-28T24:00:00Z", "0999-01-01T00:00:00Z",
                     "demo-small\r", "demo-small ", "\u00e9", "\x00"]),
)


@st.composite
def signed_texts(draw: st.DrawFn, checkpoint: bytes) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=600))
    lines = checkpoint.decode().split("\n")
    i = draw(st.integers(0, len(lines) - 1))
    label = lines[i].split(" ", 1)[0]
    lines[i] = draw(st.sampled_from([label + " ", "", label + "  "])) + draw(LINE_VALUES)
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@FUZZ
@given(data=st.data())
def test_t12_signed_texts_that_are_not_checkpoints(small: Small, data: st.DataObject) -> None:
    """The trusted key signed the text, so only the checkpoint parser stands in the way."""
    text = data.draw(signed_texts(small.decoded.checkpoint))
    seal_bytes = encode_seal(SealFile(text, sign(KEY, text), small.decoded.leaves))
    try:
        open_seal(seal_bytes, TRUSTED)
    except Error:
        return
    assert parse_checkpoint(text).body() == text  # accepted: exactly a checkpoint's bytes


@st.composite
def leaf_tables(draw: st.DrawFn, leaves: list[bytes]) -> list[bytes]:
    table = list(leaves)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["random", "flip", "swap", "duplicate", "cut"]))
        i = draw(st.integers(0, len(table) - 1)) if table else 0
        if op == "random" or not table:
            table.insert(i, draw(st.binary(max_size=160)))
        elif op == "flip" and table[i]:
            b = draw(st.integers(0, len(table[i]) - 1))
            flipped = table[i][b] ^ draw(st.integers(1, 255))
            table[i] = table[i][:b] + bytes([flipped]) + table[i][b + 1:]
        elif op == "swap" and len(table) > 1:
            j = (i + 1) % len(table)
            table[i], table[j] = table[j], table[i]
        elif op == "duplicate":
            table.insert(i, table[i])
        else:
            table[i] = table[i][: draw(st.integers(0, len(table[i])))]
    return table


@FUZZ
@given(data=st.data())
def test_t8_signed_leaf_tables_that_break_the_format(small: Small, data: st.DataObject) -> None:
    """A trusted sealer signed a correct root over a table whose records are malformed, out of
    order or duplicated: refused after the root matches, never a crash."""
    leaves = data.draw(leaf_tables(small.decoded.leaves))
    original = parse_checkpoint(small.decoded.checkpoint)
    root = tree.root([tree.BLAKE3.leaf_hash(leaf) for leaf in leaves])
    body = dataclasses.replace(original, tree_size=len(leaves), root=root).body()
    seal_bytes = encode_seal(SealFile(body, sign(KEY, body), leaves))
    try:
        open_seal(seal_bytes, TRUSTED)
    except Error:
        return
    records = [decode_record(leaf) for leaf in leaves]  # accepted: a valid table
    assert all(a.key < b.key for a, b in itertools.pairwise(records))
