"""What Velero's client never sends but a plugin server must survive, through a real gRPC client
(grpcio) on the plugin's real unix socket: chunks of another object in one PutObject stream, a
stream cut mid-way, malformed messages, the health service's other answers, concurrent calls,
and Shutdown ending the process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from merkle_backup.plugin import _wire
from tests.plugin.conftest import MEMORY_PLUGIN

NAME = "merkle-backup.io/aws"


def request(plugin: str = NAME, bucket: str = "bk", key: str = "k", body: bytes = b"") -> bytes:
    return (_wire._str_field(1, plugin) + _wire._str_field(2, bucket) + _wire._str_field(3, key)
            + (_wire._len_field(4, body) if body else b""))


class Plugin:
    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(MEMORY_PLUGIN)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE,
                                     env={**os.environ, "VELERO_PLUGIN": "hello"})
        line = self.proc.stdout.readline().decode()
        self.socket = Path(re.fullmatch(r"1\|2\|unix\|(.+)\|grpc\|\n", line)[1])
        self.channel = grpc.insecure_channel(f"unix:{self.socket}")
        self.root = root

    def call(self, method: str, data: bytes) -> bytes:
        return self.channel.unary_unary(method)(data, timeout=30)

    def init(self) -> None:
        entry = _wire._str_field(1, "root") + _wire._str_field(2, str(self.root))
        self.call("/generated.ObjectStore/Init", _wire._str_field(1, NAME) + _wire._len_field(2, entry))

    def close(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: a clean exit that removes the socket's folder
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Plugin]:
    p = Plugin(tmp_path)
    p.init()
    yield p
    p.close()


def test_a_chunk_of_another_object_is_refused(plugin):
    put = plugin.channel.stream_unary("/generated.ObjectStore/PutObject")
    with pytest.raises(grpc.RpcError) as err:
        put(iter([request(key="a", body=b"1"), request(key="b", body=b"2")]), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "PutObject: a chunk for bk/b in the stream of bk/a"
    assert not (plugin.root / "bk" / "a").exists()


def test_a_stream_cut_before_its_end_stores_nothing(plugin):
    """A client that dies mid-upload (RST_STREAM) is not a complete object, even though gRPC
    Python first reports it as the end of the messages (server.END_OF_STREAM_SETTLE)."""
    put = plugin.channel.stream_unary("/generated.ObjectStore/PutObject")
    for attempt in range(5):
        sent = threading.Event()

        def chunks() -> Iterator[bytes]:
            yield request(key=f"cut{attempt}", body=b"x" * 16384)
            sent.set()
            time.sleep(0.2)
            raise RuntimeError("Velero dies mid-upload")

        with pytest.raises(grpc.RpcError) as err:
            put(chunks(), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNKNOWN  # the client side's own cancel
        assert sent.is_set()
    time.sleep(0.5)
    assert not (plugin.root / "bk").exists()
    # The plugin serves on.
    plugin.call("/generated.ObjectStore/ObjectExists", request(key="cut0"))


@pytest.mark.parametrize("method", ["/generated.ObjectStore/ObjectExists",
                                    "/generated.ObjectStore/Init",
                                    "/generated.ObjectStore/CreateSignedURL"])
def test_malformed_message_is_invalid_argument(plugin, method):
    with pytest.raises(grpc.RpcError) as err:
        plugin.call(method, b"\x0a\x05ab")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed request" in err.value.details()


def test_health(plugin):
    check = "/grpc.health.v1.Health/Check"
    for service in ("", "plugin"):
        assert plugin.call(check, _wire._str_field(1, service)) == _wire.health_check_response(1)
    with pytest.raises(grpc.RpcError) as err:
        plugin.call(check, _wire._str_field(1, "other"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    watch = plugin.channel.unary_stream("/grpc.health.v1.Health/Watch")(
        _wire._str_field(1, "plugin"), timeout=30)
    assert next(watch) == _wire.health_check_response(1)
    watch.cancel()


def test_concurrent_calls(plugin):
    data = {f"obj{i}": os.urandom(50_000 + i) for i in range(8)}
    put = plugin.channel.stream_unary("/generated.ObjectStore/PutObject")
    get = plugin.channel.unary_stream("/generated.ObjectStore/GetObject")
    errors: list[BaseException] = []

    def roundtrip(key: str) -> None:
        try:
            body = data[key]
            put(iter([request(key=key, body=body[i:i + 16384])
                      for i in range(0, len(body), 16384)]), timeout=60)
            got = b"".join(_wire._fields(m)[1][0][1] for m in get(request(key=key), timeout=60))
            assert got == body
        except BaseException as e:  # collected, re-raised below
            errors.append(e)

    threads = [threading.Thread(target=roundtrip, args=(k,)) for k in data]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_shutdown_exits_the_process_and_removes_the_socket(tmp_path):
    p = Plugin(tmp_path)
    try:
        start = time.monotonic()
        p.call("/plugin.GRPCController/Shutdown", b"")
        assert p.proc.wait(timeout=10) == 0
        assert time.monotonic() - start < 2  # go-plugin kills after 2 s (client.go:554-560)
        assert not p.socket.parent.exists()
    finally:
        p.close()


def test_sigint_is_ignored_as_go_plugin_does(tmp_path):
    import signal

    p = Plugin(tmp_path)
    try:
        p.proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert p.proc.poll() is None
        p.init()
    finally:
        p.close()
