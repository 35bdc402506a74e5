"""What the workflows need from storage: one backup (``BackupSource``: the sealer, the verifier
and the prover) and a whole storage location (``Location``: seal-all and audit).

``storage/local.py`` (a folder or a bare tarball) and ``storage/s3.py`` (an S3 prefix) provide
them; the workflows depend on these interfaces only, not on each other.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from merkle_backup.formats.seal import SealHead


class BackupSource(Protocol):
    """One backup in its storage (local or S3)."""

    name: str

    @property
    def seal_path(self) -> str | Path: ...  # where the seal is (shown to the user)

    def describe(self) -> str: ...
    def identity_names(self) -> tuple[str, ...]: ...  # the backup names a seal may carry
    def tarball_size(self) -> int: ...
    def open_tarball(self) -> AbstractContextManager[BinaryIO]: ...
    def object_names(self) -> list[str]: ...
    def read_object(self, filename: str) -> bytes | None: ...
    def open_seal(self) -> AbstractContextManager[BinaryIO]: ...  # seekable, at its start
    def write_seal(self, data: bytes | BinaryIO, *, replace: bool) -> str: ...


class Location(Protocol):
    """A storage location holding backups/ (local ``storage.local.LocalBucket`` or
    ``storage.s3.S3Bucket``)."""

    def describe(self) -> str: ...
    def backup_names(self) -> list[str]: ...
    def read_object(self, name: str, filename: str) -> bytes | None: ...
    def has_seal(self, name: str) -> bool: ...
    def read_seal_head(self, name: str) -> SealHead: ...  # FormatError unless the head decodes
    def open(self, name: str) -> BackupSource: ...
