"""The manifest decoder of consistency.check_manifest (msgspec), in a module of its own so
that it is imported on first use: msgspec costs ~20 ms of CPU to import, which a verification
of an unchanged backup never needs (issue 23). Only consistency.py imports it."""

from __future__ import annotations

from typing import Any

import msgspec

ValidationError = msgspec.ValidationError
DecodeError = msgspec.DecodeError


class _Metadata(msgspec.Struct):
    name: Any = None
    namespace: Any = None


class _Manifest(msgspec.Struct):
    metadata: _Metadata | None = None


# Decodes metadata.name and metadata.namespace only; every other member is checked for JSON
# syntax and skipped without building Python objects (6-10x faster than a full parse, which was
# most of the sealing time). Its rules, as Go's encoding/json where restore parses (pinned by
# tests/test_consistency.py against Go): member names compare after unescaping; a repeated
# member name counts its last value; trailing data, a BOM, NaN, control characters in strings
# are errors. It is stricter than Go (refuses, never passes) on unpaired surrogate escapes and
# nesting over ~1000 levels; it accepts invalid UTF-8 inside skipped strings, which Go accepts
# too, and numbers beyond float range, which Go refuses to restore at all.
decode_manifest = msgspec.json.Decoder(_Manifest).decode
