"""merkle-backup: tamper-evident Velero backups, provable one resource at a time."""

__version__ = "0.1.0"
