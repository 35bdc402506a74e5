"""How to reach S3-compatible storage: ``s3://BUCKET/PREFIX`` URLs (``parse_s3_url``) and the
connection settings, named after the BackupStorageLocation config keys Velero users already
have (docs/velero.md). No boto3 here: ``storage.s3`` reads these; ``storage.resolve`` and
``storage.bsl`` fill them from the command line and a BSL manifest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from merkle_backup.display import redacted
from merkle_backup.errors import UsageError

S3_SCHEME = "s3://"
# S3 bucket names, loosely (S3-compatible stores accept a little more than AWS does).
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")


@dataclass(frozen=True)
class S3Url:
    bucket: str
    prefix: str  # no leading or trailing "/"; "" for the bucket's root

    def __str__(self) -> str:
        return (
            f"{S3_SCHEME}{self.bucket}/{self.prefix}"
            if self.prefix
            else f"{S3_SCHEME}{self.bucket}"
        )


def parse_s3_url(text: str) -> S3Url:
    """``s3://BUCKET[/PREFIX...]`` -> S3Url; UsageError for anything else (the text shown
    without any user or password in it)."""
    shown = redacted(text)
    if not text.startswith(S3_SCHEME):
        raise UsageError(f"{shown!r} is not an s3:// URL")
    bucket, _, key = text[len(S3_SCHEME):].partition("/")
    if "@" in bucket:
        raise UsageError(f"{shown}: an s3:// URL holds no user or password (give credentials "
                         "with --profile, or the BSL's credentialsFile)")
    if not _BUCKET.fullmatch(bucket):
        raise UsageError(f"{shown}: {bucket!r} is not a bucket name")
    key = key.strip("/")
    segments = key.split("/") if key else []
    if any(s in ("", ".", "..") for s in segments):
        raise UsageError(f"{shown}: empty, '.' or '..' segment in the key prefix")
    return S3Url(bucket, key)


def check_endpoint_url(text: str, what: str) -> str:
    """An S3 endpoint URL (``--endpoint-url``, a BSL's ``s3Url``) checked before any library
    sees it: http or https, a host, a port that is a number, no user or password (they would
    be printed in error lines and CronJob logs), no control characters or spaces. UsageError
    with one line (the URL shown redacted) for anything else."""
    from urllib.parse import urlsplit

    shown = redacted(text)
    if any(ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F for c in text):
        raise UsageError(f"{what} {shown!r}: a control character or space in the URL")
    try:
        parts = urlsplit(text)
        port = parts.port  # ValueError when not a number in 0-65535
    except ValueError as e:
        raise UsageError(f"{what} {shown!r}: not a URL ({e})") from e
    if parts.scheme.lower() not in ("http", "https"):
        hint = f"; did you mean http://{text}?" if not parts.netloc and "://" not in text else ""
        raise UsageError(f"{what} {shown!r}: give an http:// or https:// URL{hint}")
    if "@" in parts.netloc:
        raise UsageError(f"{what} {shown!r}: a user or password in the URL would be shown in "
                         "logs; give credentials with --profile or the BSL's credentialsFile")
    if not parts.hostname:
        raise UsageError(f"{what} {shown!r}: no host")
    del port
    return text


@dataclass(frozen=True)
class ConnectionOptions:
    """How to reach S3-compatible storage. ``None`` means "not given" (the AWS defaults, or the
    BackupStorageLocation's value when ``bsl`` is set; a value given here wins over the BSL's).

    BSL config key / field -> option: ``s3Url`` endpoint_url, ``region``, ``profile``,
    ``s3ForcePathStyle`` path_style, ``caCert`` ca_cert_pem, ``insecureSkipTLSVerify``,
    ``customerKeyEncryptionFile`` sse_c_key_file, ``credentialsFile``, ``serverSideEncryption``,
    ``kmsKeyId``, ``checksumAlgorithm`` ("" turns request checksums off, as in Velero).
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    path_style: bool | None = None
    ca_bundle: Path | None = None
    insecure_skip_tls_verify: bool | None = None
    sse_c_key_file: Path | None = None
    credentials_file: Path | None = None
    server_side_encryption: str | None = None
    kms_key_id: str | None = None
    checksum_algorithm: str | None = None
    ca_cert_pem: bytes | None = field(default=None, repr=False)
    bsl: Path | None = None
    # Retries and timeouts; None: AWS_RETRY_MODE / AWS_MAX_ATTEMPTS / the profile, else
    # standard mode and 5 attempts (storage.s3).
    retry_mode: str | None = None
    max_attempts: int | None = None
    # Seconds a storage operation may take, all its attempts and retries included (--timeout);
    # None: storage.s3.DEFAULT_TIMEOUT. Each connect and each read of an attempt waits at most
    # a third of it (connect at most 10 s), unless set here (storage.s3.timeouts).
    timeout: float | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None

    def checked(self, what: str = "--endpoint-url") -> ConnectionOptions:
        """These options, once the endpoint URL is checked (``check_endpoint_url``)."""
        if self.endpoint_url is not None:
            check_endpoint_url(self.endpoint_url, what)
        return self

    def over(self, base: ConnectionOptions) -> ConnectionOptions:
        """These options, with every unset one taken from ``base``."""
        values = {
            name: getattr(self, name) if getattr(self, name) is not None else getattr(base, name)
            for name in self.__dataclass_fields__
        }
        return ConnectionOptions(**values)


__all__ = ["ConnectionOptions"]
