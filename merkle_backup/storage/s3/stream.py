"""The tarball as a binary stream over one pinned S3 object: bounded reads, resumed with a
Range GET (If-Match the pinned ETag) when the connection breaks off."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from merkle_backup.errors import StorageError
from merkle_backup.storage.s3.errors import describe_error, error_code, http_status

# How often a tarball stream that breaks off is resumed (a Range GET from where it stopped,
# If-Match the pinned ETag) before giving up. Each resume itself goes through botocore's retries.
MAX_RESUMES = 3


@dataclass(frozen=True)
class Pin:
    """The tarball object as the first HEAD saw it."""

    size: int
    etag: str
    version_id: str | None


class Store(Protocol):
    """What a stream needs of its store (store.S3Store, which imports this module)."""

    client: Any
    bucket: str
    _sse_c: dict[str, Any]

    def url(self, key: str) -> str: ...

    def _error(self, e: BaseException, action: str, url: str) -> StorageError: ...


class ObjectStream:
    """A binary stream (``read(n)``) over one pinned object, for the archive reader.

    At most one ``read`` worth of bytes is held. When the connection breaks off, the stream
    resumes with a Range GET (If-Match the pinned ETag) up to MAX_RESUMES times. It returns b""
    only after exactly the pinned number of bytes: a short object is an error, never an end of
    file that the archive reader would mistake for a truncated (malformed) archive.
    """

    def __init__(self, store: Store, key: str, pin: Pin, range_end: int | None = None) -> None:
        self._range_end = range_end  # read only bytes [0, range_end) of a larger object
        self._store = store
        self._key = key
        self._url = store.url(key)
        self._pin = pin
        self._pos = 0
        self._body: Any = None
        self._resumes = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        remaining = self._pin.size - self._pos
        if remaining <= 0:
            self._finish()
            return b""
        want = remaining if n is None or n < 0 else min(n, remaining)
        if want == 0:
            return b""
        while True:
            if self._body is None:
                try:
                    self._open()
                except StorageError as e:
                    if not self._resumes:
                        raise
                    raise StorageError(
                        f"connection lost reading {self._url} after {self._pos} of "
                        f"{self._pin.size} bytes, and resuming failed: {_reason(str(e))}"
                    ) from e
            try:
                chunk: bytes = self._body.read(want)
            except Exception as e:
                message = describe_error(e, "read", self._url, bucket=self._store.bucket,
                                         sse_c=bool(self._store._sse_c))
                if message is None:
                    raise
                self._resume_or_fail(e, message)
                continue
            if not chunk:  # the body ended early without an error
                self._resume_or_fail(None, "the connection closed early")
                continue
            self._pos += len(chunk)
            return chunk

    def _finish(self) -> None:
        """At the pinned size: read the body's end, so botocore checks the length and, when the
        storage sent one, the object's checksum (it does so only at the end of a body)."""
        body, self._body = self._body, None
        if body is None:
            return
        try:
            extra = body.read(1)
        except Exception as e:
            message = describe_error(e, "read", self._url, bucket=self._store.bucket,
                                     sse_c=bool(self._store._sse_c))
            if message is None:
                raise
            raise StorageError(message) from e
        finally:
            body.close()
        if extra:
            raise StorageError(
                f"{self._url} changed while it was being read (longer than {self._pin.size} bytes)"
            )

    def _open(self) -> None:
        pin = self._pin
        params: dict[str, Any] = {
            "Bucket": self._store.bucket,
            "Key": self._key,
            **self._store._sse_c,
        }
        if pin.etag:  # every S3 store sends one; without it a change can only be seen by size
            params["IfMatch"] = pin.etag
        if self._range_end is not None:  # never 0: a read at the pinned size opens nothing
            params["Range"] = f"bytes={self._pos}-{self._range_end - 1}"
        elif self._pos:
            params["Range"] = f"bytes={self._pos}-"
        try:
            response = self._store.client.get_object(**params)
        except Exception as e:
            if http_status(e) == 412 or error_code(e) == "PreconditionFailed":
                raise StorageError(
                    f"{self._url} changed while it was being read (its ETag is no longer "
                    f"{pin.etag}): retry once the writer is done"
                ) from e
            if error_code(e) == "NoSuchKey":
                raise StorageError(f"{self._url} was deleted while it was being read") from e
            raise self._store._error(e, "read", self._url) from e
        body = response["Body"]
        version = response.get("VersionId")
        length = response.get("ContentLength")
        if pin.version_id and version and version != pin.version_id:
            body.close()
            raise StorageError(
                f"{self._url} changed while it was being read (version {version}, "
                f"expected {pin.version_id})"
            )
        if length is not None and length != pin.size - self._pos:
            body.close()
            raise StorageError(
                f"{self._url} changed while it was being read ({self._pos + length} bytes, "
                f"expected {pin.size})"
            )
        self._body = body

    def _resume_or_fail(self, error: BaseException | None, message: str) -> None:
        self.close()
        if self._resumes >= MAX_RESUMES:
            raise StorageError(
                f"connection lost reading {self._url} after {self._pos} of {self._pin.size} "
                f"bytes ({MAX_RESUMES} resumes failed): {_reason(message)}"
            ) from error
        self._resumes += 1

    def close(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            try:
                body.close()
            except Exception:
                pass


def _reason(message: str) -> str:
    """The part of a one-line error after the URL ('read s3://x: reason' -> 'reason')."""
    return message.split(": ", 1)[1] if ": " in message else message
