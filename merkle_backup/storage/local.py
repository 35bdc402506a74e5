"""Backups on the local file system: a folder in Velero's bucket layout, or a bare tarball.

This module moves bytes; it decides nothing about trust. Every object inside a backup folder is
opened without following links and only if it is a regular file (storage/files.py); the folder
itself, and a bare tarball, are what the user named, and are followed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO

from merkle_backup.errors import StorageError
from merkle_backup.formats.seal import SealHead, read_seal_head
from merkle_backup.storage.files import (
    NotRegularFile,
    kind_of,
    non_regular_kind,
    open_regular,
    read_bounded,
)
from merkle_backup.velero import BACKUPS_FOLDER, SEAL_SUFFIX, is_ours

MAX_OBJECT_BYTES = 256 * 2**20  # velero-backup.json and sidecars are small; refuse a giant one
# A named temporary of write_atomic (only where an unnamed O_TMPFILE cannot be used): a dot
# file, which no listing of a backup folder counts, removed by the next write in its folder
# once no live writer holds its lock.
TEMP_SUFFIX = ".merkle-tmp"
# Test hooks (tests/test_hostile_local.py): pause a write just before it becomes visible, with
# a file created to say so; and pretend the file system has no O_TMPFILE.
_PAUSE_ENV = "MERKLE_BACKUP_TEST_PAUSE_WRITE"
_NO_TMPFILE_ENV = "MERKLE_BACKUP_TEST_NO_O_TMPFILE"


def write_atomic(path: Path, data: bytes | BinaryIO, *, mode: int = 0o644, replace: bool = True,
                 overwrite_hint: str = "--replace") -> None:
    """Write ``data`` (bytes, or a binary file read from where it stands to its end) to
    ``path`` so that readers see the old file or the new, never half, and so that no temporary
    file is left in ``path``'s folder whenever the process dies.

    The data goes into an unnamed file (``O_TMPFILE``) in the target's folder, which is linked
    into place only once complete: with ``replace=False`` by ``linkat``, which fails if the
    target exists (create-only: an existing file is never overwritten); with ``replace=True``
    by a link to a temporary name and a rename over the target. On a file system without
    ``O_TMPFILE`` a named dot file (``.<name>.<random>.merkle-tmp``) is used instead, locked
    while it is written; the next write in that folder removes any such file left unlocked.
    Every failure is one StorageError naming the path and the errno text.
    """
    path = Path(path)
    directory = path.parent
    remove_stale_temporaries(directory)
    fd, tmp = _create_temporary(directory, path.name, mode)
    dir_fd = -1
    try:
        os.fchmod(fd, mode)
        with open(fd, "wb", closefd=False) as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                shutil.copyfileobj(data, f, 1 << 20)
        os.fsync(fd)
        _pause_for_tests()
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if tmp is None and not replace:
            os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=dir_fd, follow_symlinks=True)
        else:
            if tmp is None:
                tmp = _link_to_temporary_name(fd, dir_fd, path.name)
            if replace:
                os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                os.link(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                os.unlink(tmp, dir_fd=dir_fd)
            tmp = None
    except FileExistsError as e:
        raise StorageError(f"{path} already exists (use {overwrite_hint} to overwrite it)") from e
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            try:
                if dir_fd >= 0:
                    os.unlink(tmp, dir_fd=dir_fd)
                else:
                    os.unlink(directory / tmp)
            except OSError:
                pass
        os.close(fd)
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # not every file system lets a directory be fsynced; the link is done
    finally:
        os.close(dir_fd)


def _create_temporary(directory: Path, name: str, mode: int) -> tuple[int, str | None]:
    """(fd, None) for an unnamed O_TMPFILE in ``directory``; else (fd, its name) for a named,
    locked dot file there."""
    if not os.environ.get(_NO_TMPFILE_ENV) and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, mode & 0o600)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise StorageError(f"cannot write in {directory}: {e.strerror or e}") from e
        else:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a later link to a temporary name is locked too
            return fd, None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=directory)
    except OSError as e:
        raise StorageError(f"cannot write in {directory}: {e.strerror or e}") from e
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, os.path.basename(tmp)


def _link_to_temporary_name(fd: int, dir_fd: int, name: str) -> str:
    for _ in range(100):
        tmp = f".{name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            os.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
            return tmp
        except FileExistsError:
            continue
    raise StorageError(f"cannot find a free temporary name for {name}")  # pragma: no cover


def remove_stale_temporaries(directory: Path) -> None:
    """Remove the named temporaries of write_atomic that a killed writer left in ``directory``
    (those whose lock no live process holds). Best effort: a failure here changes nothing."""
    try:
        entries = [e.name for e in os.scandir(directory)
                   if e.name.startswith(".") and e.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return
    for name in entries:
        target = os.path.join(directory, name)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            os.unlink(target)
        except OSError:
            pass
        finally:
            os.close(fd)


def _pause_for_tests() -> None:
    ready = os.environ.get(_PAUSE_ENV)
    if ready:
        Path(ready).write_text(str(os.getpid()))
        time.sleep(300)


@contextmanager
def open_local_seal(path: Path, *, follow: bool = True) -> Iterator[BinaryIO]:
    """A seal file, opened only if it is a regular file; ``follow=False`` for a default seal
    path inside a backup folder (never a link planted there)."""
    try:
        f = open_regular(path, follow=follow, what="seal")
    except FileNotFoundError as e:
        raise StorageError(f"no seal at {path} (seal the backup first, or pass --seal)") from e
    with f:
        yield f


class LocalBackup:
    """A backup on disk.

    * a folder ``.../backups/<name>/`` holding ``<name>.tar.gz`` and Velero's other objects; the
      seal defaults to ``<name>-merkle.seal`` inside it;
    * a bare ``X.tar.gz`` (e.g. from ``velero backup download``); the seal defaults to
      ``X.tar.gz.seal`` beside it, and there are no bucket objects.

    The folder (or bare tarball) the user names is followed if it is a link; nothing inside the
    folder is: a symbolic link, FIFO, device or directory where an object should be raises
    NotRegularFile (storage/files.py), which the verifier reports as tampering and the sealer
    as a refusal. So is a default seal path that is not a regular file; a ``--seal`` path the
    user gave is followed.
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
            kind = non_regular_kind(path, follow=True)
            if kind is not None:
                raise StorageError(f"{path} is {kind}, not a backup folder or tarball")
            raise StorageError(f"{path}: no such backup folder or tarball")
        if self.folder is not None and not os.path.lexists(self.tarball):
            raise StorageError(f"{path}: backup folder has no {self.tarball.name}")
        self.seal_path = Path(seal_path) if seal_path else default_seal
        self._seal_follows = seal_path is not None  # the user's own --seal: a link is fine
        self._kinds: dict[str, str] = {}

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
            st = self.tarball.stat() if self.folder is None else self.tarball.lstat()
        except OSError as e:
            raise StorageError(f"cannot stat {self.tarball}: {e.strerror or e}") from e
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(self.tarball, kind_of(st.st_mode))
        return st.st_size

    @contextmanager
    def open_tarball(self) -> Iterator[BinaryIO]:
        try:
            f = open_regular(self.tarball, follow=self.folder is None)
        except FileNotFoundError as e:
            raise StorageError(f"cannot open {self.tarball}: {e.strerror or e}") from e
        with f:
            yield f

    def object_names(self) -> list[str]:
        """Every object in the backup folder but the tarball and seals, sorted: every entry,
        whatever its type (a link, FIFO or sub-folder is an object that is not a regular file,
        refused when it is read)."""
        if self.folder is None:
            return []
        kinds: dict[str, str] = {}
        names = []
        try:
            with os.scandir(self.folder) as entries:
                for entry in entries:
                    n = entry.name
                    if (n == self.tarball.name or is_ours(n) or n.startswith(".")
                            or self.folder / n == self.seal_path):
                        continue
                    names.append(n)
                    mode = entry.stat(follow_symlinks=False).st_mode
                    if not stat.S_ISREG(mode):
                        kinds[n] = kind_of(mode)
        except OSError as e:
            raise StorageError(f"cannot list {self.folder}: {e.strerror or e}") from e
        self._kinds = kinds
        return sorted(names)

    def non_regular(self, filename: str) -> str | None:
        """What a listed object that is not a regular file is ("a FIFO"), else None."""
        return self._kinds.get(filename)

    def read_object(self, filename: str) -> bytes | None:
        """An object's bytes, or None when it does not exist. NotRegularFile when it is not a
        regular file; at most MAX_OBJECT_BYTES + 1 bytes are read."""
        if self.folder is None or "/" in filename or filename in ("", ".", ".."):
            return None
        return read_object_file(self.folder / filename)

    def open_seal(self) -> AbstractContextManager[BinaryIO]:
        return open_local_seal(self.seal_path, follow=self._seal_follows)

    def write_seal(self, data: bytes | BinaryIO, *, replace: bool) -> str:
        write_atomic(self.seal_path, data, replace=replace)
        return str(self.seal_path)


def bare_tarball_name(filename: str) -> str:
    """The backup name a bare tarball's file name implies: X.tar.gz or X-data.tar.gz -> X."""
    stem = filename[: -len(".tar.gz")] if filename.endswith(".tar.gz") else filename
    if stem.endswith("-data"):  # `velero backup download` saves <name>-data.tar.gz
        stem = stem[: -len("-data")]
    return stem


def _listed(name: str) -> str:
    """A folder name as a report, --json and --metrics carry it: a name that is not UTF-8
    (its bytes held as lone surrogates, which no UTF-8 writer takes) is given escaped, as
    display.shown escapes it; such a name is no Velero backup name, so it is never opened
    (docs/threat-model.md T74)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        from merkle_backup.display import shown

        return shown(name)
    return name


def read_object_file(path: Path) -> bytes | None:
    """A bucket object's bytes: a regular file, never followed, at most MAX_OBJECT_BYTES (more
    is a StorageError, and at most one byte more is read); None when nothing is at ``path``."""
    try:
        return read_bounded(path, MAX_OBJECT_BYTES, follow=False)
    except StorageError:
        if not os.path.lexists(path):
            return None
        raise


class LocalBucket:
    """A local folder laid out like a bucket (``aws s3 sync s3://BUCKET/PREFIX DIR``): it holds
    ``backups/<name>/`` folders."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.backups = self.root / BACKUPS_FOLDER
        if not self.backups.is_dir():
            if self.root.name == BACKUPS_FOLDER and self.root.is_dir():
                raise StorageError(
                    f"{self.root}: give the folder that holds {BACKUPS_FOLDER}/, not "
                    f"{BACKUPS_FOLDER}/ itself"
                )
            raise StorageError(f"{self.root}: no {BACKUPS_FOLDER}/ folder (not a bucket layout)")

    def describe(self) -> str:
        return str(self.root)

    def backup_names(self) -> list[str]:
        """Every folder under backups/, and every link there (reported, never followed: a link
        planted in the bucket layout is not a backup folder)."""
        try:
            with os.scandir(self.backups) as entries:
                return sorted(_listed(e.name) for e in entries
                              if e.is_symlink() or e.is_dir(follow_symlinks=False))
        except OSError as e:
            raise StorageError(f"cannot list {self.backups}: {e.strerror or e}") from e

    def _folder(self, name: str) -> Path:
        """backups/NAME, refused unless it is a real folder (not a link to one)."""
        folder = self.backups / name
        kind = non_regular_kind(folder, follow=False)
        if kind is not None and kind != "a directory":
            raise StorageError(f"{folder} is {kind}, not a backup folder")
        return folder

    def read_object(self, name: str, filename: str) -> bytes | None:
        backup = self._folder(name)
        path = backup / filename
        if not backup.is_dir():
            return None
        return read_object_file(path)

    def has_seal(self, name: str) -> bool:
        """True when anything (even a link or a FIFO) is at the seal's place."""
        return os.path.lexists(self._folder(name) / f"{name}{SEAL_SUFFIX}")

    def read_seal_head(self, name: str) -> SealHead:
        """The head of the seal (FormatError when it does not decode, NotRegularFile when a
        link or FIFO is in its place): the whole file is read through, in constant memory."""
        with open_local_seal(self._folder(name) / f"{name}{SEAL_SUFFIX}", follow=False) as f:
            return read_seal_head(f)

    def open(self, name: str) -> LocalBackup:
        return LocalBackup(self._folder(name))


