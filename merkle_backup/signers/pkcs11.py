"""A signer over a PKCS#11 token (docs/format.md §6.1), named by an RFC 7512 URI:
``pkcs11:token=<label>;object=<label>?module-path=<.so>&pin-value=<pin>`` (or ``id=`` for the
object's CKA_ID, ``pin-source=file:<path>`` for a PIN kept in a file; ``module-path`` defaults
to ``$PKCS11_MODULE_PATH``).

The key is a ``CKK_EC_EDWARDS`` private key on Edwards25519 that signs with ``CKM_EDDSA`` and no
parameters: pure Ed25519 (PKCS#11 3.0 §2.3.14). Its public key is read from the matching public
key object's ``CKA_EC_POINT``. Needs the optional extra ``merkle-backup[pkcs11]``
(python-pkcs11).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

from merkle_backup.errors import KeyFileError, SignerError
from merkle_backup.signing import PublicKey, check_public_key

CKM_EDDSA = 0x1057
# Edwards25519 as CKA_EC_PARAMS: the OID 1.3.101.112 (RFC 8410), or the curve's printable name.
ED25519_PARAMS = (bytes.fromhex("06032b6570"), bytes.fromhex("130c656477617264733235353139"))
MAX_PIN_FILE = 4096
_PATH_ATTRS = {"token", "object", "id", "slot-id", "manufacturer", "model", "serial", "type"}
_QUERY_ATTRS = {"module-path", "pin-value", "pin-source"}


def parse_uri(ref: str) -> tuple[dict[str, bytes], dict[str, str]]:
    """RFC 7512 §2.3: path attributes (``;``) and query attributes (``&``), percent-decoded."""
    body = ref[len("pkcs11:"):]
    path, _, query = body.partition("?")
    attrs: dict[str, bytes] = {}
    queries: dict[str, str] = {}
    for part in filter(None, path.split(";")):
        name, eq, value = part.partition("=")
        if not eq or name not in _PATH_ATTRS or name in attrs:
            raise SignerError(f"pkcs11 URI: unknown or repeated attribute {name[:32]!r} "
                              f"(expected some of {', '.join(sorted(_PATH_ATTRS))})")
        attrs[name] = urllib.parse.unquote_to_bytes(value)
    for part in filter(None, query.split("&")):
        name, eq, value = part.partition("=")
        if not eq or name not in _QUERY_ATTRS or name in queries:
            raise SignerError(f"pkcs11 URI: unknown or repeated query attribute {name[:32]!r} "
                              f"(expected some of {', '.join(sorted(_QUERY_ATTRS))})")
        queries[name] = urllib.parse.unquote(value)
    if "object" not in attrs and "id" not in attrs:
        raise SignerError("pkcs11 URI: name the key with object=<label> or id=<CKA_ID>")
    return attrs, queries


def _shown(ref: str) -> str:
    """The URI without its PIN, for messages and the signer's name."""
    path, _, query = ref.partition("?")
    kept = [q for q in query.split("&") if q and not q.startswith("pin-value=")]
    return path + ("?" + "&".join(kept) if kept else "")


def _pin(queries: dict[str, str], name: str) -> str | None:
    if "pin-value" in queries and "pin-source" in queries:
        raise SignerError(f"{name}: give pin-value or pin-source, not both")
    if "pin-source" in queries:
        source = queries["pin-source"]
        path = source[len("file:"):] if source.startswith("file:") else source
        from merkle_backup.storage.files import read_bounded

        data = read_bounded(Path(path), MAX_PIN_FILE, follow=True, error=SignerError,
                            what="PIN file")
        return data.decode("utf-8", "replace").rstrip("\r\n")
    return queries.get("pin-value")


def ec_point_raw(point: bytes) -> bytes:
    """CKA_EC_POINT of an Edwards key: a DER OCTET STRING (PKCS#11 3.0) or, on some tokens,
    the raw 32 bytes."""
    if len(point) == 34 and point[:2] == b"\x04\x20":
        return point[2:]
    return point


class PKCS11Backend:
    def __init__(self, session: Any, private: Any, name: str, public_key: PublicKey) -> None:
        self._session = session
        self._private = private
        self.name = name
        self.public_key = public_key

    @classmethod
    def open(cls, ref: str) -> PKCS11Backend:
        name = _shown(ref)
        attrs, queries = parse_uri(ref)
        try:
            import pkcs11
            from pkcs11 import Attribute, KeyType, ObjectClass
        except ImportError as e:
            raise SignerError(f"{name}: PKCS#11 keys need python-pkcs11 "
                              "(pip install 'merkle-backup[pkcs11]')") from e
        module = queries.get("module-path") or os.environ.get("PKCS11_MODULE_PATH", "")
        if not module:
            raise SignerError(f"{name}: no module-path= in the URI and no $PKCS11_MODULE_PATH")
        pin = _pin(queries, name)
        try:
            lib = pkcs11.lib(module)
            token_args: dict[str, Any] = {}
            if "token" in attrs:
                token_args["token_label"] = attrs["token"].decode("utf-8", "replace")
            if "serial" in attrs:
                token_args["token_serial"] = attrs["serial"]
            token = lib.get_token(**token_args)
            session = _session(pkcs11, token, pin)
        except pkcs11.exceptions.NoSuchToken as e:
            raise SignerError(f"{name}: no such token") from e
        except pkcs11.exceptions.MultipleTokensReturned as e:
            raise SignerError(f"{name}: several tokens match; name one with token=") from e
        except (pkcs11.PKCS11Error, RuntimeError, OSError) as e:
            raise SignerError(f"{name}: cannot open the token: {type(e).__name__} {e}") from e
        try:
            where: dict[Any, Any] = {Attribute.KEY_TYPE: KeyType.EC_EDWARDS}
            if "object" in attrs:
                where[Attribute.LABEL] = attrs["object"].decode("utf-8", "replace")
            if "id" in attrs:
                where[Attribute.ID] = attrs["id"]
            private = _one(session, {**where, Attribute.CLASS: ObjectClass.PRIVATE_KEY},
                           "private key", name)
            public = _one(session, {**where, Attribute.CLASS: ObjectClass.PUBLIC_KEY},
                          "public key", name)
            params = bytes(public[Attribute.EC_PARAMS])
            point = bytes(public[Attribute.EC_POINT])
        except SignerError:
            session.close()
            raise
        except pkcs11.PKCS11Error as e:
            session.close()
            raise SignerError(f"{name}: cannot read the key: {type(e).__name__} {e}") from e
        if params not in ED25519_PARAMS:
            session.close()
            raise SignerError(f"{name}: the key is not on Edwards25519 (CKA_EC_PARAMS "
                              f"{params.hex()[:40]})")
        try:
            public_key = check_public_key(ec_point_raw(point), name)
        except KeyFileError as e:
            session.close()
            raise SignerError(str(e)) from e
        return cls(session, private, name, public_key)

    def raw_sign(self, message: bytes) -> bytes:
        import pkcs11

        try:
            signature = self._private.sign(message, mechanism=pkcs11.Mechanism(CKM_EDDSA))
        except pkcs11.PKCS11Error as e:
            raise SignerError(f"{self.name}: the token refused to sign: "
                              f"{type(e).__name__} {e}") from e
        return bytes(signature)

    def close(self) -> None:
        self._session.close()


def _session(pkcs11: Any, token: Any, pin: str | None) -> Any:
    """A session on ``token``, logged in with ``pin``. PKCS#11 logs in per application, not
    per session: a process that already logged in (an earlier signer) gets a plain session."""
    if pin is None:
        return token.open()
    try:
        return token.open(user_pin=pin)
    except pkcs11.exceptions.UserAlreadyLoggedIn:
        return token.open()


def _one(session: Any, where: dict[Any, Any], what: str, name: str) -> Any:
    found = list(session.get_objects(where))
    if len(found) != 1:
        raise SignerError(f"{name}: {len(found)} Ed25519 {what} objects match on the token, "
                          "expected exactly one")
    return found[0]
