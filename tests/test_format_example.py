"""docs/format.md §10 (the worked example) is reproduced here, independently of the library.

Every value is computed with struct, blake3 and cryptography straight from the spec's text, then
(1) checked against the library's own encoding and (2) required to appear verbatim in
docs/format.md. Run `python -m tests.test_format_example` to print the section afresh.
"""

from __future__ import annotations

import struct
from datetime import datetime, timezone
from pathlib import Path

import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from merkle_backup.core import tree
from merkle_backup.core.checkpoint import Checkpoint
from merkle_backup.core.keys import key_for_tar_path
from merkle_backup.core.leaf import LeafRecord
from merkle_backup.formats.seal import SealFile, decode_seal, encode_seal

DOC = Path(__file__).parent.parent / "docs" / "format.md"
# RFC 8032 §7.1 TEST 1 secret key: deterministic signatures.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
ENTRIES = [
    ("metadata/version", b"1.1.0\n"),
    ("resources/namespaces/cluster/shop.json", b'{"kind":"Namespace","metadata":{"name":"shop"}}'),
    ("resources/configmaps/namespaces/shop/app.json",
     b'{"data":{"color":"blue"},"kind":"ConfigMap","metadata":{"name":"app","namespace":"shop"}}'),
]
ARCHIVE_DIGEST = blake3.blake3(b"example archive bytes").digest()  # stands for H(file)
ARCHIVE_SIZE = 1234
CREATED = "2026-11-28T12:00:00Z"


def lp(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def naive_record(key: tuple[str, ...], path: str, content: bytes) -> bytes:
    return b"".join(lp(c) for c in key) + lp(path) + struct.pack(">Q", len(content)) + blake3.blake3(content).digest()


NAIVE_KEYS = {  # docs/format.md §3.1, written out by hand
    "metadata/version": ("", "", "metadata", "version", ""),
    "resources/namespaces/cluster/shop.json": ("shop", "namespaces", "cluster", "shop", ""),
    "resources/configmaps/namespaces/shop/app.json": ("shop", "configmaps", "namespaces", "app", ""),
}


def example() -> dict:
    items = sorted((NAIVE_KEYS[p], p, c) for p, c in ENTRIES)  # §3.2 order
    records = [naive_record(k, p, c) for k, p, c in items]
    leaf_hashes = [blake3.blake3(b"\x00" + r).digest() for r in records]
    # n = 3: k = 2, MTH = H(0x01 ‖ H(0x01 ‖ L0 ‖ L1) ‖ L2)
    left = blake3.blake3(b"\x01" + leaf_hashes[0] + leaf_hashes[1]).digest()
    root = blake3.blake3(b"\x01" + left + leaf_hashes[2]).digest()
    private = Ed25519PrivateKey.from_private_bytes(SEED)
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    import hashlib

    key_id = hashlib.sha256(public).digest()
    body = (
        "merkle-backup/checkpoint/v1\n"
        "backup shop-nightly\n"
        "uid 7d7a5a8e-3f7c-4c1e-9b1a-0c2f6a1d2e3f\n"
        f"tree-size {len(records)}\n"
        f"root {root.hex()}\n"
        f"archive-blake3 {ARCHIVE_DIGEST.hex()}\n"
        f"archive-size {ARCHIVE_SIZE}\n"
        f"created {CREATED}\n"
        f"key {key_id.hex()}\n"
        "inconsistent 0\n"
    ).encode()
    signature = private.sign(body)
    return {"items": items, "records": records, "leaf_hashes": leaf_hashes, "root": root,
            "public": public, "key_id": key_id, "body": body, "signature": signature}


def naive_v2_seal(checkpoint: bytes, signature: bytes, records: list[bytes]) -> tuple[bytes, bytes]:
    """(leaf section, seal file) of §7.4 and §7.1, msgpack written out by hand from its spec:
    fixmap of 5; fixstr keys; version a positive fixint; bin8/bin16 by length; fixarray."""
    def fixstr(text: str) -> bytes:
        return bytes([0xA0 | len(text)]) + text.encode()

    def binary(data: bytes) -> bytes:
        return (bytes([0xC4, len(data)]) if len(data) < 256 else b"\xc5" + struct.pack(">H", len(data))) + data

    section = b"".join(binary(r) for r in records)
    seal = (b"\x85" + fixstr("magic") + fixstr("merkle-backup-seal") + fixstr("version") + b"\x02"
            + fixstr("checkpoint") + binary(checkpoint) + fixstr("signature") + binary(signature)
            + fixstr("leaves") + bytes([0x90 | len(records)]) + section)
    return section, seal


def example_v2() -> dict:
    """§10.2: the same leaves, sealed as version 2."""
    ex = example()
    section, _ = naive_v2_seal(b"", b"", ex["records"])
    leaves_digest = blake3.blake3(section).digest()
    v1 = ex["body"].decode()
    body = v1.replace("merkle-backup/checkpoint/v1\n", "merkle-backup/checkpoint/v2\n").replace(
        "\ncreated ", f"\nleaves-blake3 {leaves_digest.hex()}\ncreated ").encode()
    signature = Ed25519PrivateKey.from_private_bytes(SEED).sign(body)
    _, seal = naive_v2_seal(body, signature, ex["records"])
    return {**ex, "section": section, "leaves_digest": leaves_digest, "body": body,
            "signature": signature, "seal": seal}


def test_library_matches_the_naive_v2_example() -> None:
    """Version 2: the library writes the naive bytes, reads them back, and proves the table by
    the leaf section's hash (trust.py) once the archive is the signed one."""
    import io

    from merkle_backup.formats.seal import leaf_section
    from merkle_backup.signing import load_public_key
    from merkle_backup.trust import open_signed, open_table

    ex = example_v2()
    assert leaf_section(ex["records"]) == ex["section"]
    checkpoint = Checkpoint(
        backup="shop-nightly", uid="7d7a5a8e-3f7c-4c1e-9b1a-0c2f6a1d2e3f", tree_size=3,
        root=ex["root"], archive_digest=ARCHIVE_DIGEST, archive_size=ARCHIVE_SIZE,
        created=datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc), key_id=ex["key_id"],
        leaves_digest=ex["leaves_digest"],
    )
    assert checkpoint.body() == ex["body"] and checkpoint.version == 2
    assert encode_seal(SealFile(ex["body"], ex["signature"], ex["records"])) == ex["seal"]
    assert decode_seal(ex["seal"]).leaves == ex["records"]
    # The same key as a PEM file (tests/fixtures/seals), loaded as a user's --trust key is.
    public = load_public_key(Path(__file__).parent / "fixtures" / "seals" / "rfc8032-test1.pub")
    assert public.key_id == ex["key_id"]
    f = io.BytesIO(ex["seal"])
    seal = open_table(f, open_signed(f, [public]), archive=(ARCHIVE_DIGEST, ARCHIVE_SIZE))
    assert seal.table_proven and seal.archive_proven and seal.checkpoint == checkpoint
    f = io.BytesIO(ex["seal"])
    assert not open_table(f, open_signed(f, [public])).table_proven  # archive not given


def test_library_matches_the_naive_example() -> None:
    ex = example()
    records = sorted(
        (LeafRecord(key_for_tar_path(p), p, len(c), blake3.blake3(c).digest()) for p, c in ENTRIES),
        key=lambda r: r.key,
    )
    assert [r.encode() for r in records] == ex["records"]
    assert tree.root([tree.BLAKE3.leaf_hash(r) for r in ex["records"]]) == ex["root"]
    checkpoint = Checkpoint(
        backup="shop-nightly", uid="7d7a5a8e-3f7c-4c1e-9b1a-0c2f6a1d2e3f", tree_size=3,
        root=ex["root"], archive_digest=ARCHIVE_DIGEST, archive_size=ARCHIVE_SIZE,
        created=datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc), key_id=ex["key_id"],
    )
    assert checkpoint.body() == ex["body"]
    seal = encode_seal(SealFile(ex["body"], ex["signature"], ex["records"]))
    assert decode_seal(seal).leaves == ex["records"]


def test_doc_shows_the_example() -> None:
    doc = DOC.read_text()
    assert render() in doc, "docs/format.md §10 is stale: run python -m tests.test_format_example"
    assert render_v2() in doc, "docs/format.md §10.2 is stale: run python -m tests.test_format_example"


def _hex_lines(data: bytes) -> list[str]:
    text = data.hex()
    return [text[i : i + 96] for i in range(0, len(text), 96)]


def render_v2() -> str:
    ex = example_v2()
    lines = [
        "Leaf section (§7.4): each record above behind its `bin 8` header (`c4`, length), "
        f"{len(ex['section'])} bytes, hex:", "", "```", *_hex_lines(ex["section"]), "```", "",
        f"`leaves-blake3` = H(leaf section) = `{ex['leaves_digest'].hex()}`", "",
        "Checkpoint (§5.3):", "", "```", ex["body"].decode().rstrip("\n"), "```", "",
        f"Signature (§6): `{ex['signature'].hex()}`", "",
        f"Seal file (§7.1, version 2), {len(ex['seal'])} bytes, hex; the leaf section is its last "
        f"{len(ex['section'])} bytes:", "", "```", *_hex_lines(ex["seal"]), "```",
    ]
    return "\n".join(lines) + "\n"


def render() -> str:
    ex = example()
    lines = ["Inputs: the RFC 8032 §7.1 TEST 1 key (seed `" + SEED.hex() + "`), and these entries:", ""]
    for path, content in ENTRIES:
        lines.append(f"* `{path}`: `{content.decode().rstrip()}`" + (" + LF" if content.endswith(b"\n") else ""))
    lines += ["", "Leaf records in key order (§4.1), hex, and their leaf hashes (§4.2):", "", "```"]
    for (key, path, _), record, leaf_hash in zip(ex["items"], ex["records"], ex["leaf_hashes"]):
        lines += [f"key  {key}", f"rec  {record.hex()}", f"leaf {leaf_hash.hex()}", ""]
    lines[-1] = "```"
    seal = encode_seal(SealFile(ex["body"], ex["signature"], ex["records"]))
    lines += [
        "", f"Root (§4.3, n = 3): `{ex['root'].hex()}`", "",
        f"Public key (raw): `{ex['public'].hex()}`; key ID (§6): `{ex['key_id'].hex()}`", "",
        "Checkpoint (§5.1), with `archive-blake3` = H(\"example archive bytes\") and `archive-size` = 1234 "
        "standing in for a real tarball's:", "", "```", ex["body"].decode().rstrip("\n"), "```", "",
        f"Signature (§6): `{ex['signature'].hex()}`", "",
        f"Seal file (§7.1), {len(seal)} bytes, hex:", "", "```",
    ]
    hex_seal = seal.hex()
    lines += [hex_seal[i : i + 96] for i in range(0, len(hex_seal), 96)]
    lines.append("```")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
    print()
    print(render_v2(), end="")
