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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast

from merkle_backup.errors import StorageError
from merkle_backup.formats.seal import MAX_SEAL_BYTES, SEAL_HEAD_PREFIX_BYTES, read_seal_head
from merkle_backup.storage.files import (
    temp_dir_label,
    temporary_file,
)
from merkle_backup.storage.local import MAX_OBJECT_BYTES, open_local_seal, write_atomic
from merkle_backup.storage.options import ConnectionOptions
from merkle_backup.storage.s3.errors import describe_error, error_code, http_status
from merkle_backup.storage.s3.stream import ObjectStream, Pin
from merkle_backup.velero import BACKUPS_FOLDER, SEAL_SUFFIX, is_ours


def _folder_key(prefix: str, name: str) -> str:
    return f"{prefix}/{BACKUPS_FOLDER}/{name}/" if prefix else f"{BACKUPS_FOLDER}/{name}/"


def _backups_key(prefix: str) -> str:
    return f"{prefix}/{BACKUPS_FOLDER}/" if prefix else f"{BACKUPS_FOLDER}/"


class S3Store:
    """One bucket reached through one boto3 client (thread-safe), with the SSE-C key and the
    write settings of the storage location. Every method turns failures into StorageError."""

    def __init__(
        self, client: Any, bucket: str, options: ConnectionOptions, sse_c_key: bytes | None
    ) -> None:
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
            if http_status(e) == 404 and error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(e, "read", self.url(key)) from e

    def get_bytes(self, key: str, limit: int = MAX_OBJECT_BYTES) -> bytes | None:
        """A small object's bytes, or None when there is no such object."""
        url = self.url(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, **self._sse_c)
        except Exception as e:
            if error_code(e) == "NoSuchKey":
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

    def get_prefix(self, key: str, n: int, pin: Pin | None = None) -> tuple[bytes, int]:
        """(the first ``n`` bytes of an object, or all of a smaller one; its whole size), of
        the version ``pin`` names when the caller has pinned it already (no second HEAD)."""
        pin = pin or self.pin(key)
        stream = self.open_stream(key, Pin(min(n, pin.size), pin.etag, pin.version_id),
                                  range_end=min(n, pin.size))
        try:
            data = b""
            while chunk := stream.read(n - len(data)):
                data += chunk
        finally:
            stream.close()
        return data, pin.size

    def pin(self, key: str) -> Pin:
        pin = self.pin_if_exists(key)
        if pin is None:
            raise StorageError(f"{self.url(key)}: no such object")
        return pin

    def pin_if_exists(self, key: str) -> Pin | None:
        head = self.head(key)
        if head is None:
            return None
        return Pin(head.get("ContentLength", 0), head.get("ETag", ""), head.get("VersionId"))

    def open_stream(self, key: str, pin: Pin, range_end: int | None = None) -> ObjectStream:
        return ObjectStream(self, key, pin, range_end)

    @contextmanager
    def open_seal_copy(self, key: str, pin: Pin | None = None) -> Iterator[BinaryIO]:
        """The seal object ``key`` copied to an unnamed temporary file by a pinned stream (a
        seal is ~200 bytes per leaf: never held in memory). Its size, known from the HEAD, is
        checked against the seal limit before anything is copied; a full temporary folder is
        one StorageError naming it. ``pin``: the version, when the caller has its HEAD."""
        url = self.url(key)
        pin = pin or self.pin_if_exists(key)
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
                    if http_status(e) != 501 and error_code(e) != "NotImplemented":
                        raise
                    if start is not None:
                        data.seek(start)  # type: ignore[union-attr]  # a file: send it again
                    self.client.put_object(**params)  # HEAD-then-PUT on such stores
            else:
                self.client.put_object(**params)
        except Exception as e:
            if http_status(e) == 412 or error_code(e) in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                raise _seal_exists(url) from e
            raise self._error(e, "write", url) from e

    def upload_stream(self, key: str, chunks: Iterable[bytes], *,
                      before_commit: Callable[[], None] | None = None,
                      tagging: str | None = None) -> int:
        """Store the concatenation of ``chunks`` at ``key`` (the Velero plugin's PutObject):
        one PUT below ``UPLOAD_PART_SIZE``, else a multipart upload whose parts go out while
        the next one is read (at most ``UPLOAD_WORKERS`` in flight, so memory stays bounded).

        Nothing is visible at ``key`` until every chunk arrived and ``before_commit`` (if given)
        returned: an exception from either aborts the upload (the multipart upload is aborted,
        the single PUT never sent) and is raised as it is. Returns the object's size.
        """
        url = self.url(key)
        extra = self._put_params()
        if tagging:
            extra["Tagging"] = tagging
        buffer = bytearray()
        size = 0
        upload: _Multipart | None = None
        source = iter(chunks)
        try:
            while True:
                try:
                    chunk = next(source)
                except StopIteration:
                    break
                except BaseException as e:  # the caller's stream failed, not the storage
                    raise _CallerFailed(e) from e
                buffer += chunk
                size += len(chunk)
                if len(buffer) >= UPLOAD_PART_SIZE:
                    if upload is None:
                        upload = _Multipart(self, key, extra)
                    upload.send(bytes(buffer))
                    buffer.clear()
            if upload is not None and buffer:
                upload.send(bytes(buffer))
            if before_commit is not None:
                try:
                    before_commit()
                except BaseException as e:
                    raise _CallerFailed(e) from e
            if upload is None:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer),
                                       ContentType="application/octet-stream", **extra)
            else:
                upload.complete()
                upload = None
        except BaseException as e:
            if upload is not None:
                upload.abort()
            if isinstance(e, _CallerFailed):
                raise e.inner from None  # a refusal, a broken stream or a bug: as it is
            if not isinstance(e, Exception):
                raise
            raise self._error(e, "write", url) from e
        return size

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (recursively), as ListObjectsV2 returns them."""
        keys: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", ()))
        except Exception as e:
            raise self._error(e, "list", self.url(prefix)) from e
        return keys

    def list_prefixes(self, prefix: str, delimiter: str) -> list[str]:
        """The common prefixes under ``prefix`` up to ``delimiter`` (whole keys, delimiter
        included), as ListObjectsV2 returns them."""
        found: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix,
                                           Delimiter=delimiter):
                found.extend(common["Prefix"] for common in page.get("CommonPrefixes", ()))
        except Exception as e:
            raise self._error(e, "list", self.url(prefix)) from e
        return found

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as e:
            raise self._error(e, "delete", self.url(key)) from e

    def presign(self, key: str, ttl_seconds: int, client: Any = None) -> str:
        """A presigned GET URL for ``key`` (through ``client``, e.g. one for a public URL)."""
        try:
            url: str = (client or self.client).generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key, **self._sse_c},
                ExpiresIn=ttl_seconds)
        except Exception as e:
            raise self._error(e, "sign a URL for", self.url(key)) from e
        return url

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
        message = describe_error(e, action, url, bucket=self.bucket, sse_c=bool(self._sse_c))
        if message is None:
            raise e
        return StorageError(message)


class _CallerFailed(Exception):
    """What the caller of ``upload_stream`` raised (its chunks or its check), carried past the
    storage's error handling."""

    def __init__(self, inner: BaseException) -> None:
        super().__init__(str(inner))
        self.inner = inner


# The plugin's streaming uploads: parts of 8 MiB (velero-plugin-for-aws uses 5 MiB), at most
# four in flight: at most ~40 MiB held per upload.
UPLOAD_PART_SIZE = 8 << 20
UPLOAD_WORKERS = 4


class _Multipart:
    """One multipart upload whose parts are sent by a small pool while the caller reads on."""

    def __init__(self, store: S3Store, key: str, extra: dict[str, Any]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.store, self.key = store, key
        self.part_params = {k: v for k, v in extra.items()
                            if k.startswith("SSECustomer") or k == "ChecksumAlgorithm"}
        response = store.client.create_multipart_upload(
            Bucket=store.bucket, Key=key, ContentType="application/octet-stream", **extra)
        self.upload_id: str = response["UploadId"]
        self.pool = ThreadPoolExecutor(UPLOAD_WORKERS, thread_name_prefix="upload")
        self.pending: list[Any] = []
        self.parts: list[dict[str, Any]] = []

    def send(self, data: bytes) -> None:
        number = len(self.pending) + 1
        self.pending.append(self.pool.submit(self._part, number, data))
        in_flight = [f for f in self.pending if not f.done()]
        if len(in_flight) >= UPLOAD_WORKERS:
            in_flight[0].result()  # wait for the oldest: bounded memory
        for f in self.pending:
            if f.done():
                f.result()  # a failed part fails the upload now

    def _part(self, number: int, data: bytes) -> dict[str, Any]:
        response = self.store.client.upload_part(
            Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
            Body=data, **self.part_params)
        part = {"PartNumber": number, "ETag": response["ETag"]}
        part.update({k: v for k, v in response.items() if k.startswith("Checksum")
                     and k != "ChecksumType"})
        return part

    def complete(self) -> None:
        parts = [f.result() for f in self.pending]
        self.pool.shutdown()
        self.store.client.complete_multipart_upload(
            Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id,
            MultipartUpload={"Parts": parts})

    def abort(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception:  # best effort: the store expires abandoned uploads by its own rules
            pass


def _seal_exists(url: str) -> StorageError:
    return StorageError(f"{url} already exists (use --replace to overwrite it)")


class S3Backup:
    """A backup folder ``s3://BUCKET/PREFIX/backups/NAME/`` (BackupSource of builder.py).

    ``seal_path`` is where the seal is read and written: ``s3://.../NAME/NAME-merkle.seal`` by
    default, or a local file given with ``--seal``.
    """

    def __init__(
        self, store: S3Store, prefix: str, name: str, seal_path: Path | None = None
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.name = name
        self.folder = _folder_key(prefix, name)
        self.tarball_key = f"{self.folder}{name}.tar.gz"
        self.seal_key = f"{self.folder}{name}{SEAL_SUFFIX}"
        self.local_seal = Path(seal_path) if seal_path else None
        self.seal_path: str | Path = self.local_seal or store.url(self.seal_key)
        self._pin: Pin | None = None
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

    def _pinned(self) -> Pin:
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
            if n != f"{self.name}.tar.gz" and not is_ours(n) and not n.startswith(".")
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
