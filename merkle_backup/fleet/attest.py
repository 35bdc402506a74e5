"""Signed evidence of an audit (``audit --attest FILE --key KEY``) and its check
(``verify-attestation FILE --trust PUB``).

The evidence is an in-toto Statement v1 (https://github.com/in-toto/attestation, spec v1) in a
DSSE envelope (https://github.com/secure-systems-lab/dsse, protocol.md) signed with Ed25519:

* ``subject``: the listing of the location (``LOCATION/backups/``, SHA-256 of the sorted names
  joined by newlines: the scope), then for each sealed backup its tarball and seal, named by
  URL, with the SHA-256 of the bytes the verifier read (an S3 tarball is pinned by its ETag, so
  both of the verifier's passes read those bytes);
* ``predicateType``: ``PREDICATE_TYPE``; ``predicate``: the tool and its version, the start
  and end times, the scope (location, shard, --require-seal, trusted key ids, incremental
  settings) and the findings (the summary, the exit code, one row per backup).

The signature is over DSSE's PAE: ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` with
payloadType ``application/vnd.in-toto+json``; ``keyid`` is the key id of docs/format.md §6
(SHA-256 of the raw public key, hex), a hint only: trust comes from ``--trust``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from merkle_backup.errors import FormatError, SignatureError
from merkle_backup.formats.strict import loads_json
from merkle_backup.signing import PublicKey, SigningKey, public_key_of, sign

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/merkle-backup/merkle-backup/audit/v1"
MAX_ENVELOPE_BYTES = 64 * 2**20
MAX_SIGNATURES = 16


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def envelope(statement: dict[str, Any], privates: Sequence[SigningKey]) -> bytes:
    """The DSSE envelope of ``statement`` with one signature per key, in the order given (DSSE
    allows several; a verifier accepts the envelope when one it trusts verifies: overlap
    rotation, as a seal signed by two keys)."""
    payload = json.dumps(
        statement, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()
    message = pae(PAYLOAD_TYPE, payload)
    env = {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": public_key_of(private).key_id.hex(),
                        "sig": base64.b64encode(sign(private, message)).decode()}
                       for private in privates],
    }
    return (json.dumps(env, indent=1) + "\n").encode()


def statement(subjects: list[dict[str, Any]], predicate: dict[str, Any]) -> dict[str, Any]:
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE,
            "predicate": predicate}


def subject(name: str, sha256: str) -> dict[str, Any]:
    return {"name": name, "digest": {"sha256": sha256}}


@dataclass(frozen=True)
class Checked:
    statement: dict[str, Any]
    signer: PublicKey

    @property
    def predicate(self) -> dict[str, Any]:
        predicate: dict[str, Any] = self.statement["predicate"]
        return predicate


def _strict_json(data: bytes, what: str) -> Any:
    try:
        return loads_json(data)
    except ValueError as e:
        raise FormatError(f"{what} is not valid JSON ({e})") from e


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise FormatError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise FormatError(f"{what} is not valid base64 ({e})") from e


def verify_envelope(
    data: bytes, trusted: Sequence[PublicKey], source: str = "attestation"
) -> Checked:
    """The statement of a DSSE envelope signed by a trusted key. FormatError (exit 3) for what
    is not an envelope of an audit statement; SignatureError (exit 1) when no trusted key
    signed exactly these bytes."""
    if not trusted:
        raise FormatError("no trusted public key given")
    if len(data) > MAX_ENVELOPE_BYTES:
        raise FormatError(f"{source} is larger than {MAX_ENVELOPE_BYTES} bytes")
    env = _strict_json(data, source)
    if not isinstance(env, dict) or not {"payload", "payloadType", "signatures"} <= set(env):
        raise FormatError(f"{source} is not a DSSE envelope (payload, payloadType, signatures)")
    if env["payloadType"] != PAYLOAD_TYPE:
        raise FormatError(f"{source}: payloadType is {env['payloadType']!r}, not {PAYLOAD_TYPE}")
    payload = _b64(env["payload"], f"{source}: payload")
    signatures = env["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise SignatureError(f"{source} has no signature")
    if len(signatures) > MAX_SIGNATURES:
        raise FormatError(f"{source} has more than {MAX_SIGNATURES} signatures")
    message = pae(PAYLOAD_TYPE, payload)
    signer = None
    for entry in signatures:
        # DSSE: the envelope is accepted when any signature verifies; one that does not decode
        # is no signature (it must not decide the verdict before a good one is seen, T76).
        try:
            if not isinstance(entry, dict):
                raise FormatError(f"{source}: a signature is not an object")
            sig = _b64(entry.get("sig"), f"{source}: sig")
        except FormatError:
            continue
        for key in trusted:
            try:
                key.verify(sig, message)
            except SignatureError:
                continue
            signer = key
            break
        if signer is not None:
            break
    if signer is None:
        raise SignatureError(f"{source} is not signed by any trusted key (or was modified)")
    st = _strict_json(payload, f"{source}: payload")
    if not isinstance(st, dict) or st.get("_type") != STATEMENT_TYPE:
        raise FormatError(f"{source}: the payload is not an in-toto Statement v1")
    if st.get("predicateType") != PREDICATE_TYPE:
        raise FormatError(f"{source}: predicateType is {st.get('predicateType')!r}, not a "
                          "merkle-backup audit")
    subjects, predicate = st.get("subject"), st.get("predicate")
    if (
        not isinstance(subjects, list)
        or not subjects
        or not all(
            isinstance(s, dict)
            and isinstance(s.get("name"), str)
            and isinstance(s.get("digest"), dict)
            and s["digest"]
            for s in subjects
        )
    ):
        raise FormatError(f"{source}: the statement's subjects are malformed")
    if not isinstance(predicate, dict) or not isinstance(predicate.get("findings"), dict) \
            or not isinstance(predicate["findings"].get("backups"), list) \
            or not isinstance(predicate.get("scope"), dict):
        raise FormatError(f"{source}: the statement's predicate is not an audit's")
    return Checked(st, signer)
