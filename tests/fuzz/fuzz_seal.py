"""atheris harness: the seal decoder and the verifier's trust chain on a mutated seal.

Each input is a seal file for a small sealed backup (tests/fuzz/_common.py); it goes through
``decode_seal``, ``open_seal`` (signature, checkpoint, leaf table) and ``verify_backup`` against
the unchanged tarball. Properties: only merkle_backup errors are raised; a seal that opens or
verifies has exactly the signed checkpoint and the sealed leaves (a different encoding of the
same map may decode, but never different content).

    python tests/fuzz/fuzz_seal.py -workers=1 -max_total_time=300 /tmp/corpus-seal
"""

from __future__ import annotations

import sys

import _common  # first: puts the repository root on sys.path
import atheris

with atheris.instrument_imports(include=["merkle_backup"]):
    from merkle_backup.errors import Error
    from merkle_backup.formats.seal import decode_seal
    from merkle_backup.storage.local import LocalBackup
    from merkle_backup.trust import open_seal
    from merkle_backup.verifier import verify_backup

SEALED = _common.build_sealed()
TRUSTED = [_common.TRUSTED()]
SOURCE = LocalBackup(SEALED.tarball)


def TestOneInput(data: bytes) -> None:
    try:
        decode_seal(data)
    except Error:
        return
    try:
        seal = open_seal(data, TRUSTED)
    except Error:
        return
    assert seal.checkpoint.body() == SEALED.checkpoint
    assert [seal.leaves.record(i) for i in range(len(seal.leaves))] == SEALED.leaves
    try:
        report = verify_backup(SOURCE, TRUSTED, seal_bytes=data)
    except Error:
        return
    assert report.verified, report.failures


def seeds() -> dict[str, bytes]:
    return {"seal": SEALED.seal}


if __name__ == "__main__":
    _common.write_seeds(sys.argv, seeds())
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
