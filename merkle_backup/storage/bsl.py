"""Velero BackupStorageLocation manifests: the S3 settings (``ConnectionOptions``) and the
bucket and prefix of ``--bsl FILE`` (JSON, or the simple YAML of ``storage.yaml_subset``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from merkle_backup.errors import CannotCheck, UsageError
from merkle_backup.formats.strict import loads_json
from merkle_backup.storage.files import read_bounded
from merkle_backup.storage.options import (
    S3_SCHEME,
    ConnectionOptions,
    S3Url,
    check_endpoint_url,
    parse_s3_url,
)
from merkle_backup.storage.yaml_subset import YamlSubsetError, parse_simple_yaml

MAX_BSL_BYTES = 1 << 20
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


@dataclass(frozen=True)
class BackupStorageLocation:
    """What merkle-backup uses of a Velero BackupStorageLocation."""

    name: str
    location: S3Url
    options: ConnectionOptions
    notes: tuple[str, ...] = ()


def load_bsl(path: Path) -> BackupStorageLocation:
    """Read a BackupStorageLocation manifest (JSON or simple YAML) into connection options."""
    raw = read_bounded(path, MAX_BSL_BYTES, follow=True, error=CannotCheck)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CannotCheck(f"{path}: not UTF-8 text") from e
    if text.lstrip().startswith(("{", "[")):
        try:
            document = loads_json(text)
        except ValueError as e:
            raise CannotCheck(f"{path}: not valid JSON: {e}") from e
        documents = [document]
    else:
        try:
            documents = parse_simple_yaml(text)
        except YamlSubsetError as e:
            raise CannotCheck(
                f"{path}: {e} (only simple YAML is read; `kubectl get bsl NAME -o json` "
                "gives JSON, which always works)"
            ) from e
    return bsl_from_manifest(_pick_bsl(documents, path), path)


def _pick_bsl(documents: list[Any], path: Path) -> dict[str, Any]:
    found: list[dict[str, Any]] = []
    for document in documents:
        if not isinstance(document, dict):
            continue
        if document.get("kind") in ("List", "BackupStorageLocationList"):
            items = document.get("items")
            if isinstance(items, list):
                found.extend(i for i in items if isinstance(i, dict))
        else:
            found.append(document)
    found = [d for d in found if d.get("kind") == "BackupStorageLocation"]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise CannotCheck(
            f"{path}: {what} BackupStorageLocation objects; give a file with exactly one"
        )
    return found[0]


def bsl_from_manifest(
    obj: dict[str, Any], source: Path | str = "BackupStorageLocation"
) -> BackupStorageLocation:
    """The S3 settings of a BackupStorageLocation object (already parsed)."""
    def fail(message: str) -> CannotCheck:
        return CannotCheck(f"{source}: {message}")

    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise fail("no spec")
    provider = spec.get("provider")
    if isinstance(provider, str) and provider.rsplit("/", 1)[-1] not in (
        "aws",
        "velero-plugin-for-aws",
    ):
        raise fail(
            f"provider {provider!r} is not S3 (aws); only S3-compatible storage is supported"
        )
    storage = spec.get("objectStorage")
    if not isinstance(storage, dict) or not isinstance(storage.get("bucket"), str):
        raise fail("no spec.objectStorage.bucket")
    prefix = storage.get("prefix") or ""
    if not isinstance(prefix, str):
        raise fail("spec.objectStorage.prefix is not a string")
    try:
        location = parse_s3_url(f"{S3_SCHEME}{storage['bucket']}/{prefix.strip('/')}")
    except UsageError as e:
        raise fail(str(e)) from e
    config = spec.get("config") or {}
    if not isinstance(config, dict):
        raise fail("spec.config is not a map")
    config = {str(k): v for k, v in config.items()}
    for key, value in config.items():
        if not isinstance(value, (str, bool, int)):
            raise fail(f"spec.config.{key} is not a string")

    def text(key: str) -> str | None:
        value = config.get(key)
        return None if value is None else str(value)

    def flag(key: str) -> bool | None:
        value = config.get(key)
        if value is None:
            return None
        lowered = str(value).strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise fail(f"spec.config.{key} is {value!r}, not true or false")

    notes: list[str] = []
    if config.get("customerKeyEncryptionSecret"):
        notes.append("customerKeyEncryptionSecret is a Kubernetes Secret: mount it and pass "
                     "--sse-c-key FILE")
    if config.get("signatureVersion") not in (None, "", "4", "v4"):
        notes.append(f"signatureVersion {config['signatureVersion']} is ignored (SigV4 is used)")
    ca_cert = storage.get("caCert")
    ca_pem = None
    if isinstance(ca_cert, str) and ca_cert.strip():
        try:
            ca_pem = decode_ca_cert(ca_cert)
        except ValueError as e:
            raise fail(f"spec.objectStorage.caCert: {e}") from e
    endpoint = text("s3Url") or None
    if endpoint is not None:
        try:
            check_endpoint_url(endpoint, "spec.config.s3Url")
        except UsageError as e:
            raise fail(e.diagnostics()) from e
    key_file = text("customerKeyEncryptionFile")
    credentials = text("credentialsFile")
    options = ConnectionOptions(
        endpoint_url=endpoint,
        region=text("region") or None,
        profile=text("profile") or None,
        path_style=flag("s3ForcePathStyle"),
        insecure_skip_tls_verify=flag("insecureSkipTLSVerify"),
        sse_c_key_file=Path(key_file) if key_file else None,
        credentials_file=Path(credentials) if credentials else None,
        server_side_encryption=text("serverSideEncryption") or None,
        kms_key_id=text("kmsKeyId") or None,
        checksum_algorithm=text("checksumAlgorithm"),
        ca_cert_pem=ca_pem,
    )
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    name = name if isinstance(name, str) else "(unnamed)"
    return BackupStorageLocation(name, location, options, tuple(notes))


def decode_ca_cert(value: str) -> bytes:
    """``spec.objectStorage.caCert``: base64 of a PEM bundle (ValueError when it is not)."""
    try:
        pem = base64.b64decode("".join(value.split()), validate=True)
    except ValueError as e:
        raise ValueError(f"not base64 ({e})") from e
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("no PEM certificate in it")
    return pem


