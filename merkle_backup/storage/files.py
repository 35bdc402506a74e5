"""Opening local files that may be hostile: never follow a link where none is expected, never
block on a FIFO, never read a device, never read past a cap.

Every object of a backup folder (the tarball, ``velero-backup.json``, the sidecars, the default
seal) is attacker-controlled: it is opened with ``O_NOFOLLOW``, so a symbolic link planted in
the folder (to the private key, to ``/dev/zero``) is refused, not read. Files the user names on
the command line (``--seal``, ``--trust``, ``--key``, proof and content files) may be links the
user chose, so they are followed, but must still be regular files.

Every open is ``O_NONBLOCK`` (opening a FIFO with no writer would otherwise wait forever; the
flag is cleared once the descriptor is known to be a regular file), and the descriptor itself
is checked with ``fstat``, so a file swapped between the look and the open is caught.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from merkle_backup.errors import Error, StorageError


class NotRegularFile(StorageError):
    """Something other than a regular file (a symbolic link, FIFO, device, directory, socket)
    where a file should be. ``path`` is the path, ``kind`` what it is ("a symbolic link")."""

    def __init__(self, path: Path | str, kind: str) -> None:
        self.path = str(path)
        self.kind = kind
        self.reason = f"is {kind}, not a regular file"
        super().__init__(f"{path} {self.reason}")


def kind_of(mode: int) -> str:
    """What a file of this ``st_mode`` is, for a message ("a FIFO")."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"  # pragma: no cover - no other file types on Linux


def non_regular_kind(path: Path | str, *, follow: bool) -> str | None:
    """None when ``path`` is a regular file (or does not exist), else what it is."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None
    return None if stat.S_ISREG(st.st_mode) else kind_of(st.st_mode)


def open_regular(path: Path | str, *, follow: bool, error: type[Error] = StorageError,
                 what: str = "") -> BinaryIO:
    """``path`` opened for reading, if and only if it is a regular file.

    ``follow=False`` refuses a symbolic link as the last component (``O_NOFOLLOW``): for the
    objects of a backup folder. ``follow=True`` is for files the user named. FileNotFoundError
    is raised as it is (callers say what is missing); every other failure is ``error`` (or
    NotRegularFile) with one line naming the path.
    """
    label = f"{what} {path}" if what else str(path)
    # Look before opening: a device node is never opened (opening one can have side effects).
    try:
        before = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise error(f"cannot read {label}: {e.strerror or e}") from e
    if not stat.S_ISREG(before.st_mode):
        raise _not_regular(error, label, before.st_mode)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP and not follow:  # became a link between the look and the open
            raise _not_regular(error, label, stat.S_IFLNK) from e
        raise error(f"cannot read {label}: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(error, label, st.st_mode)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        # The file object owns a duplicate, and ``fd`` is closed here exactly once: a SIGINT
        # (Interrupted) that lands inside fdopen, after it made the object, must not close the
        # descriptor twice (EBADF, or worse, another file's descriptor reused meanwhile: seen in
        # tests/test_signals.py under load).
        return os.fdopen(os.dup(fd), "rb")
    finally:
        os.close(fd)


def _not_regular(error: type[Error], label: str, mode: int) -> Error:
    if error is StorageError:
        return NotRegularFile(label, kind_of(mode))
    return error(f"{label} is {kind_of(mode)}, not a regular file")


def read_bounded(path: Path | str, cap: int, *, follow: bool, error: type[Error] = StorageError,
                 what: str = "") -> bytes:
    """The bytes of the regular file ``path``, at most ``cap`` of them (more is ``error``):
    at most ``cap + 1`` bytes are ever read, whatever the file claims its size is."""
    label = f"{what} {path}" if what else str(path)
    try:
        f = open_regular(path, follow=follow, error=error, what=what)
    except FileNotFoundError as e:
        raise error(f"cannot read {label}: {e.strerror or e}") from e
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > cap:
                raise error(f"{label} is {size} bytes, larger than the {cap} byte limit")
            data = f.read(cap + 1)
        except OSError as e:
            raise error(f"cannot read {label}: {e.strerror or e}") from e
    if len(data) > cap:
        raise error(f"{label} is larger than the {cap} byte limit")
    return data


def read_if_present(path: Path | str, cap: int, *, follow: bool,
                    error: type[Error] = StorageError, what: str = "") -> bytes | None:
    """``read_bounded``, or None when nothing is at ``path`` (nor is a folder on the way)."""
    try:
        return read_bounded(path, cap, follow=follow, error=error, what=what)
    except Error:
        if not os.path.lexists(path):
            return None
        raise


def check_library_file(path: Path | str, cap: int, what: str) -> None:
    """A file the user named that a library (botocore) will open itself: a regular file (a
    link the user chose is followed), at most ``cap`` bytes; StorageError otherwise. Never a
    FIFO (the library would wait forever) nor a device (it would read without end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise StorageError(f"{what} {path}: no such file") from e
    except OSError as e:
        raise StorageError(f"cannot read {what} {path}: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise StorageError(f"{what} {path} is {kind_of(st.st_mode)}, not a regular file")
    if st.st_size > cap:
        raise StorageError(f"{what} {path} is {st.st_size} bytes, larger than the {cap} byte "
                           "limit")


# Files given on the command line: caps on what is read.
MAX_PROOF_FILE_BYTES = 512 * 2**20   # a proof of many namespaces with their manifests
MAX_CONTENT_FILE_BYTES = 256 * 2**20  # a manifest held by the user (as big as a bucket object)
MAX_RESTORE_FILE_BYTES = 1 << 20  # a Restore manifest (verify --restore), as a BSL manifest
MAX_ATTESTATION_FILE_BYTES = 256 * 2**20  # an audit's signed statement: one subject per object
MAX_CA_BUNDLE_BYTES = 16 * 2**20  # every CA of a system bundle is ~0.2 MiB
MAX_CREDENTIALS_FILE_BYTES = 1 << 20  # an AWS credentials file (a BSL's credentialsFile)


def check_proof_output(output: Path, seal_path: Path | str | None, *, force: bool) -> None:
    """Refuse to write a proof to ``output`` when that would destroy something: an existing
    file without ``force``; never (not even with ``force``) the backup's seal, nor a file named
    ``*.seal`` that decodes as a seal."""
    output = Path(output)
    if isinstance(seal_path, Path) and _same_place(output, seal_path):
        raise StorageError(f"{output} is the backup's seal: refusing to write a proof over it")
    try:
        st = os.lstat(output)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StorageError(f"cannot write {output}: {e.strerror or e}") from e
    if not force:
        raise StorageError(f"{output} already exists (use --force to overwrite it)")
    if stat.S_ISREG(st.st_mode) and output.name.endswith(".seal") and _is_a_seal(output):
        raise StorageError(f"{output} is a seal: refusing to write a proof over it")


def _same_place(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.abspath(a) == os.path.abspath(b) or (
        a.parent.resolve() / a.name == b.parent.resolve() / b.name
    )


def _is_a_seal(path: Path) -> bool:
    from merkle_backup.formats.seal import read_seal_head

    try:
        with open_regular(path, follow=False) as f:
            read_seal_head(f)
    except (Error, OSError):
        return False
    return True


def open_user_file(path: Path | str, *, what: str = "") -> BinaryIO:
    """A file the user named on the command line, opened for reading: a link is followed,
    but only a regular file is opened (never a FIFO, device or folder)."""
    try:
        return open_regular(path, follow=True, what=what)
    except FileNotFoundError as e:
        label = f"{what} {path}" if what else str(path)
        raise StorageError(f"cannot read {label}: {e.strerror or e}") from e


def temp_dir_label() -> str:
    """The folder temporary files go to (TMPDIR), for a message; never raises."""
    import tempfile

    try:
        return tempfile.gettempdir()
    except OSError:  # no usable temporary folder at all
        return os.environ.get("TMPDIR") or "the temporary folder (TMPDIR)"


@contextmanager
def temporary_file(what: str) -> Iterator[BinaryIO]:
    """An unnamed temporary file (in TMPDIR, removed on close, gone even if the process is
    killed) for ``what``; a failure to create it is one StorageError naming the folder."""
    import tempfile

    try:
        f = tempfile.TemporaryFile(prefix="merkle-backup.")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise StorageError(
            f"cannot create a temporary file for {what} in {temp_dir_label()}: {e.strerror or e}"
        ) from e
    try:
        yield f
    finally:
        try:
            f.close()
        except OSError:
            pass  # flushing what a full disk refused: unnamed, nothing is kept; already reported
