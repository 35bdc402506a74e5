"""Attacker-controlled text made safe for a terminal and a log line.

Tar paths, bucket object names, backup names, namespaces, uids, JSON fields and error details
all come from the bucket, which is the attacker (docs/threat-model.md). Printed as they are, an
ESC sequence could move the cursor and overwrite the verdict ("\\x1b[1A\\x1b[2K VERIFIED"), a
newline could forge a report line, a bidi override could make one path read as another.

``shown`` escapes, visibly and unambiguously (a backslash becomes ``\\\\``, so every escape can
be read back):

* C0 controls (including TAB, LF, CR, ESC), DEL and C1 controls: ``\\t``, ``\\n``, ``\\r``, else
  ``\\xHH``;
* surrogate escapes (bytes that were not UTF-8, decoded with ``surrogateescape``): ``\\xHH`` of
  the original byte; any other lone surrogate: ``\\udXXX``;
* format characters (Unicode category Cf: bidi embeddings, overrides and isolates U+202A-202E,
  U+2066-2069, zero-width characters, the BOM, ...), line and paragraph separators (Zl, Zp),
  private-use and unassigned code points: ``\\uXXXX`` / ``\\UXXXXXXXX``.

Everything else (printable ASCII and printable Unicode, ordinary spaces) is kept. ``--json``
output does not go through here: ``json.dumps`` already escapes what JSON must.
"""

from __future__ import annotations

import re
import unicodedata

_SIMPLE = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Fast check: a string of printable ASCII but backslash needs nothing.
_PLAIN = re.compile(r"[ -\[\]-~]*\Z")
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(ch: str) -> str:
    simple = _SIMPLE.get(ch)
    if simple is not None:
        return simple
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if unicodedata.category(ch) in _ESCAPED_CATEGORIES:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return ch


def shown(text: object) -> str:
    """``text`` (``str()`` of it when it is not a string) with every character that could
    change what a terminal or a log shows escaped; see the module's docstring."""
    if not isinstance(text, str):
        text = str(text)
    if _PLAIN.match(text):
        return text
    return "".join(map(_escape, text))


# scheme://user:password@host: the userinfo of any URL in a text (docs/threat-model.md T71).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]*@")


def redacted(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``: what is
    shown of a URL or a config value (error lines end up in CronJob logs)."""
    return _USERINFO.sub(r"\1***@", text) if "@" in text else text
