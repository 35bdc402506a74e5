"""merkle-backup as a Velero ObjectStore plugin (``merkle-backup.io/aws``).

``protocol``: the interface, errors and log shared by the server and the object store;
``server``: go-plugin's handshake and the gRPC services Velero calls (``main`` is the console
script ``merkle-backup-velero-plugin``).
"""
