"""From what the user typed to a backup source: a local folder or tarball, or S3.

* ``open_backup("s3://BUCKET/PREFIX/backups/NAME", options)`` -> ``S3Backup``; anything else is a
  local path -> ``LocalBackup``. With ``--bsl`` a bare backup NAME is looked up in the
  BackupStorageLocation's bucket and prefix.
* ``open_location("s3://BUCKET/PREFIX" or a folder, options)`` -> the storage location that holds
  ``backups/<name>/`` folders, for ``seal-all`` and ``audit``.
* ``load_bsl``, which reads the S3 settings (``storage.options.ConnectionOptions``) from a
  BackupStorageLocation manifest (JSON, or the plain YAML that ``kubectl get bsl -o yaml`` and
  hand-written manifests use: see ``parse_simple_yaml``).

Nothing here imports boto3: ``storage.s3`` is imported only when an ``s3://`` location is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from merkle_backup.errors import UsageError
from merkle_backup.storage.local import (
    LocalBackup,
    LocalBucket,
)
from merkle_backup.storage.options import S3_SCHEME, ConnectionOptions, S3Url, parse_s3_url
from merkle_backup.storage.source import BackupSource, Location
from merkle_backup.velero import BACKUPS_FOLDER, is_backup_name

if TYPE_CHECKING:  # only --bsl reads a BackupStorageLocation: imported where it is loaded
    from merkle_backup.storage.bsl import BackupStorageLocation

# -- BACKUP and LOCATION strings ----------------------------------------------------------------


def split_backup_url(text: str) -> tuple[S3Url, str]:
    """``s3://BUCKET/PREFIX/backups/NAME`` -> (location s3://BUCKET/PREFIX, NAME)."""
    url = parse_s3_url(text)
    segments = url.prefix.split("/") if url.prefix else []
    if len(segments) < 2 or segments[-2] != BACKUPS_FOLDER:
        raise UsageError(
            f"{text}: an S3 backup is s3://BUCKET[/PREFIX]/{BACKUPS_FOLDER}/NAME (Velero's layout)"
        )
    name = segments[-1]
    if not is_backup_name(name):
        raise UsageError(f"{text}: {name!r} is not a Velero backup name")
    return S3Url(url.bucket, "/".join(segments[:-2])), name


Warn = Callable[[str], None]


def open_backup(backup: str | Path, options: ConnectionOptions | None = None,
                seal_path: Path | None = None, *, warn: Warn | None = None) -> BackupSource:
    """The BackupSource for BACKUP: S3Backup for s3:// URLs (or a bare NAME with --bsl),
    LocalBackup for a local folder or tarball."""
    options = options or ConnectionOptions()
    text = str(backup)
    bsl = _load_bsl(options.bsl) if options.bsl else None
    if text.startswith(S3_SCHEME) or (bsl is not None and _is_bare_name(text)):
        if text.startswith(S3_SCHEME):
            location, name = split_backup_url(text)
        else:
            assert bsl is not None
            location, name = bsl.location, text
        from merkle_backup.storage.s3 import S3Backup

        store = _connect(location.bucket, options, bsl, warn=warn)
        return S3Backup(store, location.prefix, name, seal_path)
    return LocalBackup(Path(backup), seal_path)


def open_location(location: str | None, options: ConnectionOptions | None = None,
                  *, pool_size: int = 10, warn: Warn | None = None) -> Location:
    """The storage location for ``seal-all`` / ``audit``: S3Bucket or LocalBucket. Without
    LOCATION, the BackupStorageLocation's bucket and prefix (--bsl)."""
    options = options or ConnectionOptions()
    bsl = _load_bsl(options.bsl) if options.bsl else None
    if location is None:
        if bsl is None:
            raise UsageError("give a LOCATION (s3://BUCKET/PREFIX or a folder) or --bsl FILE")
        url = bsl.location
    elif location.startswith(S3_SCHEME):
        url = parse_s3_url(location)
    else:
        return LocalBucket(Path(location))
    from merkle_backup.storage.s3 import S3Bucket

    return S3Bucket(_connect(url.bucket, options, bsl, pool_size=pool_size, warn=warn), url.prefix)


def _load_bsl(path: Path) -> BackupStorageLocation:
    from merkle_backup.storage.bsl import load_bsl

    return load_bsl(path)


def _is_bare_name(text: str) -> bool:
    return is_backup_name(text) and not Path(text).exists()


def _connect(bucket: str, options: ConnectionOptions, bsl: BackupStorageLocation | None,
             *, pool_size: int = 10, warn: Warn | None = None) -> Any:
    from merkle_backup.storage.s3 import connect

    effective = options.over(bsl.options) if bsl is not None else options
    if bsl is not None and warn is not None:
        for note in bsl.notes:
            warn(note)
    return connect(bucket, effective, pool_size=pool_size, warn=warn)
