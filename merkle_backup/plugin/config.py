"""The BackupStorageLocation ``config`` the plugin is given at Init (docs/velero.md).

Every key velero-plugin-for-aws accepts keeps its meaning (velero-plugin-for-aws
``object_store.go:96-114, 185, 336-520``), the keys Velero adds itself (``bucket``, ``prefix``,
``caCert``, ``credentialsFile``) too, and four are ours. An unknown key is refused by name, as
the AWS plugin refuses it: a typo in ``allowUnsealed`` must not silently leave the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from merkle_backup.errors import CannotCheck, UsageError
from merkle_backup.storage.bsl import bsl_from_manifest
from merkle_backup.storage.options import ConnectionOptions

# velero-plugin-for-aws object_store.go:96-114 (the keys its Init accepts).
AWS_KEYS = frozenset({
    "region", "s3Url", "publicUrl", "kmsKeyId", "customerKeyEncryptionFile",
    "customerKeyEncryptionSecret", "s3ForcePathStyle", "signatureVersion", "credentialsFile",
    "profile", "serverSideEncryption", "insecureSkipTLSVerify", "enableSharedConfig", "tagging",
    "checksumAlgorithm",
})
# Added by Velero from the BackupStorageLocation (pkg/persistence/object_store.go,
# NewObjectBackupStoreGetter: bucket, prefix, caCert; credentialsFile from spec.credential).
VELERO_KEYS = frozenset({"bucket", "prefix", "caCert"})
SIGNING_KEY, TRUSTED_KEYS, ALLOW_UNSEALED, LOG = "signingKey", "trustedKeys", "allowUnsealed", "log"
LOG_NAME = "logName"
OUR_KEYS = frozenset({SIGNING_KEY, TRUSTED_KEYS, ALLOW_UNSEALED, LOG, LOG_NAME})
_TRUE, _FALSE = frozenset({"true"}), frozenset({"false", ""})
PLUGIN_TIMEOUT = 900.0  # seconds one storage operation may take, its retries included


@dataclass(frozen=True)
class PluginConfig:
    bucket: str
    prefix: str                      # "" or "a/b", no slashes at either end
    options: ConnectionOptions
    signing_key: str                 # a key file's path or a key reference (docs/format.md §6.1)
    trusted_keys: tuple[Path, ...]   # empty: the signing key's own public key
    allow_unsealed: bool = False
    log: str | None = None           # a transparency log URL (docs/format.md §12)
    log_name: str | None = None      # its name, when one key signs several logs (§12.2)
    public_url: str | None = None
    tagging: str | None = None
    notes: tuple[str, ...] = field(default=())


def parse_config(config: dict[str, str]) -> PluginConfig:
    """The plugin's settings from Velero's Init config; UsageError (INVALID_ARGUMENT at Init)
    names every problem it finds first."""
    unknown = sorted(set(config) - AWS_KEYS - VELERO_KEYS - OUR_KEYS - {"credentialsFile"})
    if unknown:
        raise UsageError(
            "unknown config key" + ("s " if len(unknown) > 1 else " ") + ", ".join(unknown)
            + " (accepted: velero-plugin-for-aws's keys and " + ", ".join(sorted(OUR_KEYS)) + ")"
        )
    bucket = config.get("bucket", "")
    if not bucket:
        raise UsageError("no bucket in the config (Velero sets it from the BackupStorageLocation)")
    if not config.get("s3Url"):
        # Kopia (fs-backup, the data mover) picks its S3 backend for a provider Velero does not
        # know only when s3Url is set (pkg/repository/config/config.go:39-52).
        raise UsageError("s3Url is required (e.g. https://s3.REGION.amazonaws.com): Velero's "
                         "kopia repository finds S3 through it for this provider")
    signing_key = config.get(SIGNING_KEY, "")
    if not signing_key:
        raise UsageError(f"{SIGNING_KEY} is required: the path of the private key file "
                         "mounted from a Secret, or a key reference (awskms:///..., "
                         "hashivault://..., pkcs11:...)")
    allow = config.get(ALLOW_UNSEALED, "").strip().lower()
    if allow not in _TRUE | _FALSE:
        raise UsageError(f"{ALLOW_UNSEALED} is {config[ALLOW_UNSEALED]!r}: \"true\" or \"false\"")
    aws = {k: v for k, v in config.items() if k in AWS_KEYS or k == "credentialsFile"}
    ca_cert = config.get("caCert", "")
    try:
        bsl = bsl_from_manifest({
            "kind": "BackupStorageLocation",
            "metadata": {"name": "plugin"},
            "spec": {"provider": "aws", "config": aws,
                     "objectStorage": {"bucket": bucket, "prefix": config.get("prefix", "")}},
        }, "BackupStorageLocation config")
    except CannotCheck as e:  # from the manifest reader: a bad value
        raise UsageError(str(e)) from e
    # Velero waits on its ObjectStore calls without a deadline of its own; the CLI's one-minute
    # default (storage.s3) would cut a large multipart upload's completion short.
    options = ConnectionOptions(timeout=PLUGIN_TIMEOUT).over(bsl.options)
    if ca_cert.strip():
        # Velero passes the BackupStorageLocation's caCert decoded: PEM text, not base64.
        if "-----BEGIN CERTIFICATE-----" not in ca_cert:
            raise UsageError("caCert holds no PEM certificate")
        options = ConnectionOptions(ca_cert_pem=ca_cert.encode()).over(options)
    trusted = tuple(Path(p.strip()) for p in config.get(TRUSTED_KEYS, "").split(",") if p.strip())
    log = config.get(LOG, "").strip() or None
    if log is not None:
        if not log.startswith("s3://"):
            raise UsageError(f"{LOG} {log!r}: an s3://BUCKET/PREFIX URL (the plugin runs in "
                             "Velero's pod, whose files do not last)")
        location = f"s3://{bsl.location.bucket}/{bsl.location.prefix}".rstrip("/") + "/"
        if (log.rstrip("/") + "/").startswith(location):
            # A new top-level folder under Velero's prefix marks the location Unavailable.
            raise UsageError(f"{LOG} {log} is inside the storage location {location}: put the "
                             "log elsewhere (another bucket or prefix)")
    log_name = config.get(LOG_NAME, "").strip() or None
    if log_name is not None and log is None:
        raise UsageError(f"{LOG_NAME} is set but {LOG} is not")
    return PluginConfig(
        bucket=bsl.location.bucket, prefix=bsl.location.prefix, options=options,
        signing_key=signing_key, trusted_keys=trusted, allow_unsealed=allow in _TRUE,
        log=log, log_name=log_name, public_url=config.get("publicUrl") or None,
        tagging=config.get("tagging") or None,
        notes=bsl.notes,
    )
