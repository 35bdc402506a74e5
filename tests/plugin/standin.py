"""The Go Velero stand-in (tests/tools/velerostandin), built once per session, and its runner.

    def test_x(standin, memory_plugin, tmp_path):
        done = standin.run(memory_plugin, {"root": str(tmp_path)}, "put-backup", "b1",
                           "--dir", str(folder), bucket="bk", prefix="velero")
        assert done.returncode == 0
        assert [c["method"] for c in calls(done)] == [...]

``Standin.run(plugin_cmd, config, *args, bucket=..., prefix=..., env=..., log_level=...,
name=..., timeout=...)`` starts the stand-in, which starts ``plugin_cmd`` (the executable, then
its own arguments) the way Velero's plugin manager does; ``config`` is the BSL's config
(bucket and prefix are added to it by the stand-in, as Velero adds them). The plugin inherits
the stand-in's environment: the process environment with the S3 test settings
(tests/storage/server.TEST_ENV), then ``env`` (a value of None removes a variable: e.g.
``env={"PATH": "/nonexistent"}``). ``calls(done)`` parses its JSON lines; ``object_calls(done)`` gives the (method, key) of
the ObjectStore calls after Init. ``extra`` adds global flags: ``--kill-plugin-after N``
(SIGKILL the plugin once N body bytes have passed: a crash mid-upload or mid-download),
``--request-name X`` (requests name another plugin), ``--skip-init``.

Fixtures (tests/plugin/conftest.py): ``standin`` (a ``Standin``), ``memory_plugin`` (the
test-only folder store), ``velero_plugin`` (the real plugin: ``python -m
merkle_backup.plugin.server``), ``moto_server`` (the session's, shared with tests/storage) and
``s3_location`` (a fresh bucket and the BSL config keys that reach it).

The stand-in is built offline in GOPATH mode from Debian's packages (golang-go,
golang-github-hashicorp-go-plugin-dev, golang-google-grpc-dev, golang-google-protobuf-dev,
protobuf-compiler, protoc-gen-go, protoc-gen-go-grpc: .ci/run installs them); without them the
tests that need it are skipped by name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.storage.server import TEST_ENV

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "tools" / "velerostandin"
PROTO = ROOT / "merkle_backup" / "plugin" / "proto"
GOCODE = Path("/usr/share/gocode/src")
# The stubs the stand-in needs: Velero's messages and go-plugin's stdio stream, all generated
# into package main (import path example.invalid/velerostandin: never imported).
STUBS = ("ObjectStore.proto", "Shared.proto", "PluginLister.proto", "grpc_stdio.proto")
NEEDS = {
    "go": "golang-go",
    "protoc": "protobuf-compiler",
    "protoc-gen-go": "protoc-gen-go",
    "protoc-gen-go-grpc": "protoc-gen-go-grpc",
}
GO_PACKAGES = {
    "github.com/hashicorp/go-plugin": "golang-github-hashicorp-go-plugin-dev",
    "google.golang.org/grpc": "golang-google-grpc-dev",
    "google.golang.org/protobuf": "golang-google-protobuf-dev",
}


def missing() -> list[str]:
    """The Debian packages the stand-in's build needs and this machine lacks."""
    out = [pkg for tool, pkg in NEEDS.items() if shutil.which(tool) is None]
    out += [pkg for path, pkg in GO_PACKAGES.items() if not (GOCODE / path).is_dir()]
    if not Path("/usr/include/google/protobuf/timestamp.proto").is_file():
        out.append("libprotobuf-dev")
    return out


def build(dest: Path) -> Path:
    """Generate the stubs and build the stand-in in ``dest``; returns the binary."""
    work = dest / "src"
    work.mkdir(parents=True)
    for go in SOURCE.glob("*.go"):
        shutil.copy(go, work / go.name)
    mapping = ",".join(f"M{name}=example.invalid/velerostandin;main" for name in STUBS)
    subprocess.run(
        ["protoc", "-I", str(PROTO), "-I", "/usr/include",
         f"--go_out={work}", f"--go_opt=paths=source_relative,{mapping}",
         f"--go-grpc_out={work}", f"--go-grpc_opt=paths=source_relative,{mapping}", *STUBS],
        check=True, capture_output=True, text=True)
    binary = dest / "velerostandin"
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", CGO_ENABLED="0",
               GOCACHE=str(dest / "cache"), GOPROXY="off", GOFLAGS="")
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=work, env=env, check=True,
                   capture_output=True, text=True)
    return binary


@dataclass
class Standin:
    binary: Path

    def run(self, plugin_cmd: Sequence[str | Path], config: Mapping[str, str], *args: str,
            bucket: str = "velero-test", prefix: str = "", env: Mapping[str, str | None] | None = None,
            log_level: str = "info", name: str = "merkle-backup.io/aws",
            extra: Sequence[str] = (), timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run one stand-in command against the plugin ``plugin_cmd``; ``extra``: more global
        flags (``--request-name X``, ``--skip-init``)."""
        command = [str(self.binary), "--plugin", str(plugin_cmd[0]),
                   *(f"--plugin-arg={a}" for a in plugin_cmd[1:]),
                   "--name", name, "--bucket", bucket, "--prefix", prefix,
                   "--log-level", log_level,
                   *(f"--config={k}={v}" for k, v in config.items()), *extra, *args]
        full = {**os.environ, **TEST_ENV}
        for key, value in (env or {}).items():
            if value is None:
                full.pop(key, None)
            else:
                full[key] = value
        return subprocess.run(command, capture_output=True, text=True, env=full, timeout=timeout)


def calls(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The stand-in's JSON lines (one per call, plus sync's and restore's outcomes)."""
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def object_calls(done: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """(method, key) of the ObjectStore calls after Init, in order."""
    skip = {"Start", "ListPlugins", "Init", "Shutdown"}
    return [(c["method"], c.get("key", "")) for c in calls(done)
            if "method" in c and c["method"] not in skip]


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Standin:
    lacking = missing()
    if lacking:
        pytest.skip(f"the Velero stand-in needs Debian packages: {', '.join(lacking)}")
    return Standin(build(tmp_path_factory.mktemp("velerostandin")))
