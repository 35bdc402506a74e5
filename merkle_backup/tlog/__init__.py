"""The backup transparency log (docs/format.md §12): an RFC 6962 SHA-256 Merkle tree of every
checkpoint the sealer signs, stored as C2SP tlog-tiles with a C2SP tlog-checkpoint head.

* ``note``: C2SP signed notes, tlog-checkpoint bodies, tlog-cosignatures (pure).
* ``tiles``: tile paths, tile and entry-bundle codecs, hashes, proofs (pure).
* ``entries``: what an entry is (a seal's signed checkpoint, an expiry, a tombstone) (pure).
* ``store``: the objects, in a local folder or under an S3 prefix (I/O).
* ``log``: reading a verified head, appending, the rollback state (I/O).
* ``check``: audit and verify against the log.
"""
