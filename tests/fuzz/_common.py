"""Shared set-up for the atheris harnesses (tests/fuzz/README.md).

A small sealed backup, built once per fuzzing process with tests/tarcraft.py: a bare tarball in
the Velero layout (a PAX long name, a USTAR prefix, namespaces that touch neither edge of the
tree), its seal signed with a fixed key, and a proof file of one resource and two namespaces
with embedded content. The harnesses mutate the seal and the proof; the reader harness starts
from the tarball.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import tarcraft as tc

WHEN = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
LONG_NAME = "resources/services/namespaces/billing/" + "s" * 110 + ".json"

ENTRIES = [
    ("metadata/version", b"1.1.0\n"),
    ("resources/persistentvolumes/cluster/pv1.json",
     b'{"kind":"PersistentVolume","metadata":{"name":"pv1"}}'),
    ("resources/namespaces/cluster/app.json", b'{"kind":"Namespace","metadata":{"name":"app"}}'),
    ("resources/pods/namespaces/app/web.json",
     b'{"kind":"Pod","metadata":{"name":"web","namespace":"app"}}'),
    ("resources/pods/v1-preferredversion/namespaces/app/web.json",
     b'{"kind":"Pod","metadata":{"name":"web","namespace":"app"}}'),
    (LONG_NAME,
     b'{"kind":"Service","metadata":{"name":"' + b"s" * 110 + b'","namespace":"billing"}}'),
    ("resources/secrets/namespaces/billing/key.json",
     b'{"kind":"Secret","metadata":{"name":"key","namespace":"billing"}}'),
    ("resources/pods/namespaces/zeta/x.json",
     b'{"kind":"Pod","metadata":{"name":"x","namespace":"zeta"}}'),
]


def tar_parts() -> list[bytes]:
    """Each entry as Go writes it: USTAR, with a PAX header for the long name, a prefix split
    for the preferred-version copy."""
    parts = []
    for path, data in ENTRIES:
        if path == LONG_NAME:
            parts.append(tc.pax_header([("path", path)],
                                       name=b"resources/services/namespaces/billing/PaxHeaders.0/x"))
            parts.append(tc.entry(path[:100].encode(), data))
        elif len(path) > 100 or "preferredversion" in path:
            prefix, _, name = path.rpartition("/")
            parts.append(tc.entry(name, data, prefix=prefix))
        else:
            parts.append(tc.entry(path, data))
    return parts


TAR = tc.tar(*tar_parts())
TARGZ = tc.gzip_member(TAR)


@dataclass(frozen=True)
class Sealed:
    folder: Path
    tarball: Path
    seal: bytes
    proof: bytes
    leaves: list[bytes]
    checkpoint: bytes
    contents: dict[str, bytes]


def build_sealed() -> Sealed:
    from merkle_backup.builder import seal_backup
    from merkle_backup.formats.proof import encode_proof
    from merkle_backup.formats.seal import decode_seal
    from merkle_backup.proofs import prove
    from merkle_backup.storage.local import LocalBackup

    folder = Path(tempfile.mkdtemp(prefix="merkle-fuzz-"))
    tarball = folder / "fuzz-backup.tar.gz"
    tarball.write_bytes(TARGZ)
    source = LocalBackup(tarball)
    result = seal_backup(source, PRIVATE_KEY(), created_at=WHEN)
    proof = prove(LocalBackup(tarball), resources=["resources/secrets/namespaces/billing/key.json"],
                  namespaces=["app", "billing", "absent"], with_content=True, trusted=[TRUSTED()])
    seal_bytes = Path(result.seal_path).read_bytes()
    decoded = decode_seal(seal_bytes)
    return Sealed(folder, tarball, seal_bytes, encode_proof(proof), decoded.leaves,
                  decoded.checkpoint, dict(ENTRIES))


def PRIVATE_KEY():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def TRUSTED():
    from merkle_backup.signing import public_key_of

    return public_key_of(PRIVATE_KEY(), "fuzz key")


def write_seeds(argv: list[str], seeds: dict[str, bytes]) -> None:
    """Put the seeds into the first corpus directory given on the command line, if it is empty."""
    dirs = [a for a in argv[1:] if not a.startswith("-")]
    if not dirs:
        return
    corpus = Path(dirs[0])
    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return
    for name, data in seeds.items():
        (corpus / name).write_bytes(data)
