"""A signer over an AWS KMS key (docs/format.md §6.1): ``awskms:///<key id | alias/NAME | arn>``,
or ``awskms://HOST:PORT/<key>`` for another endpoint (over HTTPS; ``AWS_CA_BUNDLE`` as usual),
as cosign spells it.

The key's spec must be ``ECC_NIST_EDWARDS25519`` with usage ``SIGN_VERIFY``; it signs with
``Sign(MessageType=RAW, SigningAlgorithm=ED25519_SHA_512)``, which is pure Ed25519 (RFC 8032)
over the message. ``ED25519_PH_SHA_512`` (Ed25519ph) is never asked for: its signatures do not
verify as pure Ed25519. Credentials, region and ``AWS_ENDPOINT_URL_KMS`` come from boto3's
standard chain (IRSA in a pod). KMS signs RAW messages of at most 4096 bytes: every checkpoint
and log head is far smaller; a larger message is refused here, before the call.
"""

from __future__ import annotations

from typing import Any

from merkle_backup.errors import KeyFileError, SignerError
from merkle_backup.signing import PublicKey, check_public_key

KEY_SPEC = "ECC_NIST_EDWARDS25519"
ALGORITHM = "ED25519_SHA_512"
MAX_RAW_MESSAGE = 4096


def parse(ref: str) -> tuple[str | None, str]:
    """``awskms://[HOST[:PORT]]/KEY`` -> (endpoint URL or None, key)."""
    rest = ref[len("awskms://"):]
    host, slash, key = rest.partition("/")
    if not slash or not key or any(c.isspace() for c in key):
        raise SignerError(f"{ref}: an AWS KMS reference is awskms:///<key id | alias/NAME | arn> "
                          "or awskms://HOST:PORT/<key>")
    return (f"https://{host}" if host else None), key


def _error(name: str, e: Exception) -> SignerError:
    """One line for a botocore error: the service's code and message, or the client's."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return SignerError(f"{name}: KMS refused: {err.get('Code', '?')}: "
                           f"{str(err.get('Message', ''))[:300]}")
    return SignerError(f"{name}: cannot reach KMS: {str(e)[:300]}")


class KMSBackend:
    def __init__(self, client: Any, key: str, name: str, public_key: PublicKey) -> None:
        self._client = client
        self._key = key
        self.name = name
        self.public_key = public_key

    @classmethod
    def open(cls, ref: str, *, timeout: float) -> KMSBackend:
        endpoint, key = parse(ref)
        name = ref
        client = _client(endpoint, timeout, name)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = client.get_public_key(KeyId=key)
        except (BotoCoreError, ClientError) as e:
            raise _error(name, e) from e
        spec = answer.get("KeySpec")
        usage = answer.get("KeyUsage")
        algorithms = answer.get("SigningAlgorithms") or []
        if spec != KEY_SPEC or usage != "SIGN_VERIFY" or ALGORITHM not in algorithms:
            raise SignerError(f"{name}: the KMS key is {spec} for {usage}, not an "
                              f"{KEY_SPEC} signing key with {ALGORITHM}")
        public_key = _public_key(answer.get("PublicKey"), name)
        # Sign with the key's ARN: an alias moved to another key later cannot change which key
        # signs behind a public key already checked.
        return cls(client, str(answer.get("KeyId") or key), name, public_key)

    def raw_sign(self, message: bytes) -> bytes:
        if len(message) > MAX_RAW_MESSAGE:
            raise SignerError(f"{self.name}: KMS signs RAW messages of at most "
                              f"{MAX_RAW_MESSAGE} bytes; this one is {len(message)}")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.sign(KeyId=self._key, Message=message, MessageType="RAW",
                                       SigningAlgorithm=ALGORITHM)
        except (BotoCoreError, ClientError) as e:
            raise _error(self.name, e) from e
        if answer.get("SigningAlgorithm") not in (None, ALGORITHM):
            raise SignerError(f"{self.name}: KMS answered a {answer.get('SigningAlgorithm')} "
                              f"signature, not {ALGORITHM}")
        signature = answer.get("Signature")
        return signature if isinstance(signature, bytes) else b""

    def close(self) -> None:
        pass


def _client(endpoint: str | None, timeout: float, name: str) -> Any:
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ImportError as e:  # pragma: no cover (boto3 is a dependency)
        raise SignerError(f"{name}: boto3 is not installed") from e
    config = Config(connect_timeout=timeout, read_timeout=timeout,
                    retries={"max_attempts": 3, "mode": "standard"})
    try:
        return boto3.session.Session().client("kms", endpoint_url=endpoint, config=config)
    except BotoCoreError as e:  # no region, a bad endpoint
        raise SignerError(f"{name}: cannot set up a KMS client: {e}") from e


def _public_key(der: object, name: str) -> PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(der, bytes):
        raise SignerError(f"{name}: KMS answered no public key")
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError) as e:
        raise SignerError(f"{name}: KMS answered a public key that is not DER "
                          "SubjectPublicKeyInfo") from e
    if not isinstance(key, Ed25519PublicKey):
        raise SignerError(f"{name}: KMS answered a {type(key).__name__}, not an Ed25519 key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        return check_public_key(raw, name)
    except KeyFileError as e:
        raise SignerError(str(e)) from e
