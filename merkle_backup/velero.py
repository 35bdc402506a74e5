"""What we read from Velero's own objects (../shared/VELERO.md §3)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from merkle_backup.errors import CannotCheck

# The bucket layout: <prefix>/backups/<name>/<name>.tar.gz, velero-backup.json and sidecars.
BACKUPS_FOLDER = "backups"
BACKUP_OBJECT = "velero-backup.json"
# Ours, beside Velero's objects (Velero deletes the folder, seal included, with the backup).
SEAL_SUFFIX = "-merkle.seal"
# The Velero plugin's per-object records of what Velero wrote (docs/format.md §13), beside the
# object they describe: ``<object>.merkle-record`` and, for the tarball, its leaves.
RECORD_SUFFIX = ".merkle-record"
LEAVES_SUFFIX = ".merkle-leaves"


def is_ours(filename: str) -> bool:
    """A file merkle-backup writes into a backup folder (a seal, a plugin record): never one of
    Velero's objects, so never sealed nor counted as one."""
    return filename.endswith((".seal", RECORD_SUFFIX, LEAVES_SUFFIX))
# A Backup's name is a Kubernetes object name (DNS-1123 subdomain): the folder backups/<name>/.
BACKUP_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def is_backup_name(text: str) -> bool:
    return BACKUP_NAME.fullmatch(text) is not None

# A namespace's name is a DNS-1123 label: what `--namespace` must be (no glob can be one).
NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def is_namespace_name(text: str) -> bool:
    return NAMESPACE_NAME.fullmatch(text) is not None


def check_namespace_name(name: str, flag: str = "--namespace") -> None:
    """UsageError unless ``name`` can be a namespace: ``'prod*'`` or ``'*'`` match no namespace
    exactly, so they would select nothing and verify nothing (docs/threat-model.md T75)."""
    from merkle_backup.display import shown
    from merkle_backup.errors import UsageError

    if name == "":
        raise UsageError(f"{flag}: an empty name selects nothing (an unset variable?); give a "
                         "namespace name")
    if not is_namespace_name(name):
        raise UsageError(f"{flag} {shown(name)!r}: not a namespace name (lowercase letters, "
                         "digits and '-', at most 63); for globs or lists use "
                         "--include-namespaces")

# Since v1.4 every item is written twice: resources/<gr>/... and
# resources/<gr>/<v>-preferredversion/...
PREFERRED_SUFFIX = "-preferredversion"
FINAL_PHASES = frozenset({"Completed", "PartiallyFailed", "Failed"})


@dataclass(frozen=True)
class BackupInfo:
    name: str
    uid: str
    phase: str

    @property
    def is_final(self) -> bool:
        return self.phase in FINAL_PHASES


def parse_backup_object(data: bytes, source: str) -> BackupInfo:
    """Name, UID and phase from velero-backup.json; CannotCheck when they are not there."""
    from merkle_backup.formats.strict import loads_json  # strict, depth-bounded (T73)

    try:
        obj = loads_json(data)
    except ValueError as e:
        raise CannotCheck(f"{source}: velero-backup.json is not JSON ({e})") from e
    if not isinstance(obj, dict) or obj.get("kind") != "Backup":
        raise CannotCheck(f"{source}: velero-backup.json is not a Velero Backup object")
    metadata: dict[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
    status: dict[str, Any] = obj["status"] if isinstance(obj.get("status"), dict) else {}
    name, uid, phase = metadata.get("name"), metadata.get("uid"), status.get("phase", "")
    if not isinstance(name, str) or not isinstance(uid, str) or not uid:
        raise CannotCheck(f"{source}: velero-backup.json has no metadata.name or metadata.uid")
    if not isinstance(phase, str):
        raise CannotCheck(f"{source}: velero-backup.json status.phase is not a string")
    return BackupInfo(name=name, uid=uid, phase=phase)


# The timestamps of velero-backup.json's status (Kubernetes metav1.Time): RFC 3339, UTC, seconds.
_TIME = "%Y-%m-%dT%H:%M:%SZ"
# How far a Velero server's clock may run ahead of ours before a completionTimestamp "in the
# future" stops counting as recent.
CLOCK_SKEW = timedelta(minutes=10)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, _TIME).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def backup_times(data: bytes | None) -> tuple[datetime | None, datetime | None]:
    """status.completionTimestamp and status.expiration of velero-backup.json (None: absent)."""
    from merkle_backup.formats.strict import loads_json

    try:
        status = loads_json(data or b"{}").get("status") or {}
        return _time(status.get("completionTimestamp")), _time(status.get("expiration"))
    except (ValueError, AttributeError, RecursionError):
        return None, None


def completed_within(completed: datetime | None, now: datetime, max_age: timedelta) -> bool:
    """Whether a backup that completed at ``completed`` is recent enough to seal silently:
    within ``max_age`` of ``now`` and not in the future past CLOCK_SKEW (an absent
    completionTimestamp is never recent)."""
    # never now - max_age: a huge --max-age would overflow the date arithmetic
    return completed is not None and completed <= now + CLOCK_SKEW and \
        now - completed <= max_age
