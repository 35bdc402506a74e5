"""A signer over an AWS KMS key (docs/format.md §6.1): ``awskms:///<key id | alias/NAME | arn>``,
or ``awskms://HOST:PORT/<key>`` for another endpoint (over HTTPS; ``AWS_CA_BUNDLE`` as usual),
as cosign spells it.

The key's spec must be ``ECC_NIST_EDWARDS25519`` with usage ``SIGN_VERIFY``; it signs with
``Sign(MessageType=RAW, SigningAlgorithm=ED25519_SHA_512)``, which is pure Ed25519 (RFC 8032)
over the message. ``ED25519_PH_SHA_512`` (Ed25519ph) is never asked for: its signatures do not
verify as pure Ed25519. Credentials, region and ``AWS_ENDPOINT_URL_KMS`` come from boto3's
standard chain (IRSA in a pod). KMS signs RAW messages of at most 4096 bytes: every checkpoint
and log head is far smaller; a larger message is refused here, before the call.

Every answer is read here, not by botocore (which reads any size and meets JSON nested deeply
with RecursionError, a top-level array with AttributeError): at most ``MAX_ANSWER`` bytes, all
of its Content-Length, and one strict JSON object (``formats.strict``), or nothing for an
error; a field of the wrong type is one line too. A proxy's error page on a 5xx stays
botocore's generic server error, which it retries.
"""

from __future__ import annotations

from typing import Any

from merkle_backup.errors import KeyFileError, SignerError
from merkle_backup.formats.strict import loads_json
from merkle_backup.signing import PublicKey, check_public_key

KEY_SPEC = "ECC_NIST_EDWARDS25519"
ALGORITHM = "ED25519_SHA_512"
MAX_RAW_MESSAGE = 4096
MAX_ANSWER = 1 << 20
# What botocore's parser raises on an answer of the right JSON but the wrong shapes: a blob
# that is a number or not base64 (TypeError, binascii.Error), a list that is a number.
_SHAPE_ERRORS = (ValueError, TypeError, AttributeError)


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


def _unfit(name: str, e: Exception) -> SignerError:
    return SignerError(f"{name}: KMS's answer does not fit the KMS API: {str(e)[:200]}")


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
        except _SHAPE_ERRORS as e:
            raise _unfit(name, e) from e
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
        except _SHAPE_ERRORS as e:
            raise _unfit(self.name, e) from e
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
                    retries={"total_max_attempts": 3, "mode": "standard"})
    try:
        client = boto3.session.Session().client("kms", endpoint_url=endpoint, config=config)
    except BotoCoreError as e:  # no region, a bad endpoint
        raise SignerError(f"{name}: cannot set up a KMS client: {e}") from e
    # botocore's own HTTP session (private: a botocore without it is refused, never bypassed).
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    if session is None or not callable(getattr(session, "send", None)):
        import botocore

        raise SignerError(f"{name}: botocore {botocore.__version__} has no client HTTP session "
                          "to read KMS's answers through (merkle-backup bounds them itself)")
    client.meta.events.register("before-send.kms", _Reader(session, name))
    return client


class _Reader:
    """A ``before-send`` handler: sends the request with the client's own HTTP session (its
    TLS, proxies and timeouts), reads the answer itself, at most ``MAX_ANSWER`` bytes, and
    hands botocore a body that is nothing or one strict JSON object. An error raised here
    ends the call (botocore retries only its own transient errors)."""

    def __init__(self, session: Any, name: str) -> None:
        self._session = session
        self._name = name

    def __call__(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse
        from urllib3.exceptions import HTTPError

        request.stream_output = True  # the session leaves the body to be read here
        response = self._session.send(request)
        status = response.status_code
        try:
            body = response.raw.read(MAX_ANSWER + 1)
        except (HTTPError, OSError) as e:  # a read timeout: the answer stalled
            response.raw.close()
            raise SignerError(f"{self._name}: cannot reach KMS: its answer (HTTP {status}) "
                              f"stopped: {str(e)[:200]}") from e
        if len(body) > MAX_ANSWER:
            response.raw.close()
            raise SignerError(f"{self._name}: KMS's answer is larger than {MAX_ANSWER} bytes")
        missing = response.raw.length_remaining  # of its Content-Length
        if missing:
            raise SignerError(f"{self._name}: KMS's answer (HTTP {status}) was cut short "
                              f"({len(body)} of {len(body) + missing} bytes)")
        if body or status < 300:  # an answer is a JSON object; an error may be nothing
            try:
                document = loads_json(body)
                reason = "" if isinstance(document, dict) else f"a JSON {type(document).__name__}"
            except ValueError as e:
                reason = str(e)[:100] if body else "nothing"
            if reason and status >= 500:
                body = b""  # a proxy's error page: botocore's "500: Internal Server Error"
            elif reason:
                raise SignerError(f"{self._name}: KMS's answer (HTTP {status}) is not a JSON "
                                  f"object: {reason}")
        return AWSResponse(response.url, status, response.headers, _Body(body))


class _Body:
    """What ``AWSResponse`` reads its content from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> list[bytes]:
        return [self._data]


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
