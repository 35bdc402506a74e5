"""``audit --metrics FILE``: Prometheus text for node-exporter's textfile collector.

Written with prometheus_client's ``write_to_textfile`` (a temporary file beside FILE, then a
rename: the collector never reads half a file; name FILE ``*.prom``). Metrics:

* ``merkle_backup_audit_backups{location,status}``: backups by status (every status, 0 too);
* ``merkle_backup_backup_status{location,backup,status}``: 1 for each backup's status;
* ``merkle_backup_backup_last_verified_timestamp_seconds{location,backup}``: when the audit
  last established that the backup is authentic (this run, re-read or unchanged since a full
  verification: see ``--state``);
* ``merkle_backup_backup_last_full_verification_timestamp_seconds{location,backup}``: when
  its bytes were last all read and verified;
* ``merkle_backup_audit_duration_seconds{location}``, ``merkle_backup_audit_timestamp_seconds``
  (when the audit ended), ``merkle_backup_audit_skipped_backups`` (unchanged, not re-read),
  ``merkle_backup_audit_exit_code``.

Label values (backup names come from the bucket) are escaped by prometheus_client.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

from merkle_backup.errors import StorageError
from merkle_backup.fleet.sweep import ERROR, TAMPERED, UNFINISHED, UNSEALED, VERIFIED, AuditReport

STATUSES = (VERIFIED, TAMPERED, UNSEALED, UNFINISHED, ERROR)


def registry(report: AuditReport, *, duration: float, finished: datetime,
             full_verification: Mapping[str, datetime], skipped: int,
             shard: str = "") -> CollectorRegistry:
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry()
    loc = report.location
    extra = ["shard"] if shard else []
    extra_values = [shard] if shard else []

    def gauge(name: str, doc: str, labels: list[str]) -> Gauge:
        return Gauge(name, doc, labels + extra, registry=reg)

    by_status = gauge(
        "merkle_backup_audit_backups",
        "Backups of the storage location by audit status",
        ["location", "status"],
    )
    for status, count in report.summary.items():
        by_status.labels(loc, status, *extra_values).set(count)
    status_g = gauge("merkle_backup_backup_status", "1 for the audit status of each backup",
                     ["location", "backup", "status"])
    last = gauge("merkle_backup_backup_last_verified_timestamp_seconds",
                 "When the audit last established that the backup is authentic (Unix time)",
                 ["location", "backup"])
    full = gauge("merkle_backup_backup_last_full_verification_timestamp_seconds",
                 "When every byte of the backup was last read and verified (Unix time)",
                 ["location", "backup"])
    for row in report.backups:
        status_g.labels(loc, row.name, row.status, *extra_values).set(1)
        if row.status == VERIFIED:
            last.labels(loc, row.name, *extra_values).set(finished.timestamp())
            when = full_verification.get(row.name, finished)
            full.labels(loc, row.name, *extra_values).set(when.timestamp())
    gauge("merkle_backup_audit_duration_seconds", "How long the audit took",
          ["location"]).labels(loc, *extra_values).set(duration)
    gauge("merkle_backup_audit_timestamp_seconds", "When the audit ended (Unix time)",
          ["location"]).labels(loc, *extra_values).set(finished.timestamp())
    gauge("merkle_backup_audit_skipped_backups",
          "Backups unchanged since their last full verification, not re-read (--state)",
          ["location"]).labels(loc, *extra_values).set(skipped)
    gauge(
        "merkle_backup_audit_exit_code",
        "The audit's exit code (0 ok, 1 tampered, 3 could not check)",
        ["location"],
    ).labels(loc, *extra_values).set(report.exit_code)
    return reg


def write(path: Path, report: AuditReport, **kwargs: Any) -> None:
    """Write the metrics to ``path`` the textfile collector's way (temporary file, rename)."""
    from prometheus_client import write_to_textfile

    try:
        write_to_textfile(str(path), registry(report, **kwargs))
    except OSError as e:
        raise StorageError(f"cannot write metrics {path}: {e.strerror or e}") from e
