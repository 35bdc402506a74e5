"""Go's view of a tarball: tests/tools/tarlist, the reader Velero's restore uses.

``build_tarlist`` compiles the lister once (None when ``go`` is not installed); ``TarList`` keeps
one lister process for the whole session and answers ``listing(blob)`` per archive;
``assert_go_agrees`` is the differential rule of docs/format.md §2: wherever our reader accepts an
archive, Go reads it without error and reports the same names and bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from merkle_backup.archive import Entry

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def build_go_tool(name: str, out_dir: Path) -> Path | None:
    """Build tests/tools/<name> into ``out_dir``; None when Go is not installed."""
    if shutil.which("go") is None:
        return None
    out = out_dir / name
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOPROXY="off")
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=TOOLS / name, env=env, check=True,
                   capture_output=True)
    return out


def build_tarlist(out_dir: Path) -> Path | None:
    """Build tests/tools/tarlist into ``out_dir``; None when Go is not installed."""
    return build_go_tool("tarlist", out_dir)


@dataclass(frozen=True)
class GoEntry:
    name: bytes  # the raw name Go reports (PAX path / GNU long name / prefix applied)
    type: str  # the typeflag after Go's normalisation ('\0' becomes '0')
    sha256: str | None  # of the bytes a restore would write; regular files only


@dataclass(frozen=True)
class GoListing:
    entries: list[GoEntry]
    err: str  # Go's error; "" when it read to the end-of-archive marker

    @property
    def ok(self) -> bool:
        return not self.err

    def regular(self) -> list[tuple[bytes, str | None]]:
        return [(e.name, e.sha256) for e in self.entries if e.type == "0"]


def parse_lines(lines: Sequence[str]) -> GoListing:
    entries = []
    for line in lines:
        obj = json.loads(line)
        if obj.get("end"):
            assert obj["entries"] == len(entries)
            return GoListing(entries, obj["err"])
        entries.append(GoEntry(base64.b64decode(obj["name"] or ""), chr(obj["type"]),
                               obj.get("sha256")))
    raise AssertionError("tarlist output has no end line")


class TarList:
    """One ``tarlist -stdin`` process: write a path, read its lines up to the end line."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self._workdir = workdir
        self._n = 0
        self._proc = subprocess.Popen([str(binary), "-stdin"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)

    def listing(self, blob: bytes) -> GoListing:
        self._n += 1
        path = self._workdir / f"in-{self._n % 4}.tar.gz"
        path.write_bytes(blob)
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(f"{path}\n")
        stdin.flush()
        return parse_lines(_until_end(stdout))

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(timeout=10)


def _until_end(stream: IO[str]) -> list[str]:
    lines = []
    while True:
        line = stream.readline()
        if not line:
            raise AssertionError("tarlist exited early")
        lines.append(line)
        if line.startswith('{"end":'):
            return lines


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_go_agrees(listing: GoListing, entries: Sequence[Entry]) -> None:
    """Our reader accepted the archive (it raised nothing): Go reads it to its end without
    error, with the same entries in the same order; each regular file with the same name and
    bytes. Entries we report with a problem carry no data; Go must see the same name."""
    assert listing.ok, f"Go refuses an archive our reader accepts: {listing.err}"
    assert len(listing.entries) == len(entries), (len(listing.entries), len(entries))
    for ours, go in zip(entries, listing.entries):
        if ours.problem is None:
            assert (ours.path.encode(), "0") == (go.name, go.type)
            assert go.sha256 == sha256(ours.data), ours.path
        else:
            assert ours.path == go.name.decode("utf-8", "backslashreplace")
            assert ours.data == b""
