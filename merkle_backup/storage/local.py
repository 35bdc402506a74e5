"""Backups on the local file system: a folder in Velero's bucket layout, or a bare tarball.

This module moves bytes; it decides nothing about trust.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from merkle_backup.errors import StorageError

SEAL_SUFFIX = "-merkle.seal"
MAX_OBJECT_BYTES = 256 * 2**20  # velero-backup.json and sidecars are small; refuse a giant one


def write_atomic(path: Path, data: bytes | BinaryIO, *, mode: int = 0o644, replace: bool = True) -> None:
    """Write ``data`` (bytes, or a binary file read from where it stands to its end) to
    ``path`` so that readers see the old file or the new, never half.

    With ``replace=False`` an existing file is never overwritten (os.link fails on EEXIST).
    """
    path = Path(path)
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise StorageError(f"cannot write in {directory}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            if isinstance(data, bytes):
                f.write(data)
            else:
                shutil.copyfileobj(data, f, 1 << 20)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError as e:
                raise StorageError(f"{path} already exists (use --replace to overwrite it)") from e
            os.unlink(tmp)
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # not every file system lets a directory be fsynced; the rename is done


@contextmanager
def open_local_seal(path: Path) -> Iterator[BinaryIO]:
    try:
        f = open(path, "rb")
    except FileNotFoundError as e:
        raise StorageError(f"no seal at {path} (seal the backup first, or pass --seal)") from e
    except OSError as e:
        raise StorageError(f"cannot read {path}: {e.strerror or e}") from e
    with f:
        yield f


class LocalBackup:
    """A backup on disk.

    * a folder ``.../backups/<name>/`` holding ``<name>.tar.gz`` and Velero's other objects; the
      seal defaults to ``<name>-merkle.seal`` inside it;
    * a bare ``X.tar.gz`` (e.g. from ``velero backup download``); the seal defaults to
      ``X.tar.gz.seal`` beside it, and there are no bucket objects.
    """

    def __init__(self, path: Path, seal_path: Path | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.folder: Path | None = path
            self.name = path.resolve().name
            self.tarball = path / f"{self.name}.tar.gz"
            default_seal = path / f"{self.name}{SEAL_SUFFIX}"
        elif path.is_file():
            self.folder = None
            self.tarball = path
            self.name = bare_tarball_name(path.name)
            default_seal = path.with_name(path.name + ".seal")
        else:
            raise StorageError(f"{path}: no such backup folder or tarball")
        if self.folder is not None and not self.tarball.is_file():
            raise StorageError(f"{path}: backup folder has no {self.tarball.name}")
        self.seal_path = Path(seal_path) if seal_path else default_seal

    def describe(self) -> str:
        return str(self.folder or self.tarball)

    def identity_names(self) -> tuple[str, ...]:
        """A folder is named by its own name, exactly. A bare tarball ``X.tar.gz`` is backup
        ``X``; ``X-data.tar.gz`` is ``X-data``, or ``X`` as `velero backup download` names it."""
        if self.folder is not None:
            return (self.name,)
        stem = self.tarball.name.removesuffix(".tar.gz")
        return tuple(dict.fromkeys((stem, self.name)))

    def tarball_size(self) -> int:
        try:
            return self.tarball.stat().st_size
        except OSError as e:
            raise StorageError(f"cannot stat {self.tarball}: {e.strerror or e}") from e

    @contextmanager
    def open_tarball(self) -> Iterator[BinaryIO]:
        try:
            f = open(self.tarball, "rb")
        except OSError as e:
            raise StorageError(f"cannot open {self.tarball}: {e.strerror or e}") from e
        with f:
            yield f

    def object_names(self) -> list[str]:
        """Every object in the backup folder but the tarball and seals, sorted."""
        if self.folder is None:
            return []
        try:
            names = sorted(p.name for p in self.folder.iterdir() if p.is_file())
        except OSError as e:
            raise StorageError(f"cannot list {self.folder}: {e.strerror or e}") from e
        return [
            n for n in names
            if n != self.tarball.name and not n.endswith(".seal") and not n.startswith(".")
            and self.folder / n != self.seal_path
        ]

    def read_object(self, filename: str) -> bytes | None:
        """An object's bytes, or None when it does not exist."""
        if self.folder is None:
            return None
        path = self.folder / filename
        try:
            if path.stat().st_size > MAX_OBJECT_BYTES:
                raise StorageError(f"{path} is larger than {MAX_OBJECT_BYTES} bytes")
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot read {path}: {e.strerror or e}") from e

    def open_seal(self) -> AbstractContextManager[BinaryIO]:
        return open_local_seal(self.seal_path)

    def write_seal(self, data: bytes | BinaryIO, *, replace: bool) -> str:
        write_atomic(self.seal_path, data, replace=replace)
        return str(self.seal_path)


def bare_tarball_name(filename: str) -> str:
    """The backup name a bare tarball's file name implies: X.tar.gz or X-data.tar.gz -> X."""
    stem = filename[: -len(".tar.gz")] if filename.endswith(".tar.gz") else filename
    if stem.endswith("-data"):  # `velero backup download` saves <name>-data.tar.gz
        stem = stem[: -len("-data")]
    return stem
