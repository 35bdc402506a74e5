"""Connecting: one boto3 client per bucket with the storage location's settings (retries,
timeouts within one --timeout deadline, TLS and CA bundles, the SSE-C key)."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from merkle_backup.errors import StorageError
from merkle_backup.storage.files import (
    MAX_CA_BUNDLE_BYTES,
    MAX_CREDENTIALS_FILE_BYTES,
    check_library_file,
    read_bounded,
    temp_dir_label,
)
from merkle_backup.storage.options import ConnectionOptions
from merkle_backup.storage.s3.errors import DeadlineExceeded, describe_error
from merkle_backup.storage.s3.store import S3Store

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


def read_sse_c_key(path: Path, warn: Callable[[str], None] | None = None) -> bytes:
    """The SSE-C key, read the way velero-plugin-for-aws reads ``customerKeyEncryptionFile``:
    its first 32 bytes, raw. A longer file is cut as the plugin cuts it, so both use one key
    (and the user is told: a hex or base64 key file is almost certainly a mistake)."""
    data = read_bounded(path, MAX_SSE_C_KEY_FILE_BYTES, follow=True, what="SSE-C key file")
    key, longer = data[:SSE_C_KEY_BYTES], len(data) > SSE_C_KEY_BYTES
    if len(key) != SSE_C_KEY_BYTES:
        raise StorageError(
            f"SSE-C key file {path} holds {len(key)} bytes; an SSE-C key is {SSE_C_KEY_BYTES} "
            "raw bytes"
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
    # botocore opens these itself: never a FIFO, a device or a giant file (T72).
    if options.ca_bundle:
        check_library_file(options.ca_bundle, MAX_CA_BUNDLE_BYTES, "CA bundle")
    if options.credentials_file:
        check_library_file(options.credentials_file, MAX_CREDENTIALS_FILE_BYTES,
                           "credentials file")
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
        attempts = (
            options.max_attempts or core.get_config_variable("max_attempts") or DEFAULT_MAX_ATTEMPTS
        )
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
        message = describe_error(e, "connect to", options.endpoint_url or "S3")
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
    except Exception:
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
