"""The Velero plugin's cost (issue 20): what Velero pays for sealing at write and verifying at
read, against the same transfer without merkle-backup, measured in one run on one S3 server.

    python -m bench.plugin [--items 50000] [--repeats 3] [--out DIR]

* **put**: PutObject of a backup's tarball (``items`` Kubernetes objects, two tar entries each:
  ``--items 50000`` is the issue's 10^5-entry tarball) through the plugin, over its gRPC socket
  in Velero's 16 KiB chunks (framework/object_store_client.go:32, 73-101), while the plugin
  uploads and seals it; against the same bytes uploaded straight by boto3 as
  velero-plugin-for-aws uploads them (5 MiB parts, 5 at a time). Target <= 1.3x.
* **get**: GetObject of the sealed tarball through the plugin (verified against the seal) vs a
  straight boto3 GET read to the end. Target <= 1.15x.
* **hop**: the same bytes put and got through the plugin under ``restores/``, which it passes
  through unsealed and unchecked: the cost of being an ObjectStore plugin at all (the gRPC
  stream and our S3 client), which velero-plugin-for-aws pays too, in Go. The put and get above
  minus the hop are what sealing and verifying add. Reported, no target.
* **inflate**: isal's decompression of the same tarball in memory, the floor of any check that
  reads every entry (a gzip stream inflates on one core): on loopback it alone can be several
  times the upload, which is why the put target is out of reach there. Reported, no target.
* **startup**: exec to the handshake line of the plugin (``python -c`` of its entry point, and
  the frozen build when one is given with ``--frozen``), against ``python -c pass``: Velero pays
  it per backup, restore and reconcile. Reported, no target.

Every repeat interleaves the plugin and the baseline; the medians and the ratio of medians are
printed and written as JSON. The S3 server is moto's, started here on loopback (the numbers are
the plugin's overhead, not a real bucket's speed). The Velero side is a minimal go-plugin
client written here (handshake, Init, PutObject, GetObject): the Go stand-in of the tests does
the same from Go.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 16 * 1024
PLUGIN = [sys.executable, "-c", "from merkle_backup.plugin.server import main; main()"]
ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
       "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}
TARGETS = {"put": 1.3, "get": 1.15}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Moto:
    def __init__(self) -> None:
        import urllib.request

        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **ENV})
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="bench", aws_secret_access_key="bench")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# --- a minimal go-plugin client (Velero's side) -------------------------------------------------

def _field(number: int, payload: bytes) -> bytes:
    from merkle_backup.plugin import _wire

    return _wire._len_field(number, payload)


def _text(number: int, value: str) -> bytes:
    return _field(number, value.encode())


class PluginClient:
    """Starts the plugin as Velero does (VELERO_PLUGIN=hello, app protocol 2), reads the
    handshake line, and calls the ObjectStore over its unix socket."""

    NAME = "merkle-backup.io/aws"

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        import grpc

        started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
            env={**os.environ, **env, "VELERO_PLUGIN": "hello", "PLUGIN_PROTOCOL_VERSIONS": "2",
                 "PYTHONPATH": str(ROOT)})
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        self.startup = time.perf_counter() - started
        parts = line.strip().split("|")
        if len(parts) < 5 or parts[2] != "unix":
            raise RuntimeError(f"plugin handshake: {line!r}")
        self.channel = grpc.insecure_channel(f"unix:{parts[3]}")

        def ident(message: bytes) -> bytes:  # messages are encoded by hand
            return message

        self._init = self.channel.unary_unary("/generated.ObjectStore/Init", ident, ident)
        self._put = self.channel.stream_unary("/generated.ObjectStore/PutObject", ident, ident)
        self._get = self.channel.unary_stream("/generated.ObjectStore/GetObject", ident, ident)
        self._shutdown = self.channel.unary_unary("/plugin.GRPCController/Shutdown", ident,
                                                  ident)

    def init(self, config: dict[str, str]) -> None:
        entries = b"".join(_field(2, _text(1, k) + _text(2, v)) for k, v in config.items())
        self._init(_text(1, self.NAME) + entries, timeout=60)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        head = _text(1, self.NAME) + _text(2, bucket) + _text(3, key)

        def requests() -> Iterator[bytes]:
            view = memoryview(data)
            for i in range(0, len(data), CHUNK):
                yield head + _field(4, bytes(view[i:i + CHUNK]))

        self._put(requests(), timeout=600)

    def get(self, bucket: str, key: str) -> int:
        from merkle_backup.plugin import _wire

        request = _text(1, self.NAME) + _text(2, bucket) + _text(3, key)
        n = 0
        for message in self._get(request, timeout=600):
            n += len(_wire._bytes_of(_wire._fields(message), 1))
        return n

    def close(self) -> None:
        try:
            self._shutdown(b"", timeout=5)
        except Exception:  # it exits while answering
            pass
        self.channel.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# --- the measurements ---------------------------------------------------------------------------

def run_plugin_bench(items: int, repeats: int, out: Path, frozen: Path | None = None,
                     log: Any = print) -> dict[str, Any]:
    from boto3.s3.transfer import TransferConfig
    from isal import igzip

    from bench import generate as gen
    from merkle_backup.signing import generate_keypair

    info = gen.generate(items, "small", log=log)
    folder = Path(info["unchanged"])
    name = folder.name
    tarball = (folder / f"{name}.tar.gz").read_bytes()
    backup_json = json.loads((folder / "velero-backup.json").read_text())
    backup_json["status"]["phase"] = "Finalizing"
    completed = {**backup_json, "status": {**backup_json["status"], "phase": "Completed"}}
    work = Path(tempfile.mkdtemp(dir=out))
    key, _ = generate_keypair(work / "plugin.key")
    moto = Moto()
    try:
        s3 = moto.client()
        bucket = "bench"
        s3.create_bucket(Bucket=bucket)
        config = {"bucket": bucket, "prefix": "velero", "region": "us-east-1",
                  "s3Url": moto.endpoint, "s3ForcePathStyle": "true", "signingKey": str(key)}
        aws_like = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20,
                                  max_concurrency=5)
        key_of = f"velero/backups/{name}/{name}.tar.gz"
        hop_key = f"velero/restores/{name}/hop.tar.gz"
        results: dict[str, list[float]] = {"put_plugin": [], "put_boto3": [], "put_hop": [],
                                           "get_plugin": [], "get_boto3": [], "get_hop": [],
                                           "inflate": []}
        for _ in range(repeats):
            # Through the plugin, as PutBackup: velero-backup.json, then the tarball.
            client = PluginClient(PLUGIN, ENV)
            try:
                client.init(config)
                client.put(bucket, f"velero/backups/{name}/velero-backup.json",
                           json.dumps(backup_json).encode())
                started = time.perf_counter()
                client.put(bucket, key_of, tarball)
                results["put_plugin"].append(time.perf_counter() - started)
                # The finalizer's terminal velero-backup.json: the seal is written.
                client.put(bucket, f"velero/backups/{name}/velero-backup.json",
                           json.dumps(completed).encode())
                started = time.perf_counter()
                client.put(bucket, hop_key, tarball)
                results["put_hop"].append(time.perf_counter() - started)
            finally:
                client.close()
            import io

            started = time.perf_counter()
            s3.upload_fileobj(io.BytesIO(tarball), bucket, "straight/" + key_of, Config=aws_like)
            results["put_boto3"].append(time.perf_counter() - started)
            # Reading back, as a restore: GetObject checks the tarball against the seal.
            client = PluginClient(PLUGIN, ENV)
            try:
                client.init(config)
                started = time.perf_counter()
                got = client.get(bucket, key_of)
                results["get_plugin"].append(time.perf_counter() - started)
                started = time.perf_counter()
                hop = client.get(bucket, hop_key)
                results["get_hop"].append(time.perf_counter() - started)
            finally:
                client.close()
            if got != len(tarball) or hop != len(tarball):
                raise RuntimeError(f"GetObject through the plugin gave {got} bytes, "
                                   f"and {hop} passed through, not {len(tarball)}")
            started = time.perf_counter()
            body = s3.get_object(Bucket=bucket, Key="straight/" + key_of)["Body"]
            while body.read(1 << 20):
                pass
            results["get_boto3"].append(time.perf_counter() - started)
            started = time.perf_counter()
            igzip.decompress(tarball)
            results["inflate"].append(time.perf_counter() - started)
        medians = {k: statistics.median(v) for k, v in results.items()}
        report: dict[str, Any] = {
            "items": items, "entries": 2 * items, "tarball_bytes": len(tarball),
            "repeats": repeats, "seconds": results, "medians": medians,
            "ratios": {"put": medians["put_plugin"] / medians["put_boto3"],
                       "get": medians["get_plugin"] / medians["get_boto3"],
                       "put_vs_hop": medians["put_plugin"] / medians["put_hop"],
                       "get_vs_hop": medians["get_plugin"] / medians["get_hop"],
                       "inflate_vs_put_boto3": medians["inflate"] / medians["put_boto3"]},
            "per_entry_us": {"put": (medians["put_plugin"] - medians["put_boto3"])
                             / (2 * items) * 1e6},
            "load": os.getloadavg(),
        }
        from bench.plugin_startup import to_exit, to_handshake

        runs = range(max(3, repeats))
        with tempfile.TemporaryDirectory() as sockets:
            report["startup"] = {
                "plugin_python": statistics.median(to_handshake(PLUGIN, sockets) for _ in runs),
                "python_pass": statistics.median(to_exit([sys.executable, "-c", "pass"])
                                                 for _ in runs)}
            if frozen is not None:
                report["startup"]["plugin_frozen"] = statistics.median(
                    to_handshake([str(frozen)], sockets) for _ in runs)
        report["targets"] = {k: {"target": t, "ratio": report["ratios"][k],
                                 "met": report["ratios"][k] <= t} for k, t in TARGETS.items()}
        return report
    finally:
        moto.stop()


def summary_line(report: dict[str, Any]) -> str:
    r, m, s = report["ratios"], report["medians"], report["startup"]
    frozen = f", frozen {s['plugin_frozen'] * 1e3:.0f} ms" if "plugin_frozen" in s else ""
    return (f"plugin, {report['entries']} entries ({report['tarball_bytes'] / 1e6:.1f} MB): "
            f"put {m['put_plugin']:.2f} s vs boto3 {m['put_boto3']:.2f} s = {r['put']:.2f}x "
            f"(target 1.3x: {'met' if report['targets']['put']['met'] else 'target missed'}); "
            f"get {m['get_plugin']:.2f} s vs {m['get_boto3']:.2f} s = {r['get']:.2f}x (target "
            f"1.15x: {'met' if report['targets']['get']['met'] else 'target missed'}); "
            f"the hop alone (restores/, passed through): put {m['put_hop']:.2f} s, get "
            f"{m['get_hop']:.2f} s, so sealing {r['put_vs_hop']:.2f}x and verifying "
            f"{r['get_vs_hop']:.2f}x of it; inflating the tarball alone {m['inflate']:.2f} s "
            f"= {r['inflate_vs_put_boto3']:.2f}x the upload; "
            f"start-up to handshake {s['plugin_python'] * 1e3:.0f} ms{frozen} vs python -c pass "
            f"{s['python_pass'] * 1e3:.0f} ms; load {report['load'][0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plugin", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--items", type=int, default=50000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frozen", type=Path, help="the frozen plugin executable, if built")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = run_plugin_bench(args.items, args.repeats, args.out, args.frozen)
    path = args.out / f"plugin-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(summary_line(report))
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
