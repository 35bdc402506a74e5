"""Where the log's objects live: a local folder or an S3 prefix (docs/format.md §12.3).

Every object but ``checkpoint`` (and the witness copies) is written once, with a conditional
create; ``checkpoint`` is replaced only by compare-and-swap (S3: ``If-Match`` the ETag read, or
``If-None-Match: *`` for the first; local: under an exclusive lock, then an atomic rename).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from merkle_backup.errors import CannotCheck, StorageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from merkle_backup.storage.options import ConnectionOptions
    from merkle_backup.storage.s3 import S3Store

HEAD = "checkpoint"
MAX_LOG_OBJECT = 64 * 2**20


class Conflict(Exception):
    """A conditional write lost: the object exists with other bytes, or the head moved."""


class LocalLogStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def _path(self, name: str) -> Path:
        return self.root / name

    def get(self, name: str) -> bytes | None:
        """The object's bytes, None when absent. Like a bucket object: a regular file, never
        followed, never a FIFO or device, at most MAX_LOG_OBJECT bytes (T72)."""
        from merkle_backup.storage.files import read_if_present

        return read_if_present(self._path(name), MAX_LOG_OBJECT, follow=False, what="log object")

    def _tmp(self, path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def create(self, name: str, data: bytes) -> bool:
        """Write ``name`` unless it exists. True: written; False: it held these very bytes.
        Conflict: it holds other bytes."""
        path = self._path(name)
        try:
            tmp = self._tmp(path, data)
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        except OSError as e:
            raise StorageError(f"cannot write {path}: {e.strerror or e}") from e
        if self.get(name) != data:
            raise Conflict(name)
        return False

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        try:
            os.replace(self._tmp(path, data), path)
        except OSError as e:
            raise StorageError(f"cannot write {path}: {e.strerror or e}") from e

    def read_head(self) -> tuple[bytes | None, Any]:
        data = self.get(HEAD)
        return data, data

    def swap_head(self, token: Any, data: bytes) -> None:
        """Replace the head if it still is what ``read_head`` returned; else Conflict."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / ".lock", "a+b") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if self.get(HEAD) != token:
                    raise Conflict(HEAD)
                os.replace(self._tmp(self._path(HEAD), data), self._path(HEAD))
        except OSError as e:
            raise StorageError(f"cannot write {self._path(HEAD)}: {e.strerror or e}") from e


class S3LogStore:
    def __init__(self, store: S3Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def describe(self) -> str:
        return self.store.url(self.prefix)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def get(self, name: str) -> bytes | None:
        return self.store.get_bytes(self._key(name), MAX_LOG_OBJECT)

    def _put(self, key: str, data: bytes, **condition: str) -> None:
        from merkle_backup.storage.s3.errors import error_code as _code
        from merkle_backup.storage.s3.errors import http_status as _status

        params = {"Bucket": self.store.bucket, "Key": key, "Body": data,
                  "ContentType": "application/octet-stream", **self.store._put_params()}
        try:
            self.store.client.put_object(**condition, **params)
        except Exception as e:
            if _status(e) in (409, 412) or _code(e) in ("PreconditionFailed",
                                                        "ConditionalRequestConflict"):
                raise Conflict(key) from e
            raise self.store._error(e, "write", self.store.url(key)) from e

    def create(self, name: str, data: bytes) -> bool:
        key = self._key(name)
        try:
            self._put(key, data, IfNoneMatch="*")
            return True
        except Conflict:
            if self.get(name) != data:
                raise
            return False

    def put(self, name: str, data: bytes) -> None:
        self._put(self._key(name), data)

    def read_head(self) -> tuple[bytes | None, Any]:
        from merkle_backup.storage.s3.errors import error_code as _code

        key = self._key(HEAD)
        try:
            response = self.store.client.get_object(Bucket=self.store.bucket, Key=key,
                                                    **self.store._sse_c)
        except Exception as e:
            if _code(e) == "NoSuchKey":
                return None, None
            raise self.store._error(e, "read", self.store.url(key)) from e
        try:
            data = response["Body"].read(MAX_LOG_OBJECT + 1)
        except Exception as e:
            raise self.store._error(e, "read", self.store.url(key)) from e
        return data, response.get("ETag")

    def swap_head(self, token: Any, data: bytes) -> None:
        if token is None:
            self._put(self._key(HEAD), data, IfNoneMatch="*")
        else:
            self._put(self._key(HEAD), data, IfMatch=token)


def open_log_store(where: str, options: ConnectionOptions | None = None,
                   warn: Callable[[str], None] | None = None) -> LocalLogStore | S3LogStore:
    """``--log DIR`` or ``--log s3://BUCKET/PREFIX``."""
    if not where:
        raise CannotCheck("--log needs a folder or s3://BUCKET/PREFIX")
    if where.startswith("s3://"):
        from merkle_backup.storage.options import ConnectionOptions, parse_s3_url
        from merkle_backup.storage.s3 import connect

        url = parse_s3_url(where)
        return S3LogStore(
            connect(url.bucket, options or ConnectionOptions(), warn=warn), url.prefix
        )
    return LocalLogStore(Path(where))
