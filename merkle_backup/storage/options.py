"""How to reach S3-compatible storage: the settings, named after the BackupStorageLocation
config keys Velero users already have (docs/velero.md). No boto3 here: ``storage.s3`` reads
these, ``storage.resolve`` fills them from the command line and a BSL manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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

    def over(self, base: ConnectionOptions) -> ConnectionOptions:
        """These options, with every unset one taken from ``base``."""
        values = {
            name: getattr(self, name) if getattr(self, name) is not None else getattr(base, name)
            for name in self.__dataclass_fields__
        }
        return ConnectionOptions(**values)


__all__ = ["ConnectionOptions"]
