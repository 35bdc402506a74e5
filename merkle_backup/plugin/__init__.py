"""merkle-backup as a Velero ObjectStore plugin (``merkle-backup.io/aws``): every byte Velero
writes under ``backups/<name>/`` is sealed as it is written, and every byte it reads there is
verified before its last chunk reaches Velero (docs/velero.md §0, docs/format.md §13).

``protocol``: the interface, errors and log shared by the server and the object store;
``server``: go-plugin's handshake and the gRPC services Velero calls (``main`` is the console
script ``merkle-backup-velero-plugin``); ``store``: the ObjectStore over S3 that seals and
verifies; ``records``: what one plugin process tells the next; ``config``: the BSL's config.
"""
