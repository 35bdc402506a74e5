"""The pure core of merkle-backup: hashing, the Merkle tree and its proofs.

Nothing in this package opens a file, reads the clock or imports an I/O library; it takes bytes
and returns bytes (or raises an error from ``merkle_backup.errors``).
"""
