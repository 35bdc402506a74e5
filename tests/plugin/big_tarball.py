"""A child process for tests/plugin/test_big_tarball.py: the plugin's backend seals a ~2 GiB
tarball streamed to it in Velero's 16 KiB chunks, generated on the fly (nothing on disk), then
prints its peak memory (VmHWM) as JSON.

    python -m tests.plugin.big_tarball ENDPOINT BUCKET KEYFILE SIZE_BYTES
"""

from __future__ import annotations

import base64
import json
import os
import sys
import zlib
from collections.abc import Iterator

from merkle_backup.plugin.store import VeleroObjectStore

CHUNK = 16 * 1024
ENTRY = 32 << 20  # bytes of one manifest (the reader's cap is 64 MiB)


def header(path: str, size: int) -> bytes:
    h = bytearray(512)
    h[0:len(path)] = path.encode()
    h[100:108] = b"0000755\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = f"{size:011o}\0".encode()
    h[136:148] = b"00000000000\0"
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h)


def tarball(total: int) -> Iterator[bytes]:
    """gzip (stored deflate blocks: incompressible-sized) of a tar of ConfigMap manifests."""
    block = base64.b64encode(os.urandom(ENTRY * 3 // 4 - 1024))
    deflate = zlib.compressobj(0, zlib.DEFLATED, -15)
    crc, size = 0, 0
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    i = 0
    while size < total:
        name = f"cm-{i}"
        body = b'{"apiVersion":"v1","data":{"blob":"' + block + \
            b'"},"kind":"ConfigMap","metadata":{"name":"' + name.encode() + \
            b'","namespace":"big"}}'
        for piece in (header(f"resources/configmaps/namespaces/big/{name}.json", len(body)),
                      body, bytes(-len(body) % 512)):
            crc = zlib.crc32(piece, crc)
            size += len(piece)
            yield deflate.compress(piece)
        i += 1
    end = bytes(1024)
    crc = zlib.crc32(end, crc)
    size += len(end)
    yield deflate.compress(end) + deflate.flush()
    yield crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")


def chunks(total: int) -> Iterator[bytes]:
    for piece in tarball(total):
        for i in range(0, len(piece), CHUNK):
            yield piece[i:i + CHUNK]


def main() -> None:
    endpoint, bucket, key, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = VeleroObjectStore()
    store.init({"bucket": bucket, "prefix": "velero", "region": "us-east-1", "s3Url": endpoint,
                "s3ForcePathStyle": "true", "signingKey": key})
    backup = {"kind": "Backup", "apiVersion": "velero.io/v1",
              "metadata": {"name": "big", "namespace": "velero",
                           "uid": "6b1c2d3e-0000-4000-8000-00000000b16b"},
              "status": {"phase": "Finalizing"}}
    store.put_object(bucket, "velero/backups/big/velero-backup.json",
                     iter([json.dumps(backup).encode()]))
    store.put_object(bucket, "velero/backups/big/big.tar.gz", chunks(total))
    backup["status"]["phase"] = "Completed"
    store.put_object(bucket, "velero/backups/big/velero-backup.json",
                     iter([json.dumps(backup).encode()]))
    status = open("/proc/self/status").read()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    print(json.dumps({"vmhwm_kib": hwm}))


if __name__ == "__main__":
    main()
