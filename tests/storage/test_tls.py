"""TLS to the endpoint: a private CA (--ca-bundle, or a BackupStorageLocation's caCert), an
untrusted certificate, and --insecure-skip-tls-verify."""

from __future__ import annotations

import base64
import datetime
import ipaddress
from pathlib import Path

import pytest

from tests.cli import run
from tests.conftest import FIXTURES
from tests.storage.conftest import one_line_error
from tests.storage.server import MotoServer, upload_folder

NAME = "demo-small"
# The test's own set-up client talks to the self-signed server without verification.
pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "merkle-backup test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, keypair):
    folder = tmp_path_factory.mktemp("tls")
    ca, cert, key = _certificates(folder)
    server = MotoServer(tls=(cert, key))
    try:
        client = server.client()
        client.create_bucket(Bucket="velero-tls")
        upload_folder(client, "velero-tls", f"velero/backups/{NAME}", FIXTURES / NAME)
        yield server, ca
    finally:
        server.stop()


URL = f"s3://velero-tls/velero/backups/{NAME}"


def test_private_ca_with_ca_bundle(tls_server, keypair, tmp_path: Path) -> None:
    server, ca = tls_server
    seal = tmp_path / "tls.seal"
    code, _, err = run("seal", URL, "--key", keypair[0], "--endpoint-url", server.endpoint,
                       "--ca-bundle", ca, "--seal", seal)
    assert code == 0, err
    code, out, err = run("verify", URL, "--trust", keypair[1], "--endpoint-url", server.endpoint,
                         "--ca-bundle", ca, "--seal", seal)
    assert code == 0 and out.startswith("VERIFIED"), err


def test_untrusted_certificate_is_refused(tls_server, keypair) -> None:
    server, _ = tls_server
    code, out, err = run("verify", URL, "--trust", keypair[1], "--endpoint-url", server.endpoint)
    assert code == 3 and out == ""
    line = one_line_error(err)
    assert "TLS error" in line and "CERTIFICATE_VERIFY_FAILED" in line and "--ca-bundle" in line


def test_insecure_skip_tls_verify(tls_server, keypair, tmp_path: Path) -> None:
    import warnings

    server, _ = tls_server
    seal = tmp_path / "insecure.seal"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run("seal", URL, "--key", keypair[0], "--endpoint-url", server.endpoint,
                           "--insecure-skip-tls-verify", "--seal", seal)
    assert code == 0, err
    # The user asked for it: no InsecureRequestWarning for every request.
    assert not [w for w in caught if w.category.__name__ == "InsecureRequestWarning"]


def test_ca_cert_from_the_bsl(tls_server, keypair, tmp_path: Path) -> None:
    server, ca = tls_server
    bsl = tmp_path / "bsl.yaml"
    bsl.write_text(f"""\
apiVersion: velero.io/v1
kind: BackupStorageLocation
metadata:
  name: default
spec:
  provider: aws
  objectStorage:
    bucket: velero-tls
    prefix: velero
    caCert: {base64.b64encode(ca.read_bytes()).decode()}
  config:
    region: us-east-1
    s3Url: {server.endpoint}
""")
    seal = tmp_path / "bsl.seal"
    code, _, err = run("seal", NAME, "--key", keypair[0], "--bsl", bsl, "--seal", seal)
    assert code == 0, err
    assert run("verify", NAME, "--trust", keypair[1], "--bsl", bsl, "--seal", seal)[0] == 0


def test_missing_ca_bundle_file(tls_server, keypair, tmp_path: Path) -> None:
    server, _ = tls_server
    code, _, err = run("verify", URL, "--trust", keypair[1], "--endpoint-url", server.endpoint,
                       "--ca-bundle", tmp_path / "nope.pem")
    assert code == 3 and "no such file" in one_line_error(err)
