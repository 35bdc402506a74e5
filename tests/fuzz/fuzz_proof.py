"""atheris harness: the proof decoder and ``verify_proof`` on a mutated proof file.

Each input is a proof file (one resource, namespaces "app", "billing" and the absent "absent",
with embedded content) of a small sealed backup (tests/fuzz/_common.py). Properties: only
merkle_backup errors are raised; a proof that verifies claims only what the signed leaf table
holds (each proven record is the sealed leaf at its index, each namespace is exactly its sealed
run, each embedded content is the sealed entry's bytes).

    python tests/fuzz/fuzz_proof.py -workers=1 -max_total_time=300 /tmp/corpus-proof
"""

from __future__ import annotations

import sys

import _common  # first: puts the repository root on sys.path
import atheris

with atheris.instrument_imports(include=["merkle_backup"]):
    from merkle_backup.core.leaf import decode_record
    from merkle_backup.errors import Error
    from merkle_backup.formats.proof import decode_proof
    from merkle_backup.proofs import verify_proof

SEALED = _common.build_sealed()
TRUSTED = [_common.TRUSTED()]
RECORDS = [decode_record(leaf) for leaf in SEALED.leaves]


def TestOneInput(data: bytes) -> None:
    try:
        decode_proof(data)
    except Error:
        return
    try:
        report = verify_proof(data, TRUSTED)
    except Error:
        return
    proof = decode_proof(data)
    assert proof.checkpoint == SEALED.checkpoint
    for item in proof.resources:
        assert item.record == SEALED.leaves[item.index]
    for item in proof.namespaces:
        assert item.records == SEALED.leaves[item.begin:item.begin + len(item.records)]
    for proven in report.namespaces:
        assert proven.resources == [r.path for r in RECORDS if r.key.namespace == proven.namespace]
    for path, content in proof.contents.items():
        assert content == SEALED.contents[path]


def seeds() -> dict[str, bytes]:
    return {"proof": SEALED.proof}


if __name__ == "__main__":
    _common.write_seeds(sys.argv, seeds())
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
