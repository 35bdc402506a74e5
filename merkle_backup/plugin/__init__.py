"""merkle-backup as a Velero ObjectStore plugin (``merkle-backup.io/aws``): every byte Velero
writes under ``backups/<name>/`` is sealed as it is written, and every byte it reads there is
verified before its last chunk reaches Velero (docs/velero.md, docs/format.md §13)."""
