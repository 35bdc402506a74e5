"""Velero's namespace globs (github.com/gobwas/glob, as pkg/util/collections/includes_excludes.go
uses them): the pattern language, its translation to a Python regex, and the bracket rules
Velero's validation enforces. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable

from merkle_backup.errors import UsageError


class Glob:
    """A pattern as Velero matches it: github.com/gobwas/glob compiled without separators
    (``*`` any run of characters, ``?`` one character, ``[abc]`` ``[a-z]`` ``[!a-z]`` one
    character of a class, ``{a,b}`` alternatives, ``\\`` escapes the next character)."""

    __slots__ = ("_regex", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        regex, rest = _translate(pattern, 0, closing="")
        if rest != len(pattern):  # pragma: no cover - _translate consumes all or raises
            raise ValueError("unexpected end of pattern")
        self._regex = re.compile(regex, re.DOTALL)

    @property
    def is_literal(self) -> bool:
        return not any(c in self.pattern for c in "*?[{\\")

    def match(self, text: str) -> bool:
        return self._regex.fullmatch(text) is not None

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"


def _translate(p: str, i: int, closing: str) -> tuple[str, int]:
    """Regex for ``p[i:]`` up to an unescaped character in ``closing`` (not consumed)."""
    out: list[str] = []
    while i < len(p):
        c = p[i]
        if c in closing:
            return "".join(out), i
        if c == "\\":
            if i + 1 == len(p):
                raise ValueError("pattern ends with an escape character")
            out.append(re.escape(p[i + 1]))
            i += 2
        elif c == "*":
            out.append(".*")
            i += 1
        elif c == "?":
            out.append(".")
            i += 1
        elif c == "[":
            cls, i = _char_class(p, i + 1)
            out.append(cls)
        elif c == "{":
            alternatives = []
            i += 1
            while True:
                alt, i = _translate(p, i, closing=",}")
                alternatives.append(alt)
                if i == len(p):
                    raise ValueError("unclosed '{'")
                i += 1
                if p[i - 1] == "}":
                    break
            out.append("(?:" + "|".join(alternatives) + ")")
        else:
            out.append(re.escape(c))
            i += 1
    if closing:
        raise ValueError("unclosed '{'")
    return "".join(out), i


def _char_class(p: str, i: int) -> tuple[str, int]:
    negate = i < len(p) and p[i] == "!"
    if negate:
        i += 1
    items: list[str] = []
    while True:
        if i >= len(p):
            raise ValueError("unclosed '['")
        c = p[i]
        if c == "]":
            break
        if c == "\\":
            if i + 1 == len(p):
                raise ValueError("unclosed '['")
            c = p[i + 1]
            i += 1
        i += 1
        if i + 1 < len(p) and p[i] == "-" and p[i + 1] != "]":
            hi = p[i + 1]
            if hi == "\\" and i + 2 < len(p):
                hi = p[i + 2]
                i += 1
            if hi < c:
                raise ValueError(f"invalid range {c}-{hi}")
            items.append(f"{re.escape(c)}-{re.escape(hi)}")
            i += 2
        else:
            items.append(re.escape(c))
    if not items:
        raise ValueError("empty character class '[]'")
    return ("[^" if negate else "[") + "".join(items) + "]", i + 1


def compile_globs(patterns: Iterable[str], flag: str) -> tuple[Glob, ...]:
    out = []
    for pattern in patterns:
        if pattern == "":
            raise UsageError(f"{flag}: an empty name selects nothing (an unset variable?); "
                             "give a name or a pattern such as '*'")
        try:
            out.append(Glob(pattern))
        except ValueError as e:
            raise UsageError(f"{flag}: {pattern!r} is not a valid pattern ({e})") from e
    return tuple(out)


def check_brackets(pattern: str) -> None:
    depth_open = None
    for i, c in enumerate(pattern):
        if c == "[":
            if depth_open is not None:
                raise UsageError(f"namespace pattern {pattern!r}: nested '[' (Velero refuses it)")
            depth_open = i
        elif c == "]":
            if depth_open is None:
                raise UsageError(
                    f"namespace pattern {pattern!r}: ']' without '[' (Velero refuses it)"
                )
            if i == depth_open + 1:
                raise UsageError(f"namespace pattern {pattern!r}: empty '[]' (Velero refuses it)")
            depth_open = None
    if depth_open is not None:
        raise UsageError(f"namespace pattern {pattern!r}: unclosed '[' (Velero refuses it)")
