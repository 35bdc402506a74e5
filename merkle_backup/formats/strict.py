"""Strict decoding shared by every file and object we read: one text, one reading.

A repeated map key (JSON or msgpack) would give two readers of the same bytes two different
objects (the last key wins in Python, the first in some other parsers), so it is refused; so are
JSON's non-standard constants (NaN, Infinity).
"""

from __future__ import annotations

import json
import re
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


# Deeper than any manifest, state or result file we read (a Restore is about 5 levels deep).
MAX_JSON_DEPTH = 64
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of JSON ``text`` nest, in linear time (strings are
    skipped; the brackets of malformed JSON are counted all the same)."""
    depth = deepest = 0
    for b in _BRACKETS.findall(_STRING.sub("", text)):
        if b in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_json(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON with no repeated key, no NaN/Infinity and at most ``max_depth`` levels of arrays
    and objects (checked before parsing, so the parser never recurses deeply); ValueError
    (UnicodeDecodeError included) for anything else."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    # (a document of one scalar needs no scan)
    if ("{" in text or "[" in text) and json_depth(text) > max_depth:
        raise ValueError(f"nested more than {max_depth} levels deep")
    try:
        return json.loads(text, object_pairs_hook=unique_keys, parse_constant=_constant)
    except RecursionError as e:  # pragma: no cover - the depth is checked first
        raise ValueError("nested too deeply") from e
