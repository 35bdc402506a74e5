"""Bytes <-> core objects: the seal and proof file codecs (docs/format.md)."""
