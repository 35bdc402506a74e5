"""Random byte-level mutations of a valid file, drawn with hypothesis (shared by the codec tests)."""

from __future__ import annotations

from hypothesis import strategies as st

KINDS = ["flip", "set", "insert", "delete", "truncate"]


def mutate(source: bytes, data: st.DataObject, *, most: int = 4, keep: int = 0) -> bytes:
    """1..``most`` mutations of ``source``; a truncation always keeps the first ``keep`` bytes."""
    mutated = bytearray(source)
    for _ in range(data.draw(st.integers(1, most), label="mutations")):
        if not mutated:
            break
        kind = data.draw(st.sampled_from(KINDS))
        i = data.draw(st.integers(0, len(mutated) - 1), label="index")
        if kind == "flip":
            mutated[i] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set":
            mutated[i] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            mutated[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del mutated[i : i + data.draw(st.integers(1, 4))]
        else:
            del mutated[max(i, keep):]
    return bytes(mutated)
