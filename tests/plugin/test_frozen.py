"""The frozen plugin (merkle_backup/plugin/image/build.sh, PyInstaller onedir) runs with no
Python on PATH, under the Go Velero stand-in, and leaves exactly one executable file.

Built once per session (about 30 s): the test ObjectStore (memory_plugin.py) frozen with the
same build script, flags and server as the real plugin, so that the protocol is checked
without the sealing store; the real entry point is frozen too when the sealing store is in the
tree (merkle_backup.plugin.store)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugin.conftest import MEMORY_PLUGIN
from tests.plugin.standin import calls, object_calls

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "merkle_backup" / "plugin" / "image" / "build.sh"
NAME = "merkle-backup-velero-plugin"
# What the plugin process gets: no PATH with Python, no Python variables, no HOME.
BARE = {"PATH": "/nonexistent", "PYTHONPATH": None, "PYTHONHOME": None, "VIRTUAL_ENV": None,
        "HOME": None}


def freeze(dest: Path, entry: Path) -> Path:
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("the frozen build needs PyInstaller (pip install '.[freeze]')")
    done = subprocess.run(["sh", str(BUILD), str(dest)], capture_output=True, text=True,
                          env={**os.environ, "ENTRY": str(entry), "NAME": NAME,
                               "PYTHON": sys.executable}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    exe = dest / NAME / NAME
    assert done.stdout.strip().splitlines()[-1] == str(exe)
    return exe


@pytest.fixture(scope="session")
def frozen_test_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return freeze(tmp_path_factory.mktemp("frozen"), MEMORY_PLUGIN)


def test_bundle_has_exactly_one_executable_file(frozen_test_plugin):
    bundle = frozen_test_plugin.parent
    executables = [p for p in bundle.rglob("*") if p.is_file() and os.stat(p).st_mode & 0o111]
    assert executables == [frozen_test_plugin]
    # ... and the shared libraries it loads are there, without their exec bit.
    assert any(p.suffix == ".so" or ".so." in p.name for p in bundle.rglob("*"))


def test_frozen_plugin_under_velero_with_no_python(standin, frozen_test_plugin, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(100_000)
    (tmp_path / "f").write_bytes(data)
    assert shutil.which("python3", path="/nonexistent") is None
    put = standin.run([frozen_test_plugin], {"root": str(root)}, "put", "velero/backups/b/x",
                      "--file", str(tmp_path / "f"), env=BARE)
    assert put.returncode == 0, put.stderr
    got = calls(put)
    assert got[1]["result"] == [{"command": str(frozen_test_plugin), "kind": "ObjectStore",
                                 "name": "merkle-backup.io/aws",
                                 "command_is_executed_path": "true"}]
    assert got[3]["chunks"] == 7 and got[-1]["graceful"]
    out = tmp_path / "g"
    get = standin.run([frozen_test_plugin], {"root": str(root)}, "get", "velero/backups/b/x",
                      "--out", str(out), env=BARE)
    assert get.returncode == 0, get.stderr
    assert out.read_bytes() == data
    # An error mid-stream still reaches Velero as a failed download, with its location.
    bad = standin.run([frozen_test_plugin], {"root": str(root), "failGetAfter": "8192"}, "get",
                      "velero/backups/b/x", "--out", str(tmp_path / "h"), env=BARE)
    assert bad.returncode == 1 and object_calls(bad) == [("GetObject", "velero/backups/b/x")]
    assert calls(bad)[3]["code"] == "DataLoss" and calls(bad)[3]["bytes"] == 8192
    assert calls(bad)[3]["error.file"].startswith("memory_plugin.py:")


def test_frozen_plugin_refuses_to_run_by_hand(frozen_test_plugin):
    done = subprocess.run([str(frozen_test_plugin)], capture_output=True, text=True,
                          env={"PATH": "/nonexistent"}, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("This binary is a plugin.")


@pytest.fixture(scope="session")
def frozen_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("merkle_backup.plugin.store") is None:
        pytest.skip("merkle_backup.plugin.store (the sealing ObjectStore) is not in this tree")
    return freeze(tmp_path_factory.mktemp("frozen-real"), ROOT / "merkle_backup" / "plugin" /
                  "image" / "entry.py")


def test_real_frozen_plugin_handshake_and_init(standin, frozen_plugin, tmp_path):
    """The real entry point, frozen: handshake and ListPlugins with no Python; Init reaches the
    sealing store (which refuses an empty config with its own InvalidArgument, not an import
    error)."""
    done = standin.run([frozen_plugin], {}, "ping", env=BARE)
    got = calls(done)
    assert got[0]["ok"] and got[1]["result"][0]["command_is_executed_path"] == "true"
    assert got[2]["method"] == "Init"
    assert "ModuleNotFoundError" not in done.stdout + done.stderr
