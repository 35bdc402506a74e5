"""A signer over a HashiCorp Vault or OpenBao transit key (docs/format.md §6.1):
``hashivault://<key>`` and ``openbao://<key>``.

The transit API (developer.hashicorp.com/vault/api-docs/secret/transit, the same paths in
OpenBao): ``GET /v1/<mount>/keys/<key>`` gives the key's type and each version's public key;
``POST /v1/<mount>/sign/<key>`` with ``{"input": base64, "key_version": N}`` answers
``vault:vN:<base64 signature>``. Only ``ed25519`` keys, not derived, and always the latest
version at the time the signer is opened, named explicitly in every sign request: a rotation
in Vault (a new version) is a new public key, which verifiers must be given. The ``vault:vN:``
prefix is checked against the version asked for and stripped.

Address, token and CA bundle: ``VAULT_ADDR``, ``VAULT_TOKEN``, ``VAULT_CACERT`` (and
``VAULT_NAMESPACE``) for ``hashivault://``; ``BAO_ADDR``, ``BAO_TOKEN``, ``BAO_CACERT``
(``BAO_NAMESPACE``) for ``openbao://``, falling back to the ``VAULT_`` ones as the bao CLI does.
The mount is ``transit`` unless ``TRANSIT_SECRET_ENGINE_PATH`` says otherwise (cosign's
variable). The token is sent over HTTPS only, or plain HTTP to a loopback address (a dev server).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import ipaddress
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from merkle_backup.errors import KeyFileError, SignerError
from merkle_backup.formats.strict import loads_json
from merkle_backup.signing import PublicKey, check_public_key

MAX_ANSWER = 1 << 20
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_MOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,127}\Z")


def _env(prefix: str, name: str) -> str:
    value = os.environ.get(f"{prefix}_{name}", "")
    if not value and prefix == "BAO":
        value = os.environ.get(f"VAULT_{name}", "")
    return value


class TransitBackend:
    def __init__(self, base: str, headers: dict[str, str], context: ssl.SSLContext | None,
                 mount: str, key: str, version: int, name: str, public_key: PublicKey,
                 timeout: float) -> None:
        self._base = base
        self._headers = headers
        self._context = context
        self._mount = mount
        self._key = key
        self._version = version
        self._timeout = timeout
        self.name = name
        self.public_key = public_key

    @classmethod
    def open(cls, ref: str, *, timeout: float) -> TransitBackend:
        scheme, _, key = ref.partition("://")
        prefix = "VAULT" if scheme == "hashivault" else "BAO"
        if not _KEY_NAME.match(key):
            raise SignerError(f"{ref}: a transit reference is {scheme}://<key name>")
        addr, token = _env(prefix, "ADDR"), _env(prefix, "TOKEN")
        if not addr or not token:
            raise SignerError(f"{ref}: set {prefix}_ADDR and {prefix}_TOKEN")
        base, context = _endpoint(addr, _env(prefix, "CACERT"), ref, prefix)
        mount = os.environ.get("TRANSIT_SECRET_ENGINE_PATH", "transit").strip("/")
        if not _MOUNT.match(mount) or ".." in mount:
            raise SignerError(f"{ref}: TRANSIT_SECRET_ENGINE_PATH {mount[:64]!r} is not a mount")
        headers = {"X-Vault-Token": token, "Accept": "application/json"}
        namespace = _env(prefix, "NAMESPACE")
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        backend = cls(base, headers, context, mount, key, 0, ref, PublicKey(b"", ref), timeout)
        data = backend._call("GET", f"keys/{key}", None)
        if data.get("type") != "ed25519":
            raise SignerError(f"{ref}: the transit key is of type {str(data.get('type'))[:32]}, "
                              "not ed25519")
        if data.get("derived"):
            raise SignerError(f"{ref}: the transit key is derived (one key per context); use a "
                              "key created without derived=true")
        version = data.get("latest_version")
        keys = data.get("keys")
        entry = keys.get(str(version)) if isinstance(keys, dict) else None
        if not isinstance(version, int) or version < 1 or not isinstance(entry, dict):
            raise SignerError(f"{ref}: the transit key has no latest version with a public key")
        try:
            raw = base64.b64decode(str(entry.get("public_key", "")), validate=True)
            public_key = check_public_key(raw, f"{ref} (version {version})")
        except (binascii.Error, ValueError, KeyFileError) as e:
            raise SignerError(f"{ref}: version {version}'s public key is not an Ed25519 key: "
                              f"{e}") from e
        backend._version = version
        backend.public_key = public_key
        backend.name = f"{ref} (version {version})"
        return backend

    def raw_sign(self, message: bytes) -> bytes:
        body = {"input": base64.b64encode(message).decode(), "key_version": self._version}
        data = self._call("POST", f"sign/{self._key}", body)
        text = data.get("signature")
        prefix = f"vault:v{self._version}:"
        if not isinstance(text, str) or not text.startswith(prefix):
            raise SignerError(f"{self.name}: Vault answered a signature that is not "
                              f"{prefix}<base64> ({str(text)[:24]!r}…)")
        try:
            return base64.b64decode(text[len(prefix):], validate=True)
        except (binascii.Error, ValueError) as e:
            raise SignerError(f"{self.name}: Vault's signature is not base64") from e

    def close(self) -> None:
        pass

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        url = f"{self._base}/v1/{self._mount}/{path}"
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        opener = urllib.request.build_opener(
            _NoRedirect, urllib.request.HTTPSHandler(context=self._context))
        try:
            with opener.open(request, timeout=self._timeout) as answer:
                raw = answer.read(MAX_ANSWER + 1)
                missing = answer.length if len(raw) <= MAX_ANSWER else None  # Content-Length
        except urllib.error.HTTPError as e:
            raise SignerError(f"{self.name}: Vault answered HTTP {e.code} for {method} "
                              f"{path}: {_errors(e)}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise SignerError(f"{self.name}: cannot reach Vault at {self._base}: "
                              f"{str(reason)[:200]}") from e
        except http.client.HTTPException as e:  # no status line, a line too long, cut short
            raise SignerError(f"{self.name}: cannot reach Vault at {self._base}: its answer is "
                              f"not HTTP ({type(e).__name__}: {str(e)[:100]})") from e
        if len(raw) > MAX_ANSWER:
            raise SignerError(f"{self.name}: Vault's answer is larger than {MAX_ANSWER} bytes")
        if missing:
            raise SignerError(f"{self.name}: Vault's answer was cut short ({len(raw)} of "
                              f"{len(raw) + missing} bytes)")
        try:
            document = loads_json(raw)  # bounded depth: json.loads recurses (RecursionError)
        except ValueError as e:
            raise SignerError(f"{self.name}: Vault's answer is not JSON ({str(e)[:100]})") from e
        inner = document.get("data") if isinstance(document, dict) else None
        if not isinstance(inner, dict):
            raise SignerError(f"{self.name}: Vault's answer has no data object")
        return inner


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the token elsewhere: refused, as an HTTP error."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _errors(e: urllib.error.HTTPError) -> str:
    try:
        document = loads_json(e.read(64 * 1024))
        errors = document.get("errors") if isinstance(document, dict) else None
        if isinstance(errors, list) and errors:
            return "; ".join(str(x) for x in errors)[:300]
    except (ValueError, OSError, http.client.HTTPException):
        pass
    return str(e.reason)[:300]


def _endpoint(addr: str, cacert: str, ref: str, prefix: str) -> tuple[str, ssl.SSLContext | None]:
    parts = urllib.parse.urlsplit(addr)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path.strip("/"):
        raise SignerError(f"{ref}: {prefix}_ADDR {addr[:100]!r} is not http(s)://HOST[:PORT]")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise SignerError(f"{ref}: {prefix}_ADDR is plain HTTP to {parts.hostname}: the token "
                          "would cross the network in the clear (use https://)")
    context = None
    if parts.scheme == "https":
        try:
            context = ssl.create_default_context(cafile=cacert or None)
        except (OSError, ssl.SSLError) as e:
            raise SignerError(f"{ref}: cannot load {prefix}_CACERT {cacert}: {e}") from e
    return f"{parts.scheme}://{parts.netloc}", context


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
