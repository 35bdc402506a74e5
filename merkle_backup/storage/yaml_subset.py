"""A small YAML subset: what Kubernetes manifests written by hand or by ``kubectl get -o yaml``
use, read without a YAML library, for BackupStorageLocation manifests (``storage.bsl``).

Anything outside the subset (anchors, flow collections, tags, duplicate keys) is refused with
``YamlSubsetError``, never guessed at; the subset is checked against PyYAML in
``tests/storage/test_bsl.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any


class YamlSubsetError(ValueError):
    """The text uses YAML this reader does not handle (or is not YAML)."""


# A quoted key, then its colon: no repetition here can match the same text two ways, so a
# failed match costs linear time.
_QUOTED_KEY = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^']|'')*')\s*:(?=\s|$)""")
_PLAIN_START = re.compile(r"""[^\s#'"{}\[\],&*!|>%@`]""")
# Nested deeper than any Kubernetes manifest (a BSL is 4 levels deep).
MAX_DEPTH = 64


def _split_key(line: str) -> tuple[str, str] | None:
    """``(key, rest)`` of a ``key: value`` line, or None; linear in the line's length (a
    regular expression with a lazy key and optional spaces before the colon was quadratic on
    a long line of spaces without a colon)."""
    if line[:1] in ("'", '"'):
        m = _QUOTED_KEY.match(line)
        return None if m is None else (m.group(1), line[m.end():].lstrip())
    if not _PLAIN_START.match(line):
        return None
    hash_at = line.find("#")
    end = len(line) if hash_at < 0 else hash_at
    colon = line.find(":", 1, end)
    while colon >= 0:
        after = line[colon + 1:colon + 2]
        if after == "" or after.isspace():
            return line[:colon].rstrip(), line[colon + 1:].lstrip()
        colon = line.find(":", colon + 1, end)
    return None


def parse_simple_yaml(text: str) -> list[Any]:
    """Parse the YAML that Kubernetes manifests use, without a YAML library.

    Supported: ``---`` separated documents; block mappings and block sequences (``- item``,
    including ``- key: value`` items) by indentation; plain, single- and double-quoted scalars;
    ``|`` and ``>`` block scalars (with ``-``/``+`` chomping); ``#`` comments; empty ``{}`` and
    ``[]``. Scalars stay strings (BSL config values are strings anyway); ``null`` and ``~`` are
    None. Refused with YamlSubsetError: anchors, aliases, tags, flow collections with content,
    multi-line plain scalars, tabs for indentation, duplicate keys.
    """
    documents: list[Any] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.rstrip() == "---" or line.startswith("--- "):
            if any(_content(x) for x in current):
                documents.append(_Parser(current).document())
            current = []
            continue
        if line.rstrip() == "...":
            continue
        current.append(line)
    if any(_content(x) for x in current):
        documents.append(_Parser(current).document())
    return documents


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _strip_comment(value: str) -> str:
    """A plain or quoted scalar's text without a trailing ' # comment'."""
    value = value.strip()
    if value.startswith(('"', "'")):
        quote = value[0]
        i = 1
        while i < len(value):
            if quote == '"' and value[i] == "\\":
                i += 2
                continue
            if value[i] == quote:
                if quote == "'" and i + 1 < len(value) and value[i + 1] == "'":
                    i += 2
                    continue
                rest = value[i + 1:].strip()
                if rest and not rest.startswith("#"):
                    raise YamlSubsetError(f"text after a quoted scalar: {value!r}")
                return value[: i + 1]
            i += 1
        raise YamlSubsetError(f"unterminated quoted scalar: {value!r}")
    match = re.search(r"\s#", value)
    return value[: match.start()].rstrip() if match else value


def _scalar(raw: str) -> Any:
    value = _strip_comment(raw)
    if value.startswith('"'):
        try:
            return json.loads(value)
        except ValueError as e:
            raise YamlSubsetError(f"unsupported double-quoted scalar {value!r}") from e
    if value.startswith("'"):
        return value[1:-1].replace("''", "'")
    if value in ("", "~", "null", "Null", "NULL"):
        return None
    if value == "{}":
        return {}
    if value == "[]":
        return []
    if value[0] in "&*!{[%@`" or value.startswith(("- ", "? ")):
        raise YamlSubsetError(
            f"unsupported YAML (anchor, alias, tag or flow collection): {value!r}"
        )
    return value


class _Parser:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.i = 0
        self.depth = 0

    def _deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise YamlSubsetError(f"line {self.i + 1}: nested more than {MAX_DEPTH} levels deep")

    def _next_content(self) -> int | None:
        while self.i < len(self.lines) and not _content(self.lines[self.i]):
            self.i += 1
        if self.i >= len(self.lines):
            return None
        line = self.lines[self.i]
        indent = len(line) - len(line.lstrip(" "))
        if line[indent:indent + 1] == "\t":
            raise YamlSubsetError(f"line {self.i + 1}: tab used for indentation")
        return indent

    def document(self) -> Any:
        indent = self._next_content()
        if indent is None:
            return None
        value = self._node(indent)
        if self._next_content() is not None:
            raise YamlSubsetError(f"line {self.i + 1}: unexpected indentation")
        return value

    def _node(self, indent: int) -> Any:
        self._deeper()
        try:
            return self._node_at(indent)
        finally:
            self.depth -= 1

    def _node_at(self, indent: int) -> Any:
        line = self.lines[self.i][indent:]
        if line.startswith("- ") or line.rstrip() == "-":
            return self._sequence(indent)
        if _split_key(line) is not None:
            return self._mapping(indent)
        if len(self.lines) - self.i == 1 or self._only_line():
            self.i += 1
            return _scalar(line)
        raise YamlSubsetError(f"line {self.i + 1}: multi-line scalars are not supported")

    def _only_line(self) -> bool:
        return not any(_content(x) for x in self.lines[self.i + 1:])

    def _mapping(self, indent: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while True:
            at = self._next_content()
            if at is None or at < indent:
                return result
            if at > indent:
                raise YamlSubsetError(f"line {self.i + 1}: unexpected indentation")
            line = self.lines[self.i][indent:]
            if line.startswith("- ") or line.rstrip() == "-":
                raise YamlSubsetError(f"line {self.i + 1}: a sequence item inside a mapping")
            match = _split_key(line)
            if match is None:
                raise YamlSubsetError(f"line {self.i + 1}: expected 'key: value'")
            key = _scalar(match[0])
            if not isinstance(key, str):
                raise YamlSubsetError(f"line {self.i + 1}: unsupported key")
            if key in result:
                raise YamlSubsetError(f"line {self.i + 1}: duplicate key {key!r}")
            result[key] = self._value(match[1], indent)

    def _value(self, rest: str, indent: int) -> Any:
        """The value after 'key:' or '- ' on line self.i, consuming its lines."""
        rest_clean = _strip_comment(rest) if rest.strip() else ""
        if rest_clean[:1] in ("|", ">"):
            return self._block_scalar(rest_clean, indent)
        self.i += 1
        if rest_clean:
            return _scalar(rest_clean)
        at = self._next_content()
        if at is None:
            return None
        line = self.lines[self.i][at:]
        # A sequence may sit at the same indentation as its key (kubectl writes it so).
        if at > indent or (at == indent and (line.startswith("- ") or line.rstrip() == "-")):
            return self._node(at)
        return None

    def _block_scalar(self, header: str, indent: int) -> str:
        style, chomp = header[0], header[1:].strip()
        if chomp not in ("", "-", "+"):
            raise YamlSubsetError(f"line {self.i + 1}: unsupported block scalar header {header!r}")
        self.i += 1
        body: list[str] = []
        block_indent = None
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip():
                this = len(line) - len(line.lstrip(" "))
                if this <= indent:
                    break
                if block_indent is None:
                    block_indent = this
                elif this < block_indent:
                    break
                body.append(line[block_indent:])
            else:
                body.append("")
            self.i += 1
        while body and not body[-1] and chomp != "+":
            body.pop()
        if style == "|":
            text = "\n".join(body)
        else:
            text = " ".join(x for x in body)
        if chomp == "-":
            return text
        return text + "\n" if text else ""

    def _sequence(self, indent: int) -> list[Any]:
        result: list[Any] = []
        while True:
            at = self._next_content()
            if at is None or at < indent:
                return result
            line = self.lines[self.i][at:]
            if at != indent or not (line.startswith("- ") or line.rstrip() == "-"):
                return result
            item = line[2:] if line.startswith("- ") else ""
            stripped = item.lstrip(" ")
            if stripped and _split_key(stripped) is not None:
                # "- key: value" starts a mapping indented at the item's text.
                inner = indent + 2 + (len(item) - len(stripped))
                self.lines[self.i] = " " * inner + stripped
                self._deeper()
                try:
                    result.append(self._mapping(inner))
                finally:
                    self.depth -= 1
            else:
                result.append(self._value(item, indent))
