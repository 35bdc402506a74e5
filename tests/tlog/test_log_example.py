"""docs/format.md §12.6 (the log's worked example) is reproduced here, independently of the
library, as tests/test_format_example.py does for §10.

A log of three entries: the seal of §10's checkpoint, its expiry and a tombstone, all by the
RFC 8032 TEST 1 key. Every byte is computed with hashlib, base64 and cryptography straight from
§12.1-12.3, then (1) required to equal what the library writes (``Log.append`` into a folder:
the entries, the entry bundle, the hash tile and the head, byte for byte) and (2) required to
appear verbatim in docs/format.md. Run `python -m tests.tlog.test_log_example` to print it.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.test_format_example import DOC, SEED, example

UID = "7d7a5a8e-3f7c-4c1e-9b1a-0c2f6a1d2e3f"
EXPIRATION = "2026-12-28T12:00:00Z"
FORGOTTEN = "2026-12-01T09:00:00Z"


def _sig_line(private: Ed25519PrivateKey, public: bytes, name: str, text: bytes) -> bytes:
    keyhash = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public).digest()[:4]
    return f"\u2014 {name} ".encode() + base64.b64encode(keyhash + private.sign(text)) + b"\n"


def log_example() -> dict:
    ex = example()
    private = Ed25519PrivateKey.from_private_bytes(SEED)
    public, key_id, root = ex["public"], ex["key_id"], ex["root"]
    keyhash = hashlib.sha256(b"merkle-backup\n\x01" + public).digest()[:4]
    seal = ex["body"] + b"\n" + "\u2014 merkle-backup ".encode() + base64.b64encode(
        keyhash + ex["signature"]) + b"\n"

    def entry(context: str, last: tuple[str, str]) -> bytes:
        body = "\n".join([context, "backup shop-nightly", f"uid {UID}", f"root {root.hex()}",
                          f"{last[0]} {last[1]}", f"key {key_id.hex()}"]).encode() + b"\n"
        return body + b"\n" + _sig_line(private, public, "merkle-backup", body)

    entries = [seal, entry("merkle-backup/expiry/v1", ("expiration", EXPIRATION)),
               entry("merkle-backup/tombstone/v1", ("created", FORGOTTEN))]
    leaves = [hashlib.sha256(b"\x00" + e).digest() for e in entries]
    node01 = hashlib.sha256(b"\x01" + leaves[0] + leaves[1]).digest()
    log_root = hashlib.sha256(b"\x01" + node01 + leaves[2]).digest()  # n = 3: k = 2
    origin = "merkle-backup.log/" + hashlib.sha256(public).hexdigest()[:16]
    body = f"{origin}\n3\n{base64.b64encode(log_root).decode()}\n".encode()
    head = body + b"\n" + _sig_line(private, public, origin, body)
    bundle = b"".join(len(e).to_bytes(2, "big") + e for e in entries)
    claim_text = (f"merkle-backup/claim/v1\norigin {origin}\nsize 0\nentries 3\n"
                  f"sha256 {hashlib.sha256(bundle).hexdigest()}\n").encode()
    claim_note = claim_text + b"\n" + _sig_line(private, public, origin, claim_text)
    return {
        "entries": entries, "leaves": leaves, "root": log_root, "origin": origin, "head": head,
        "tile": b"".join(leaves), "bundle": bundle, "claim_note": claim_note,
        "claim": len(claim_note).to_bytes(2, "big") + claim_note + bundle,
        "proof0": [leaves[1], leaves[2]],
    }


def test_library_writes_the_example(tmp_path: Path) -> None:
    from merkle_backup.signing import public_key_of
    from merkle_backup.tlog.entries import expiry_entry, seal_entry, tombstone_entry
    from merkle_backup.tlog.log import Log
    from merkle_backup.tlog.store import LocalLogStore
    from merkle_backup.tlog.tiles import index_path, tile_path

    ex, lx = example(), log_example()
    private = Ed25519PrivateKey.from_private_bytes(SEED)
    pub = public_key_of(private)
    t = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)  # noqa: E731
    ours = [seal_entry(ex["body"], ex["signature"], pub.raw),
            expiry_entry(private, "shop-nightly", UID, ex["root"], t(EXPIRATION), pub.key_id),
            tombstone_entry(private, "shop-nightly", UID, ex["root"], t(FORGOTTEN), pub.key_id)]
    assert ours == lx["entries"]
    log = Log(LocalLogStore(tmp_path / "log"), [pub], None)
    log.append(private, ours)
    assert tile_path(0, 0, 3) == "tile/0/000.p/3" and tile_path("entries", 0, 3) == "tile/entries/000.p/3"
    assert index_path(1234067) == "x001/x234/067"
    assert (tmp_path / "log" / "tile/0/000.p/3").read_bytes() == lx["tile"]
    assert (tmp_path / "log" / "tile/entries/000.p/3").read_bytes() == lx["bundle"]
    assert (tmp_path / "log" / "checkpoint").read_bytes() == lx["head"]
    assert (tmp_path / "log" / "pending/0").read_bytes() == lx["claim"]  # the signed claim
    head = log.head(check_state=False)
    assert head.root == lx["root"] and head.checkpoint.origin == lx["origin"]
    assert log.reader(3).inclusion_proof(0) == lx["proof0"]
    assert sorted(p.relative_to(tmp_path / "log").as_posix() for p in (tmp_path / "log").rglob("*")
                  if p.is_file() and p.name != ".lock") == [
        "checkpoint", "pending/0", "tile/0/000.p/3", "tile/entries/000.p/3"]


def test_doc_shows_the_example() -> None:
    assert render() in DOC.read_text(), \
        "docs/format.md §12.6 is stale: run python -m tests.tlog.test_log_example"


def _hex_lines(data: bytes) -> list[str]:
    h = data.hex()
    return [h[i : i + 96] for i in range(0, len(h), 96)]


def render() -> str:
    lx = log_example()
    names = ["seal (§10's checkpoint and signature)", f"expiry ({EXPIRATION})", f"tombstone ({FORGOTTEN})"]
    lines = ["The log of §10's key (the RFC 8032 TEST 1 key) after one append of three entries: the seal",
             "of §10's checkpoint, its expiry entry and a tombstone that forgets it. Each entry, as",
             "text (every line ends in LF; `—` is U+2014), its length and its leaf hash",
             "SHA-256(0x00 ‖ entry):", ""]
    for i, (name, e, leaf) in enumerate(zip(names, lx["entries"], lx["leaves"])):
        lines += [f"Entry {i}, {name}, {len(e)} bytes, leaf `{leaf.hex()}`:", "", "```",
                  e.decode().rstrip("\n"), "```", ""]
    lines += [
        f"Root (n = 3: SHA-256(0x01 ‖ SHA-256(0x01 ‖ L0 ‖ L1) ‖ L2)): `{lx['root'].hex()}`; origin "
        f"`{lx['origin']}` (SHA-256 of the raw public key, 16 hex digits).", "",
        f"`tile/0/000.p/3` ({len(lx['tile'])} bytes: L0 ‖ L1 ‖ L2), hex:", "", "```",
        *_hex_lines(lx["tile"]), "```", "",
        f"`tile/entries/000.p/3`, {len(lx['bundle'])} bytes: "
        + " ‖ ".join(f"`{len(e).to_bytes(2, 'big').hex()}` ‖ entry {i}" for i, e in enumerate(lx["entries"]))
        + f" (u16be length, then the entry's bytes); SHA-256 `{hashlib.sha256(lx['bundle']).hexdigest()}`.",
        "",
        "`checkpoint` (the head, §12.2):", "", "```", lx["head"].decode().rstrip("\n"), "```", "",
        f"The append also wrote `pending/0` (the claim, §12.4), {len(lx['claim'])} bytes: "
        f"`{len(lx['claim_note']).to_bytes(2, 'big').hex()}` ‖ the signed claim note below ‖ "
        "the bundle above. The claim note:", "", "```", lx["claim_note"].decode().rstrip("\n"),
        "```", "",
        "The inclusion proof of entry 0 in this head (what §11.6 embeds) is "
        f"[`{lx['proof0'][0].hex()}`, `{lx['proof0'][1].hex()}`] (L1, L2).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
