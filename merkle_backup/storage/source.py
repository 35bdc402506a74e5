"""What the sealer, the verifier and the prover need from a backup's storage.

``storage/local.py`` (a folder or a bare tarball) and ``storage/s3.py`` (an S3 prefix) provide
it; the workflows (builder, verifier, proofs) depend on this interface only, not on each other.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol


class BackupSource(Protocol):
    """One backup in its storage (local or S3)."""

    name: str

    def describe(self) -> str: ...
    def identity_names(self) -> tuple[str, ...]: ...  # the backup names a seal may carry
    def tarball_size(self) -> int: ...
    def open_tarball(self): ...  # context manager yielding a binary stream
    def object_names(self) -> list[str]: ...
    def read_object(self, filename: str) -> bytes | None: ...
    def open_seal(self) -> AbstractContextManager[BinaryIO]: ...  # seekable, at its start
    def write_seal(self, data: bytes | BinaryIO, *, replace: bool) -> str: ...
