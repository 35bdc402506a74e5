"""A test-only ObjectStore served through the real plugin server (merkle_backup.plugin.server).

Run as a script by the Go Velero stand-in, exactly as Velero runs a plugin. Objects live in the
folder named by the BSL config key ``root`` (``<root>/<bucket>/<key>``), so that the separate
plugin processes of one backup (PutBackup, the finalizer, a restore) see each other's writes, as
they would through S3. It checks nothing: it exercises the protocol layer, not the sealing
store. Config keys that inject faults, for the error-path tests:

* ``failGetAfter=N``: GetObject raises ``NotAuthentic`` after yielding N bytes (in 4 KiB
  chunks) of any object whose key contains ``failKey``.
* ``failPut=SUBSTRING``: PutObject of a key containing it raises ``StorageError`` after reading
  the whole body.
* ``failExists=SUBSTRING``: ObjectExists raises ``PluginError(PERMISSION_DENIED)``.
* ``bug=SUBSTRING``: every call on such a key raises ``ZeroDivisionError`` (a bug: INTERNAL).
* ``initError=kind``: Init raises: ``usage`` (a bad config), ``key`` (a bad key file).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

if not getattr(sys, "frozen", False):  # run from the checkout: import merkle_backup from it
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from merkle_backup import errors  # noqa: E402
from merkle_backup.plugin.protocol import NOT_FOUND, PluginError, log  # noqa: E402
from merkle_backup.plugin.server import serve  # noqa: E402

KNOWN = {"root", "bucket", "prefix", "failGetAfter", "failKey", "failPut", "failExists", "bug",
         "initError"}
CHUNK = 4096


class FolderStore:
    def __init__(self) -> None:
        self.config: dict[str, str] = {}

    def init(self, config: dict[str, str]) -> None:
        unknown = sorted(set(config) - KNOWN)
        if unknown:
            raise errors.UsageError(f"unknown BSL config keys: {', '.join(unknown)}")
        if config.get("initError") == "usage":
            raise errors.UsageError("initError=usage: a bad config, as asked")
        if config.get("initError") == "key":
            raise errors.KeyFileError("signingKey /no/such/key: cannot read the key file")
        if "root" not in config:
            raise errors.UsageError("config key root is required")
        self.config = config
        log("info", "folder store ready", root=config["root"])

    def _path(self, bucket: str, key: str) -> Path:
        if ".." in key.split("/") or key.startswith("/") or not key:
            raise PluginError(3, f"bad key {key!r}")
        self._bug(key)
        return Path(self.config["root"]) / bucket / key

    def _bug(self, key: str) -> None:
        marker = self.config.get("bug")
        if marker and marker in key:
            print(1 / 0)

    def put_object(self, bucket: str, key: str, body: Iterator[bytes]) -> None:
        path = self._path(bucket, key)
        data = b"".join(body)
        marker = self.config.get("failPut")
        if marker and marker in key:
            raise errors.StorageError(f"s3://{bucket}/{key}: PutObject failed: SlowDown (503)")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def object_exists(self, bucket: str, key: str) -> bool:
        marker = self.config.get("failExists")
        if marker and marker in key:
            raise PluginError(7, f"HeadObject {key}: AccessDenied")
        return self._path(bucket, key).is_file()

    def get_object(self, bucket: str, key: str) -> Iterator[bytes]:
        path = self._path(bucket, key)
        if not path.is_file():
            raise PluginError(NOT_FOUND, f"s3://{bucket}/{key}: NoSuchKey")
        data = path.read_bytes()
        limit = int(self.config.get("failGetAfter", "-1"))
        fail = limit >= 0 and self.config.get("failKey", "") in key
        for start in range(0, len(data), CHUNK):
            if fail and start >= limit:
                raise errors.NotAuthentic(f"{key}: does not match its seal at byte {start}")
            yield data[start:start + CHUNK]
        if fail:
            raise errors.NotAuthentic(f"{key}: does not match its seal at its end")

    def list_common_prefixes(self, bucket: str, prefix: str, delimiter: str) -> list[str]:
        found = set()
        for key in self._keys(bucket):
            if key.startswith(prefix):
                rest = key[len(prefix):]
                if delimiter in rest:
                    found.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
        return sorted(found)

    def list_objects(self, bucket: str, prefix: str) -> list[str]:
        return [k for k in self._keys(bucket) if k.startswith(prefix)]

    def _keys(self, bucket: str) -> list[str]:
        base = Path(self.config["root"]) / bucket
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.endswith(".part"))

    def delete_object(self, bucket: str, key: str) -> None:
        self._path(bucket, key).unlink(missing_ok=True)

    def create_signed_url(self, bucket: str, key: str, ttl_seconds: int) -> str:
        self._bug(key)
        return f"file://{self._path(bucket, key)}?ttl={ttl_seconds}"


if __name__ == "__main__":
    serve(FolderStore)
