"""Backups in S3-compatible object storage, in Velero's bucket layout: the only package that
imports boto3 and botocore (lazily, so that the command line starts fast).

\b
    store.py    S3Store (one bucket, one client), S3Backup (a backup folder), S3Bucket (a location)
    stream.py   the tarball as a pinned, resumable stream
    connect.py  connect(): the client, its retries, timeouts, TLS and SSE-C key
    errors.py   every botocore/urllib3 error as one StorageError line
"""

from merkle_backup.storage.s3.connect import connect, read_sse_c_key, timeouts
from merkle_backup.storage.s3.errors import DeadlineExceeded
from merkle_backup.storage.s3.store import S3Backup, S3Bucket, S3Store

__all__ = ["DeadlineExceeded", "S3Backup", "S3Bucket", "S3Store", "connect", "read_sse_c_key",
           "timeouts"]
