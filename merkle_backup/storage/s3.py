"""Backups in S3-compatible object storage, in Velero's bucket layout (../shared/VELERO.md §3).

``s3://BUCKET/PREFIX/backups/NAME`` is the folder Velero writes: ``NAME.tar.gz``,
``velero-backup.json`` and the sidecars. The tarball is streamed from one GET straight into the
archive reader (no temporary file; memory stays bounded by the reader's own read size), and the
seal is written inside the folder, at ``backups/NAME/NAME-merkle.seal`` (docs/format.md §7.3),
with a conditional create so an existing seal is never overwritten unless asked.

This is the only module that imports boto3 and botocore, and it imports them lazily so that the
command line starts fast. Every botocore and urllib3 error is turned into a ``StorageError``
(exit 3, "could not check") here, with one line that says what failed and why. Like
``storage.local``, this module moves bytes; it decides nothing about trust.

Consistency: the tarball is pinned by the ETag (and VersionId, when the bucket has versioning)
that the first HEAD returns; every GET of it carries ``If-Match`` with that ETag, so an object
that is replaced while it is read fails with a clear error instead of yielding a mix of two
objects, and the verifier's two passes over the tarball read the very same object.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from merkle_backup.errors import StorageError
from merkle_backup.formats.seal import MAX_SEAL_BYTES, SEAL_HEAD_PREFIX_BYTES, read_seal_head
from merkle_backup.storage.files import (
    non_regular_kind,
    read_bounded,
    temp_dir_label,
    temporary_file,
)
from merkle_backup.storage.local import MAX_OBJECT_BYTES, open_local_seal, write_atomic
from merkle_backup.storage.options import ConnectionOptions
from merkle_backup.velero import BACKUPS_FOLDER, SEAL_SUFFIX

# How often a tarball stream that breaks off is resumed (a Range GET from where it stopped,
# If-Match the pinned ETag) before giving up. Each resume itself goes through botocore's retries.
MAX_RESUMES = 3
# Defaults when neither the options nor the AWS configuration (AWS_RETRY_MODE /
# AWS_MAX_ATTEMPTS, retry_mode / max_attempts in ~/.aws/config) say otherwise.
DEFAULT_RETRY_MODE = "standard"  # retries throttling (SlowDown, 503) and transient errors
DEFAULT_MAX_ATTEMPTS = 5
SSE_C_KEY_BYTES = 32
# Seconds one storage operation may take, every attempt and retry included (--timeout): a
# stalled endpoint (accepts, never answers) ends in exit 3 within this. Each attempt's connect
# waits at most min(MAX_CONNECT_TIMEOUT, timeout / 3) and each read timeout / 3; no attempt is
# started that could not finish in time (timeouts()).
DEFAULT_TIMEOUT = 60.0
MAX_CONNECT_TIMEOUT = 10.0
MAX_SSE_C_KEY_FILE_BYTES = 64 * 1024  # a regular file, read whole: no FIFO, no /dev/zero
# A Velero backup name (a Kubernetes object name; the checkpoint's grammar, docs/format.md §5.1).

_THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
     "TooManyRequests", "TooManyRequestsException", "RequestThrottled", "503"}
)


def _folder_key(prefix: str, name: str) -> str:
    return f"{prefix}/{BACKUPS_FOLDER}/{name}/" if prefix else f"{BACKUPS_FOLDER}/{name}/"


def _backups_key(prefix: str) -> str:
    return f"{prefix}/{BACKUPS_FOLDER}/" if prefix else f"{BACKUPS_FOLDER}/"


@dataclass(frozen=True)
class _Pin:
    """The tarball object as the first HEAD saw it."""

    size: int
    etag: str
    version_id: str | None


class S3Store:
    """One bucket reached through one boto3 client (thread-safe), with the SSE-C key and the
    write settings of the storage location. Every method turns failures into StorageError."""

    def __init__(self, client: Any, bucket: str, options: ConnectionOptions, sse_c_key: bytes | None) -> None:
        self.client = client
        self.bucket = bucket
        self.options = options
        self._sse_c: dict[str, Any] = (
            {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": sse_c_key} if sse_c_key else {}
        )

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- reading ---------------------------------------------------------------------------

    def list_folder(self, prefix: str) -> tuple[dict[str, int], list[str]]:
        """The objects directly in ``prefix`` (name -> size) and its sub-folders' names."""
        files: dict[str, int] = {}
        folders: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for item in page.get("Contents", ()):
                    name = item["Key"][len(prefix):]
                    if name:
                        files[name] = item.get("Size", 0)
                for common in page.get("CommonPrefixes", ()):
                    folders.append(common["Prefix"][len(prefix):].rstrip("/"))
        except Exception as e:
            raise self._error(e, "list", self.url(prefix)) from e
        return files, sorted(folders)

    def head(self, key: str) -> dict[str, Any] | None:
        """HEAD of an object, or None when there is no such object."""
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key,
                                                           **self._sse_c)
            return head
        except Exception as e:
            if _status(e) == 404 and _code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(e, "read", self.url(key)) from e

    def get_bytes(self, key: str, limit: int = MAX_OBJECT_BYTES) -> bytes | None:
        """A small object's bytes, or None when there is no such object."""
        url = self.url(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, **self._sse_c)
        except Exception as e:
            if _code(e) == "NoSuchKey":
                return None
            raise self._error(e, "read", url) from e
        body = response["Body"]
        try:
            length = response.get("ContentLength", 0)
            if length > limit:
                raise StorageError(f"{url} is {length} bytes, larger than {limit}")
            data: bytes = body.read()
        except StorageError:
            raise
        except Exception as e:
            raise self._error(e, "read", url) from e
        finally:
            body.close()
        if len(data) != length:
            raise StorageError(f"{url}: read {len(data)} bytes, the storage announced {length}")
        return data

    def get_prefix(self, key: str, n: int) -> tuple[bytes, int]:
        """(the first ``n`` bytes of an object, or all of a smaller one; its whole size)."""
        pin = self.pin_if_exists(key)
        if pin is None:
            raise StorageError(f"{self.url(key)}: no such object")
        stream = self.open_stream(key, _Pin(min(n, pin.size), pin.etag, pin.version_id),
                                  range_end=min(n, pin.size))
        try:
            data = b""
            while chunk := stream.read(n - len(data)):
                data += chunk
        finally:
            stream.close()
        return data, pin.size

    def pin(self, key: str) -> _Pin:
        pin = self.pin_if_exists(key)
        if pin is None:
            raise StorageError(f"{self.url(key)}: no such object")
        return pin

    def pin_if_exists(self, key: str) -> _Pin | None:
        head = self.head(key)
        if head is None:
            return None
        return _Pin(head.get("ContentLength", 0), head.get("ETag", ""), head.get("VersionId"))

    def open_stream(self, key: str, pin: _Pin, range_end: int | None = None) -> _ObjectStream:
        return _ObjectStream(self, key, pin, range_end)

    @contextmanager
    def open_seal_copy(self, key: str) -> Iterator[BinaryIO]:
        """The seal object ``key`` copied to an unnamed temporary file by a pinned stream (a
        seal is ~200 bytes per leaf: never held in memory). Its size, known from the HEAD, is
        checked against the seal limit before anything is copied; a full temporary folder is
        one StorageError naming it."""
        url = self.url(key)
        pin = self.pin_if_exists(key)
        if pin is None:
            raise StorageError(f"no seal at {url} (seal the backup first, or pass --seal)")
        if pin.size > MAX_SEAL_BYTES:
            raise StorageError(
                f"{url} is {pin.size} bytes, over the {MAX_SEAL_BYTES} byte limit of a seal"
            )
        with temporary_file("the seal") as f:
            stream = self.open_stream(key, pin)
            try:
                while chunk := stream.read(1 << 20):
                    try:
                        f.write(chunk)
                    except OSError as e:  # the temporary's file system is full
                        raise StorageError(
                            f"cannot copy {url} to a temporary file in {temp_dir_label()}: "
                            f"{e.strerror or e}"
                        ) from e
            finally:
                stream.close()
            f.seek(0)
            yield f

    # -- writing ---------------------------------------------------------------------------

    def put(self, key: str, data: bytes | BinaryIO, *, if_absent: bool) -> None:
        """Store ``data`` at ``key`` in one PUT (atomic: readers see the old object or the new).

        With ``if_absent`` an existing object is never replaced: a HEAD first (a clear refusal,
        and a guard on stores that ignore conditional headers), then a PUT with
        ``If-None-Match: *``, which closes the race on stores that honour it (AWS S3 since
        2024-08, MinIO, Ceph RGW, moto). A store that rejects the header as not implemented
        gets the HEAD check alone.
        """
        url = self.url(key)
        if if_absent and self.head(key) is not None:
            raise _seal_exists(url)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data,
                                  "ContentType": "application/octet-stream", **self._put_params()}
        start = None if isinstance(data, bytes) else data.tell()
        try:
            if if_absent:
                try:
                    self.client.put_object(IfNoneMatch="*", **params)
                except Exception as e:
                    if _status(e) != 501 and _code(e) != "NotImplemented":
                        raise
                    if start is not None:
                        data.seek(start)  # type: ignore[union-attr]  # a file: send it again
                    self.client.put_object(**params)  # HEAD-then-PUT on such stores
            else:
                self.client.put_object(**params)
        except Exception as e:
            if _status(e) == 412 or _code(e) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise _seal_exists(url) from e
            raise self._error(e, "write", url) from e

    def _put_params(self) -> dict[str, Any]:
        o = self.options
        params: dict[str, Any] = dict(self._sse_c)
        if not self._sse_c and o.server_side_encryption:
            params["ServerSideEncryption"] = o.server_side_encryption
            if o.kms_key_id:
                params["SSEKMSKeyId"] = o.kms_key_id
        elif not self._sse_c and o.kms_key_id:  # Velero: kmsKeyId alone means aws:kms
            params["ServerSideEncryption"] = "aws:kms"
            params["SSEKMSKeyId"] = o.kms_key_id
        if o.checksum_algorithm:
            params["ChecksumAlgorithm"] = o.checksum_algorithm.upper()
        return params

    # -- errors ----------------------------------------------------------------------------

    def _error(self, e: BaseException, action: str, url: str) -> StorageError:
        """A StorageError saying what failed, in one line. Anything that is not a failure to
        talk to the storage is a bug: it is raised again as it is, with its traceback."""
        message = _describe(e, action, url, self)
        if message is None:
            raise e
        return StorageError(message)


def _seal_exists(url: str) -> StorageError:
    return StorageError(f"{url} already exists (use --replace to overwrite it)")


class _ObjectStream:
    """A binary stream (``read(n)``) over one pinned object, for the archive reader.

    At most one ``read`` worth of bytes is held. When the connection breaks off, the stream
    resumes with a Range GET (If-Match the pinned ETag) up to MAX_RESUMES times. It returns b""
    only after exactly the pinned number of bytes: a short object is an error, never an end of
    file that the archive reader would mistake for a truncated (malformed) archive.
    """

    def __init__(self, store: S3Store, key: str, pin: _Pin, range_end: int | None = None) -> None:
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
                message = _describe(e, "read", self._url, self._store)
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
            message = _describe(e, "read", self._url, self._store)
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
        params: dict[str, Any] = {"Bucket": self._store.bucket, "Key": self._key, **self._store._sse_c}
        if pin.etag:  # every S3 store sends one; without it a change can only be seen by size
            params["IfMatch"] = pin.etag
        if self._range_end is not None:  # never 0: a read at the pinned size opens nothing
            params["Range"] = f"bytes={self._pos}-{self._range_end - 1}"
        elif self._pos:
            params["Range"] = f"bytes={self._pos}-"
        try:
            response = self._store.client.get_object(**params)
        except Exception as e:
            if _status(e) == 412 or _code(e) == "PreconditionFailed":
                raise StorageError(
                    f"{self._url} changed while it was being read (its ETag is no longer "
                    f"{pin.etag}): retry once the writer is done"
                ) from e
            if _code(e) == "NoSuchKey":
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
            except Exception:  # noqa: BLE001, S110 - closing a broken connection may fail too
                pass


def _reason(message: str) -> str:
    """The part of a one-line error after the URL ('read s3://x: reason' -> 'reason')."""
    return message.split(": ", 1)[1] if ": " in message else message


class S3Backup:
    """A backup folder ``s3://BUCKET/PREFIX/backups/NAME/`` (BackupSource of builder.py).

    ``seal_path`` is where the seal is read and written: ``s3://.../NAME/NAME-merkle.seal`` by
    default, or a local file given with ``--seal``.
    """

    def __init__(self, store: S3Store, prefix: str, name: str, seal_path: Path | None = None) -> None:
        self.store = store
        self.prefix = prefix
        self.name = name
        self.folder = _folder_key(prefix, name)
        self.tarball_key = f"{self.folder}{name}.tar.gz"
        self.seal_key = f"{self.folder}{name}{SEAL_SUFFIX}"
        self.local_seal = Path(seal_path) if seal_path else None
        self.seal_path: str | Path = self.local_seal or store.url(self.seal_key)
        self._pin: _Pin | None = None
        files, _ = store.list_folder(self.folder)
        if f"{name}.tar.gz" not in files:
            if not files:
                raise StorageError(f"{self.describe()}: no such backup (nothing in that folder)")
            raise StorageError(f"{self.describe()}: backup folder has no {name}.tar.gz")

    def describe(self) -> str:
        return self.store.url(self.folder.rstrip("/"))

    def identity_names(self) -> tuple[str, ...]:
        return (self.name,)  # a prefix is named by its own name, exactly

    def tarball_size(self) -> int:
        return self._pinned().size

    def _pinned(self) -> _Pin:
        if self._pin is None:
            self._pin = self.store.pin(self.tarball_key)
        return self._pin

    @contextmanager
    def open_tarball(self) -> Iterator[BinaryIO]:
        stream = self.store.open_stream(self.tarball_key, self._pinned())
        try:
            yield cast(BinaryIO, stream)  # read/readinto/readable: what the reader calls
        finally:
            stream.close()

    def object_names(self) -> list[str]:
        """Every object in the backup folder but the tarball and seals, sorted (§7.3)."""
        files, _ = self.store.list_folder(self.folder)
        return sorted(
            n for n in files
            if n != f"{self.name}.tar.gz" and not n.endswith(".seal") and not n.startswith(".")
        )

    def read_object(self, filename: str) -> bytes | None:
        if "/" in filename:
            return None
        return self.store.get_bytes(self.folder + filename)

    def has_seal(self) -> bool:
        if self.local_seal is not None:
            return self.local_seal.is_file()
        return self.store.head(self.seal_key) is not None

    @contextmanager
    def open_seal(self) -> Iterator[BinaryIO]:
        """The seal as a seekable file: a local one, or the object copied to a temporary file
        by a pinned stream (a seal is ~200 bytes per leaf: never held in memory)."""
        if self.local_seal is not None:
            with open_local_seal(self.local_seal) as f:
                yield f
            return
        with self.store.open_seal_copy(self.seal_key) as f:
            yield f

    def write_seal(self, data: bytes | BinaryIO, *, replace: bool) -> str:
        if self.local_seal is not None:
            write_atomic(self.local_seal, data, replace=replace)
            return str(self.local_seal)
        # Only ever inside backups/NAME/, which exists (it holds the tarball): never a new
        # top-level folder, which would make Velero mark the location Unavailable (§7.3).
        self.store.put(self.seal_key, data, if_absent=not replace)
        return str(self.seal_path)


class S3Bucket:
    """``s3://BUCKET/PREFIX``: the storage location that holds ``backups/<name>/`` folders."""

    def __init__(self, store: S3Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def describe(self) -> str:
        return self.store.url(self.prefix) if self.prefix else f"s3://{self.store.bucket}"

    def backup_names(self) -> list[str]:
        _, folders = self.store.list_folder(_backups_key(self.prefix))
        return folders

    def read_object(self, name: str, filename: str) -> bytes | None:
        return self.store.get_bytes(_folder_key(self.prefix, name) + filename)

    def has_seal(self, name: str) -> bool:
        return self.store.head(f"{_folder_key(self.prefix, name)}{name}{SEAL_SUFFIX}") is not None

    def read_seal_head(self, name: str) -> Any:
        """The head of the seal object (FormatError when it does not decode), from one ranged
        GET of its first bytes: a whole seal is not downloaded to tell it from a broken one."""
        key = f"{_folder_key(self.prefix, name)}{name}{SEAL_SUFFIX}"
        data, size = self.store.get_prefix(key, SEAL_HEAD_PREFIX_BYTES)
        return read_seal_head(io.BytesIO(data), whole=len(data) == size)

    def open(self, name: str) -> S3Backup:
        return S3Backup(self.store, self.prefix, name)


# -- connecting ---------------------------------------------------------------------------------


def read_sse_c_key(path: Path, warn: Callable[[str], None] | None = None) -> bytes:
    """The SSE-C key, read the way velero-plugin-for-aws reads ``customerKeyEncryptionFile``:
    its first 32 bytes, raw. A longer file is cut as the plugin cuts it, so both use one key
    (and the user is told: a hex or base64 key file is almost certainly a mistake)."""
    data = read_bounded(path, MAX_SSE_C_KEY_FILE_BYTES, follow=True, what="SSE-C key file")
    key, longer = data[:SSE_C_KEY_BYTES], len(data) > SSE_C_KEY_BYTES
    if len(key) != SSE_C_KEY_BYTES:
        raise StorageError(
            f"SSE-C key file {path} holds {len(key)} bytes; an SSE-C key is {SSE_C_KEY_BYTES} raw bytes"
        )
    if longer and warn is not None:
        warn(f"SSE-C key file {path} is longer than {SSE_C_KEY_BYTES} bytes: only its first "
             f"{SSE_C_KEY_BYTES} are used, as velero-plugin-for-aws does")
    return key


def connect(bucket: str, options: ConnectionOptions, *, pool_size: int = 10,
            warn: Callable[[str], None] | None = None) -> S3Store:
    """A client for ``bucket`` with the storage location's settings and the AWS credential chain
    (environment, --profile / AWS_PROFILE, shared credentials and config files, web identity,
    container and instance roles)."""
    sse_c_key = read_sse_c_key(options.sse_c_key_file, warn) if options.sse_c_key_file else None
    if options.ca_bundle:
        kind = non_regular_kind(options.ca_bundle, follow=True)
        if kind is not None:  # botocore would open it: never a FIFO or a device
            raise StorageError(f"CA bundle {options.ca_bundle} is {kind}, not a regular file")
        if not Path(options.ca_bundle).is_file():
            raise StorageError(f"CA bundle {options.ca_bundle}: no such file")
    try:
        import boto3
        import botocore.config
        import botocore.session
    except ImportError as e:  # pragma: no cover - boto3 is a dependency
        raise StorageError(f"S3 support needs boto3: {e}") from e
    try:
        core = botocore.session.Session(profile=options.profile)
        if options.credentials_file:
            core.set_config_variable("credentials_file", str(options.credentials_file))
        session = boto3.session.Session(botocore_session=core)
        mode = options.retry_mode or core.get_config_variable("retry_mode")
        if not options.retry_mode and _retry_mode_is_default(core):
            mode = DEFAULT_RETRY_MODE
        attempts = options.max_attempts or core.get_config_variable("max_attempts") or DEFAULT_MAX_ATTEMPTS
        connect_timeout, read_timeout, total = timeouts(options)
        config_kwargs: dict[str, Any] = {
            "signature_version": "s3v4",
            "s3": {"addressing_style": "path" if options.path_style else "auto"},
            "retries": {"mode": mode, "total_max_attempts": int(attempts)},
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "max_pool_connections": max(10, pool_size),
            "user_agent_extra": "merkle-backup",
        }
        if options.checksum_algorithm == "":  # Velero: checksumAlgorithm "" turns checksums off
            config_kwargs["request_checksum_calculation"] = "when_required"
            config_kwargs["response_checksum_validation"] = "when_required"
        verify: bool | str | None = None
        if options.insecure_skip_tls_verify:
            verify = False
            _silence_insecure_warnings()
        elif options.ca_bundle:
            verify = str(options.ca_bundle)
        elif options.ca_cert_pem:
            verify = _ca_file(options.ca_cert_pem)
        client = session.client(
            "s3",
            region_name=options.region or None,
            endpoint_url=options.endpoint_url or None,
            verify=verify,
            config=botocore.config.Config(**config_kwargs),
        )
        _Deadline(total, connect_timeout + read_timeout).register(client)
    except Exception as e:
        message = _describe(e, "connect to", options.endpoint_url or "S3", None)
        if message is None:
            raise
        raise StorageError(message) from e
    return S3Store(client, bucket, options, sse_c_key)


def timeouts(options: ConnectionOptions) -> tuple[float, float, float]:
    """(connect timeout, read timeout, total per operation) in seconds, as the client uses them."""
    total = float(options.timeout if options.timeout is not None else DEFAULT_TIMEOUT)
    connect = options.connect_timeout or min(MAX_CONNECT_TIMEOUT, total / 3)
    read = options.read_timeout or total / 3
    return connect, read, total


class DeadlineExceeded(Exception):
    """A storage operation would run past its total time (--timeout)."""

    def __init__(self, total: float) -> None:
        super().__init__(f"gave up after {total:g} s without an answer (--timeout {total:g})")
        self.total = total


class _Deadline:
    """Bounds a whole operation, retries included: botocore retries with backoff, and each
    attempt's connect and reads have their own timeouts, but nothing bounds their sum. The
    operation's start is noted in ``before-call`` (per thread: a call and all its attempts run
    in the caller's thread), and every attempt's request refuses to start when it could not be
    done by the deadline (an exception raised in ``request-created`` ends the call, no retry).
    """

    def __init__(self, total: float, attempt: float) -> None:
        self.total = total
        self.attempt = attempt
        self._local = threading.local()

    def register(self, client: Any) -> None:
        client.meta.events.register("before-call.s3", self._start)
        client.meta.events.register("request-created.s3", self._check)

    def _start(self, **kwargs: Any) -> None:
        self._local.deadline = time.monotonic() + self.total
        self._local.attempts = 0

    def _check(self, **kwargs: Any) -> None:
        deadline = getattr(self._local, "deadline", None)
        if deadline is None:
            return
        self._local.attempts += 1
        now = time.monotonic()
        if now >= deadline or (self._local.attempts > 1 and now + self.attempt > deadline):
            raise DeadlineExceeded(self.total)


def _retry_mode_is_default(core: Any) -> bool:
    """True unless AWS_RETRY_MODE or the profile's retry_mode chose a mode."""
    if os.environ.get("AWS_RETRY_MODE"):
        return False
    try:
        return not core.get_scoped_config().get("retry_mode")
    except Exception:  # noqa: BLE001 - a missing profile is reported when the client is made
        return True


def _silence_insecure_warnings() -> None:
    # The user asked for --insecure-skip-tls-verify; one warning per request would bury stderr.
    import warnings

    try:
        from urllib3.exceptions import InsecureRequestWarning
    except ImportError:  # pragma: no cover
        return
    warnings.simplefilter("ignore", InsecureRequestWarning)


_CA_FILES: list[str] = []


def _ca_file(pem: bytes) -> str:
    """botocore wants a CA bundle path; a BSL carries it inline (spec.objectStorage.caCert)."""
    try:
        fd, path = tempfile.mkstemp(prefix="merkle-backup-ca-", suffix=".pem")
    except OSError as e:
        raise StorageError(f"cannot write the BSL's caCert to a temporary file in "
                           f"{temp_dir_label()}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    except OSError as e:
        os.unlink(path)
        raise StorageError(f"cannot write the BSL's caCert to {path}: {e.strerror or e}") from e
    if not _CA_FILES:
        import atexit

        atexit.register(_remove_ca_files)
    _CA_FILES.append(path)
    return path


def _remove_ca_files() -> None:
    for path in _CA_FILES:
        try:
            os.unlink(path)
        except OSError:
            pass


# -- error messages -----------------------------------------------------------------------------


def _code(e: BaseException) -> str:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _status(e: BaseException) -> int:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0


def _describe(e: BaseException, action: str, url: str, store: S3Store | None) -> str | None:
    """One line for a failure talking to the storage; None for anything that is not one (a bug
    in this program, which must crash with its traceback)."""
    import botocore.exceptions as bx

    try:
        import urllib3.exceptions as ux

        stream_errors: tuple[type[BaseException], ...] = (ux.HTTPError, OSError)
    except ImportError:  # pragma: no cover
        stream_errors = (OSError,)
    where = f"{action} {url}"
    bucket = store.bucket if store else ""
    sse_c = bool(store and store._sse_c)
    if isinstance(e, bx.ClientError):
        code, status = _code(e), _status(e)
        message = e.response.get("Error", {}).get("Message", "") or ""
        attempts = e.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        if code == "NoSuchBucket" or (code == "404" and action == "list"):
            return f"{where}: no such bucket {bucket!r}"
        if code in ("NoSuchKey", "404", "NotFound"):
            return f"{where}: no such object"
        if code == "InvalidAccessKeyId":
            return f"{where}: access denied: the storage does not know this access key id (InvalidAccessKeyId)"
        if code == "SignatureDoesNotMatch":
            return f"{where}: access denied: the secret access key is wrong (SignatureDoesNotMatch)"
        if code in ("ExpiredToken", "TokenRefreshRequired", "InvalidToken"):
            return f"{where}: access denied: the session token has expired or is invalid ({code})"
        if code in _THROTTLE_CODES or status in (429, 503):
            label = f"{code}, HTTP {status}" if code and not code.isdigit() else f"HTTP {status}"
            return (f"{where}: the storage is throttling requests ({label}) "
                    f"and still was after {attempts + 1} attempts; try again later "
                    "(AWS_MAX_ATTEMPTS raises the number of attempts)")
        if status == 400 and not sse_c and action == "read" and (
                "encrypt" in message.lower() or not message):
            # S3 says "The object was stored using a form of Server Side Encryption..." (a HEAD
            # has no body, so only its status is known).
            return (f"{where}: bad request (HTTP 400, {code}): if the object is encrypted with "
                    f"a customer key (SSE-C), pass --sse-c-key FILE{': ' + message if message else ''}")
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled") or status == 403:
            hint = "wrong credentials or no permission"
            if sse_c and action == "read":
                hint += ", or a wrong SSE-C key (--sse-c-key)"
            return f"{where}: access denied (HTTP 403, {code}): {hint}"
        if code == "PermanentRedirect" or status == 301:
            return f"{where}: the bucket is in another region: pass --region ({message or code})"
        detail = f": {message}" if message else ""
        return f"{where}: {code or 'error'} (HTTP {status}){detail}"
    if isinstance(e, bx.NoCredentialsError):
        return (f"{where}: no AWS credentials found (environment, --profile, shared credentials "
                "file, or an instance/pod role)")
    if isinstance(e, bx.PartialCredentialsError):
        return f"{where}: incomplete AWS credentials: {e}"
    if isinstance(e, bx.ProfileNotFound):
        return f"{where}: {e}"
    if isinstance(e, bx.SSLError):
        return (f"{where}: TLS error: {_first_line(e)} (--ca-bundle FILE trusts a private CA; "
                "--insecure-skip-tls-verify turns checking off)")
    if isinstance(e, DeadlineExceeded):
        return f"{where}: the endpoint did not answer in time: {e}"
    if isinstance(e, bx.ConnectTimeoutError):
        return f"{where}: timed out connecting to the endpoint ({_first_line(e)})"
    if isinstance(e, bx.ReadTimeoutError):
        return f"{where}: the endpoint stopped answering (read timeout)"
    if isinstance(e, bx.EndpointConnectionError):
        endpoint = _endpoint_of(getattr(e, "kwargs", {}).get("endpoint_url", ""))
        return f"{where}: cannot connect to the endpoint {endpoint} (is it up? is --endpoint-url right?)"
    if isinstance(e, bx.ConnectionClosedError):
        return f"{where}: the endpoint closed the connection: {_first_line(e)}"
    if isinstance(e, getattr(bx, "ResponseStreamingError", ())):
        # botocore wraps urllib3's ProtocolError("Connection broken: ...", IncompleteRead(...)).
        inner = getattr(e, "kwargs", {}).get("error")
        args: tuple[Any, ...] = tuple(getattr(inner, "args", ()))
        cause = args[-1] if len(args) > 1 else inner
        shown = _first_line(cause) if isinstance(cause, BaseException) else str(cause)
        return f"{where}: the connection broke ({shown})"
    if isinstance(e, bx.IncompleteReadError):
        return f"{where}: the connection closed early ({_first_line(e)})"
    if isinstance(e, bx.FlexibleChecksumError):
        return f"{where}: the object's bytes do not match its stored checksum ({_first_line(e)})"
    if isinstance(e, bx.ParamValidationError):
        return f"{where}: {_first_line(e)}"
    if isinstance(e, (bx.BotoCoreError, bx.HTTPClientError)):
        return f"{where}: {_first_line(e)}"
    if isinstance(e, stream_errors):
        return f"{where}: {type(e).__name__}: {_first_line(e)}"
    return None


def _endpoint_of(url: str) -> str:
    """scheme://host:port of a request URL (the rest is noise in a one-line message)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else (url or "(unknown)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
