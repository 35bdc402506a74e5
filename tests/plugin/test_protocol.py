"""The plugin's protocol layer (merkle_backup/plugin/server.py) driven through the Go Velero
stand-in: a real plugin process, a real unix socket, go-plugin's real handshake, Velero's call
sequences. The ObjectStore behind it is the test-only folder store (memory_plugin.py); the
sealing store has its own tests."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.plugin.conftest import MEMORY_PLUGIN
from tests.plugin.standin import calls, object_calls

NAME = "demo-small"
SIDE = ["-podvolumebackups.json.gz", "-volumesnapshots.json.gz", "-itemoperations.json.gz",
        "-resource-list.json.gz", "-results.gz", "-volumeinfo.json.gz"]


def key(name: str, file: str, prefix: str = "velero") -> str:
    return f"{prefix}/backups/{name}/{file}"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """demo-small's files, as Velero hands them to PutBackup."""
    dest = tmp_path / "in" / NAME
    shutil.copytree(FIXTURES / NAME, dest)
    return dest


def run(standin, memory_plugin, root: Path, *args: str, config=None, **kw):
    return standin.run(memory_plugin, {"root": str(root), **(config or {})}, *args,
                       bucket="bk", prefix="velero", **kw)


def stored(root: Path, name: str = NAME) -> dict[str, bytes]:
    folder = root / "bk" / "velero" / "backups" / name
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


# --- the handshake ---------------------------------------------------------------------------

def start_plugin(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(MEMORY_PLUGIN)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **env})


def test_handshake_line_names_a_private_unix_socket():
    sock = Path("/nonexistent/x")
    proc = start_plugin({"VELERO_PLUGIN": "hello", "PLUGIN_PROTOCOL_VERSIONS": "2"})
    try:
        line = proc.stdout.readline().decode()
        match = re.fullmatch(r"1\|2\|unix\|(/[^|]+)\|grpc\|\n", line)
        assert match, line
        sock = Path(match[1])
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700  # our own temp dir
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(sock.parent, ignore_errors=True)


def test_socket_in_plugin_unix_socket_dir_and_removed_on_shutdown(standin, memory_plugin, root,
                                                                  tmp_path):
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    seen = []
    # The directory is filled while the plugin runs, and empty after Velero's Shutdown.
    done = run(standin, memory_plugin, root, "ping", env={"PLUGIN_UNIX_SOCKET_DIR": str(sockets)},
               log_level="debug")
    assert done.returncode == 0, done.stderr
    seen = re.findall(r"plugin serving: .*socket=(\S+)", done.stderr)
    assert seen and Path(seen[0]).parent == sockets
    assert list(sockets.iterdir()) == []
    assert calls(done)[-1] == {"method": "Shutdown", "ok": True, "graceful": True,
                               "ms": calls(done)[-1]["ms"]}


def test_sigterm_shuts_down_and_removes_the_socket():
    proc = start_plugin({"VELERO_PLUGIN": "hello"})
    line = proc.stdout.readline().decode()
    sock = Path(line.split("|")[3])
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert not sock.parent.exists()


def test_a_socket_that_cannot_be_made_is_one_log_line_and_exit_1(tmp_path):
    deep = tmp_path / ("d" * 100) / ("e" * 100)  # beyond a unix socket path's 108 bytes
    deep.mkdir(parents=True)
    proc = start_plugin({"VELERO_PLUGIN": "hello", "PLUGIN_UNIX_SOCKET_DIR": str(deep)})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == b""
    lines = [x for x in err.decode().splitlines() if x.startswith("{")]
    assert len(lines) == 1 and '"@level":"error"' in lines[0]
    assert '"@message":"plugin init error:' in lines[0]
    assert "Traceback" not in err.decode()


def test_wrong_magic_cookie_is_go_plugins_message_and_exit_1():
    done = subprocess.run([sys.executable, str(MEMORY_PLUGIN)], capture_output=True, text=True,
                          env={**os.environ, "VELERO_PLUGIN": "goodbye"}, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == ("This binary is a plugin. These are not meant to be executed "
                           "directly.\nPlease execute the program that consumes these plugins, "
                           "which will\nload any plugins automatically\n")


def test_list_plugins_init_health_and_shutdown(standin, memory_plugin, root):
    done = run(standin, memory_plugin, root, "ping")
    assert done.returncode == 0, done.stderr
    got = calls(done)
    assert [c["method"] for c in got] == ["Start", "ListPlugins", "Init", "Health/Check",
                                          "Shutdown"]
    assert got[1]["result"] == [{"command": str(MEMORY_PLUGIN), "kind": "ObjectStore",
                                 "name": "merkle-backup.io/aws",
                                 "command_is_executed_path": "false"}]  # python runs the script
    # Velero adds bucket and prefix to the BSL's config (persistence/object_store.go:170-171).
    assert isinstance(got[2].pop("ms"), int)
    assert got[2] == {"method": "Init", "ok": True, "config_keys": ["bucket", "prefix", "root"]}
    assert got[3]["ok"] and got[4]["graceful"]
    # The store's log line reached Velero's log at its level, with the plugin's file:line.
    line = [x for x in done.stderr.splitlines() if "folder store ready" in x]
    # go-plugin names the logger after the executable Velero started (here the interpreter).
    logger = re.escape(Path(sys.executable).name)
    assert len(line) == 1 and re.search(rf"\[INFO\] +velero\.{logger}: folder store ready:", line[0])
    assert f"root={root}" in line[0] and re.search(r"logSource=memory_plugin\.py:\d+", line[0])


def test_velero_log_level_reaches_the_plugin(standin, memory_plugin, root):
    quiet = run(standin, memory_plugin, root, "ping")
    loud = run(standin, memory_plugin, root, "ping", log_level="debug")
    assert "plugin serving" not in quiet.stderr
    assert "plugin serving" in loud.stderr and "object store initialized" in loud.stderr


# --- the eight methods -------------------------------------------------------------------------

@pytest.mark.parametrize("size,chunks", [(1, 1), (16384, 1), (16385, 2), (369400, 23)])
def test_put_then_get_in_velero_chunks(standin, memory_plugin, root, tmp_path, size, chunks):
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    put = run(standin, memory_plugin, root, "put", "velero/restores/r/x", "--file",
              str(tmp_path / "f"))
    assert put.returncode == 0, put.stderr
    assert calls(put)[3] | {"sha256": ""} == {"method": "PutObject", "ok": True,
                                              "key": "velero/restores/r/x", "bytes": size,
                                              "chunks": chunks, "sha256": ""}
    assert (root / "bk" / "velero" / "restores" / "r" / "x").read_bytes() == data
    got = run(standin, memory_plugin, root, "get", "velero/restores/r/x", "--out",
              str(tmp_path / "g"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "g").read_bytes() == data


def test_put_of_an_empty_object_fails_as_in_velero(standin, memory_plugin, root, tmp_path):
    """Velero's client sends no message for an empty body (object_store_client.go:81-89) and its
    server fails on a stream without one (object_store_server.go:85-88): so do we."""
    (tmp_path / "empty").write_bytes(b"")
    done = run(standin, memory_plugin, root, "put", "velero/x", "--file", str(tmp_path / "empty"))
    assert done.returncode == 1
    put = calls(done)[3]
    assert put["method"] == "PutObject" and put["code"] == "InvalidArgument"
    assert "stream ended before its first chunk" in put["message"]
    assert not (root / "bk" / "velero" / "x").exists()


def test_exists_list_prefixes_delete_and_url(standin, memory_plugin, root, folder):
    assert run(standin, memory_plugin, root, "put-backup", NAME, "--dir", str(folder)).returncode == 0
    exists = calls(run(standin, memory_plugin, root, "exists", key(NAME, "velero-backup.json")))
    assert exists[3]["result"] is True
    missing = calls(run(standin, memory_plugin, root, "exists", key("nope", "velero-backup.json")))
    assert missing[3]["result"] is False and missing[3]["ok"]
    listed = calls(run(standin, memory_plugin, root, "list", f"velero/backups/{NAME}/"))[3]
    assert sorted(listed["result"]) == sorted(key(NAME, p.name) for p in folder.iterdir())
    prefixes = calls(run(standin, memory_plugin, root, "prefixes", "velero/backups/", "/"))[3]
    assert prefixes["result"] == [f"velero/backups/{NAME}/"] and prefixes["delimiter"] == "/"
    url = calls(run(standin, memory_plugin, root, "url", key(NAME, f"{NAME}.tar.gz")))[3]
    # Velero's 10 minutes travel as a Go Duration in nanoseconds; the store gets seconds.
    assert url["ttl_ns"] == 600 * 10**9 and url["result"].endswith("?ttl=600")
    done = run(standin, memory_plugin, root, "delete", NAME)
    assert done.returncode == 0, done.stderr
    assert stored(root) == {}


# --- Velero's sequences -----------------------------------------------------------------------

def test_put_backup_sequence(standin, memory_plugin, root, folder):
    orders = set()
    for attempt in range(4):
        shutil.rmtree(root / "bk", ignore_errors=True)
        done = run(standin, memory_plugin, root, "put-backup", NAME, "--dir", str(folder))
        assert done.returncode == 0, done.stderr
        seq = object_calls(done)
        assert seq[:4] == [("ObjectExists", key(NAME, "velero-backup.json")),
                           ("PutObject", key(NAME, f"{NAME}-logs.gz")),
                           ("PutObject", key(NAME, "velero-backup.json")),
                           ("PutObject", key(NAME, f"{NAME}.tar.gz"))]
        assert sorted(seq[4:]) == sorted(("PutObject", key(NAME, NAME + s)) for s in SIDE)
        orders.add(tuple(seq[4:]))
        assert stored(root) == {p.name: p.read_bytes() for p in folder.iterdir()}
    assert len(orders) > 1  # Go's map order: 4 draws of 720 orders are all the same 1 in 10^8


def test_put_backup_refused_when_it_exists(standin, memory_plugin, root, folder):
    assert run(standin, memory_plugin, root, "put-backup", NAME, "--dir", str(folder)).returncode == 0
    again = run(standin, memory_plugin, root, "put-backup", NAME, "--dir", str(folder))
    assert again.returncode == 1
    assert object_calls(again) == [("ObjectExists", key(NAME, "velero-backup.json"))]
    assert 'msg="backup already exists in object storage"' in again.stderr


def test_put_backup_failed_tarball_deletes_the_metadata(standin, memory_plugin, root, folder):
    done = run(standin, memory_plugin, root, "put-backup", NAME, "--dir", str(folder),
               config={"failPut": ".tar.gz"})
    assert done.returncode == 1
    assert object_calls(done)[3:] == [("PutObject", key(NAME, f"{NAME}.tar.gz")),
                                      ("DeleteObject", key(NAME, "velero-backup.json"))]
    failed = calls(done)[6]
    assert failed["code"] == "Unavailable" and "SlowDown (503)" in failed["message"]
    assert failed["error.file"].startswith("memory_plugin.py:")
    assert failed["error.function"] == "put_object"
    assert set(stored(root)) == {f"{NAME}-logs.gz"}
    # Velero's log line for it: one line, the gRPC status, where it was raised.
    line = [x for x in done.stderr.splitlines() if 'msg="Error uploading backup"' in x]
    assert len(line) == 1 and 'error="rpc error: code = Unavailable desc = s3://bk/' in line[0]
    assert 'error.function="put_object"' in line[0]


def test_put_backup_failed_side_file_deletes_tarball_and_metadata(standin, memory_plugin, root,
                                                                  folder):
    done = run(standin, memory_plugin, root, "put-backup", NAME, "--dir", str(folder),
               config={"failPut": "-results.gz"})
    assert done.returncode == 1
    assert object_calls(done)[-3:] == [("PutObject", key(NAME, f"{NAME}-results.gz")),
                                       ("DeleteObject", key(NAME, f"{NAME}.tar.gz")),
                                       ("DeleteObject", key(NAME, "velero-backup.json"))]
    assert "velero-backup.json" not in stored(root) and f"{NAME}.tar.gz" not in stored(root)


def test_operations_and_finalize_sequences(standin, memory_plugin, root, folder):
    assert run(standin, memory_plugin, root, "put-backup", NAME, "--dir", str(folder)).returncode == 0
    ops = run(standin, memory_plugin, root, "operations", NAME, "--dir", str(folder))
    assert object_calls(ops) == [("PutObject", key(NAME, "velero-backup.json")),
                                 ("PutObject", key(NAME, f"{NAME}-itemoperations.json.gz"))]
    plain = run(standin, memory_plugin, root, "finalize", NAME, "--dir", str(folder))
    assert plain.returncode == 0, plain.stderr
    assert object_calls(plain) == [("ObjectExists", key(NAME, f"{NAME}-itemoperations.json.gz")),
                                   ("GetObject", key(NAME, f"{NAME}-itemoperations.json.gz")),
                                   ("PutObject", key(NAME, "velero-backup.json"))]
    final = folder.parent / "final"
    shutil.copytree(folder, final)
    (final / f"{NAME}.tar.gz").write_bytes(b"rebuilt tarball")
    done = run(standin, memory_plugin, root, "finalize", NAME, "--dir", str(final), "--async")
    assert done.returncode == 0, done.stderr
    # backup_finalizer_controller.go: the terminal velero-backup.json (:226) BEFORE the new
    # tarball (:230-234).
    assert object_calls(done) == [
        ("ObjectExists", key(NAME, f"{NAME}-itemoperations.json.gz")),
        ("GetObject", key(NAME, f"{NAME}-itemoperations.json.gz")),
        ("GetObject", key(NAME, f"{NAME}.tar.gz")),
        ("ObjectExists", key(NAME, f"{NAME}-volumeinfo.json.gz")),
        ("GetObject", key(NAME, f"{NAME}-volumeinfo.json.gz")),
        ("PutObject", key(NAME, f"{NAME}-volumeinfo.json.gz")),
        ("PutObject", key(NAME, "velero-backup.json")),
        ("PutObject", key(NAME, f"{NAME}.tar.gz"))]
    assert stored(root)[f"{NAME}.tar.gz"] == b"rebuilt tarball"


def test_sync_skips_a_backup_whose_metadata_read_fails(standin, memory_plugin, root, folder):
    for name in ("good", "bad"):
        dest = folder.parent / name
        dest.mkdir()
        for p in folder.iterdir():
            (dest / p.name.replace(NAME, name)).write_bytes(p.read_bytes())
        assert run(standin, memory_plugin, root, "put-backup", name, "--dir", str(dest)).returncode == 0
    done = run(standin, memory_plugin, root, "sync",
               config={"failGetAfter": "0", "failKey": "bad/velero-backup.json"})
    assert done.returncode == 1
    got = calls(done)
    assert [c for c in got if "sync" in c] == [{"sync": "create", "backup": "good",
                                                "phase": "Completed"}]
    assert object_calls(done) == [
        ("ListCommonPrefixes", "velero/backups/"),
        ("ObjectExists", key("bad", "velero-backup.json")),
        ("GetObject", key("bad", "velero-backup.json")),
        ("ObjectExists", key("good", "velero-backup.json")),
        ("GetObject", key("good", "velero-backup.json")),
        ("ObjectExists", key("good", "good-podvolumebackups.json.gz")),
        ("GetObject", key("good", "good-podvolumebackups.json.gz"))]
    assert "Error getting backup metadata from backup store" in done.stderr


def test_restore_writes_the_backup(standin, memory_plugin, root, folder, tmp_path):
    assert run(standin, memory_plugin, root, "put-backup", NAME, "--dir", str(folder)).returncode == 0
    done = run(standin, memory_plugin, root, "restore", NAME, "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert object_calls(done) == [
        ("GetObject", key(NAME, f"{NAME}.tar.gz")),
        ("ObjectExists", key(NAME, f"{NAME}-volumesnapshots.json.gz")),
        ("GetObject", key(NAME, f"{NAME}-volumesnapshots.json.gz")),
        ("ObjectExists", key(NAME, f"{NAME}-csi-volumesnapshots.json.gz")),
        ("ObjectExists", key(NAME, f"{NAME}-volumeinfo.json.gz")),
        ("GetObject", key(NAME, f"{NAME}-volumeinfo.json.gz"))]
    out = tmp_path / "out"
    assert (out / f"{NAME}.tar.gz").read_bytes() == (folder / f"{NAME}.tar.gz").read_bytes()


def test_get_error_mid_stream_fails_the_restore(standin, memory_plugin, root, folder, tmp_path):
    """An exception after some chunks ends the stream with an error status: Velero's download
    fails, the restore is Failed, nothing is written (restore_controller.go:522-525)."""
    assert run(standin, memory_plugin, root, "put-backup", NAME, "--dir", str(folder)).returncode == 0
    done = run(standin, memory_plugin, root, "restore", NAME, "--out", str(tmp_path / "out"),
               config={"failGetAfter": str(40960), "failKey": ".tar.gz"})
    assert done.returncode == 1
    get = calls(done)[3]
    assert get["method"] == "GetObject" and not get["ok"]
    assert get["bytes"] == 40960 and get["code"] == "DataLoss"
    assert get["message"] == f"{key(NAME, NAME + '.tar.gz')}: does not match its seal at byte 40960"
    assert not (tmp_path / "out").exists()
    assert 'msg="restore Failed: error downloading backup"' in done.stderr


def test_get_error_after_the_last_byte_still_fails(standin, memory_plugin, root, folder, tmp_path):
    """Every byte sent, then the error: still a failed download (no short-read pass)."""
    assert run(standin, memory_plugin, root, "put-backup", NAME, "--dir", str(folder)).returncode == 0
    size = (folder / f"{NAME}.tar.gz").stat().st_size
    done = run(standin, memory_plugin, root, "restore", NAME, "--out", str(tmp_path / "out"),
               config={"failGetAfter": str(size + 1), "failKey": ".tar.gz"})
    assert done.returncode == 1
    assert calls(done)[3]["bytes"] == size and calls(done)[3]["code"] == "DataLoss"
    assert not (tmp_path / "out").exists()


def test_delete_sequence(standin, memory_plugin, root, folder):
    assert run(standin, memory_plugin, root, "put-backup", NAME, "--dir", str(folder)).returncode == 0
    done = run(standin, memory_plugin, root, "delete", NAME)
    assert done.returncode == 0, done.stderr
    seq = object_calls(done)
    assert seq[:4] == [("GetObject", key(NAME, f"{NAME}.tar.gz")),
                       ("ObjectExists", key(NAME, f"{NAME}-volumesnapshots.json.gz")),
                       ("GetObject", key(NAME, f"{NAME}-volumesnapshots.json.gz")),
                       ("ListObjects", f"velero/backups/{NAME}/")]
    assert sorted(seq[4:]) == sorted(("DeleteObject", key(NAME, p.name)) for p in folder.iterdir())
    assert stored(root) == {}


# --- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("config,code,text", [
    ({"initError": "usage"}, "InvalidArgument", "initError=usage: a bad config, as asked"),
    ({"initError": "key"}, "InvalidArgument", "signingKey /no/such/key: cannot read the key file"),
    ({"bogus": "1"}, "InvalidArgument", "unknown BSL config keys: bogus"),
])
def test_init_errors(standin, memory_plugin, root, config, code, text):
    done = run(standin, memory_plugin, root, "exists", "velero/x", config=config)
    assert done.returncode == 1
    init = calls(done)[2]
    assert init["method"] == "Init" and init["code"] == code and init["message"] == text
    assert [c["method"] for c in calls(done)] == ["Start", "ListPlugins", "Init", "Shutdown"]


def test_calls_before_init_fail_precondition(standin, memory_plugin, root):
    done = run(standin, memory_plugin, root, "exists", "velero/x", extra=["--skip-init"])
    assert done.returncode == 1
    got = calls(done)[2]
    assert got["method"] == "ObjectExists" and got["code"] == "FailedPrecondition"
    assert got["message"].startswith("ObjectExists before Init")


def test_request_for_another_plugin_name_is_refused(standin, memory_plugin, root):
    done = run(standin, memory_plugin, root, "exists", "velero/x",
               extra=["--request-name", "velero.io/aws"])
    assert done.returncode == 1
    init = calls(done)[2]
    assert init["code"] == "NotFound"
    assert init["message"] == ("ObjectStore plugin: velero.io/aws was not found or has an invalid "
                               "name format (this plugin serves merkle-backup.io/aws)")


def test_velero_looking_for_another_provider_finds_nothing(standin, memory_plugin, root):
    done = run(standin, memory_plugin, root, "exists", "velero/x", name="velero.io/aws")
    assert done.returncode == 1
    assert "unable to locate ObjectStore plugin named velero.io/aws" in done.stderr


def test_a_bug_is_internal_with_one_line_and_the_traceback_only_in_the_log(standin, memory_plugin,
                                                                           root):
    done = run(standin, memory_plugin, root, "exists", "velero/boom", config={"bug": "boom"})
    assert done.returncode == 1
    got = calls(done)[3]
    assert got["code"] == "Internal"
    assert got["message"] == ("merkle-backup plugin: internal error: ZeroDivisionError: "
                              "division by zero")
    assert got["error.function"] == "_bug"
    assert "Traceback" not in got["message"]
    assert f"[ERROR] velero.{Path(sys.executable).name}: ObjectExists failed" in done.stderr
    assert "traceback=" in done.stderr and "ZeroDivisionError" in done.stderr


def test_plugin_error_keeps_its_code(standin, memory_plugin, root):
    done = run(standin, memory_plugin, root, "exists", "velero/x", config={"failExists": "x"})
    assert calls(done)[3]["code"] == "PermissionDenied"
    assert calls(done)[3]["message"] == "HeadObject velero/x: AccessDenied"


def test_attacker_text_in_an_error_is_one_escaped_line(standin, memory_plugin, root, folder):
    evil = "velero/backups/x\n\x1b[2Klevel=info msg=VERIFIED"
    done = run(standin, memory_plugin, root, "get", evil, "--out", "/dev/null")
    assert done.returncode == 1
    message = calls(done)[3]["message"]
    assert "\n" not in message and "\x1b" not in message
    assert message == "s3://bk/velero/backups/x\\n\\x1b[2Klevel=info msg=VERIFIED: NoSuchKey"


def test_plugin_killed_mid_upload(standin, memory_plugin, root, tmp_path):
    """--kill-plugin-after: the plugin SIGKILLed (a crash, an OOM kill) after 32 KiB of a
    100 kB PutObject: Velero's call fails, nothing is stored, a new process serves on."""
    (tmp_path / "f").write_bytes(os.urandom(100_000))
    sockets = tmp_path / "sockets"  # a killed plugin cannot remove its socket: keep it here
    sockets.mkdir()
    done = run(standin, memory_plugin, root, "put", "velero/backups/b/b.tar.gz", "--file",
               str(tmp_path / "f"), extra=["--kill-plugin-after", "32768"],
               env={"PLUGIN_UNIX_SOCKET_DIR": str(sockets)})
    assert done.returncode == 1
    got = calls(done)
    assert got[3] == {"method": "KillPlugin", "ok": True, "after_bytes": 32768}
    assert got[4]["method"] == "PutObject" and got[4]["code"] == "Unavailable"
    assert not (root / "bk" / "velero" / "backups" / "b").exists()
    again = run(standin, memory_plugin, root, "put", "velero/backups/b/b.tar.gz", "--file",
                str(tmp_path / "f"))
    assert again.returncode == 0, again.stderr
