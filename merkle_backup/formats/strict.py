"""Strict decoding shared by every file and object we read: one text, one reading.

A repeated map key (JSON or msgpack) would give two readers of the same bytes two different
objects (the last key wins in Python, the first in some other parsers), so it is refused; so are
JSON's non-standard constants (NaN, Infinity).
"""

from __future__ import annotations

import json
from typing import Any


def unique_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """An ``object_pairs_hook``: the map, or ValueError when a key repeats."""
    result: dict[Any, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_json(data: bytes | str) -> Any:
    """JSON with no repeated key and no NaN/Infinity; ValueError (UnicodeDecodeError and
    RecursionError included) for anything else."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        return json.loads(text, object_pairs_hook=unique_keys, parse_constant=_constant)
    except RecursionError as e:
        raise ValueError("nested too deeply") from e
