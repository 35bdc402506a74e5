"""C2SP signed-note, tlog-checkpoint and tlog-cosignature/v1 encodings (docs/format.md §12.2).
Pure: no I/O.

A signed note is ``text ‖ "\\n" ‖ lines``, each line ``"— " name " " base64(keyhash4 ‖ sig) "\\n"``,
``text`` ending in a newline. An Ed25519 key hash is the first four bytes of
``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ pub)``; a cosignature key hash uses type 0x04 and its signature is
``u64be(timestamp) ‖ Ed25519("cosignature/v1\\ntime <timestamp>\\n" ‖ checkpoint body)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from merkle_backup.errors import FormatError, NotAuthentic
from merkle_backup.signing import SigningKey, public_key_of, sign

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
DASH = "\u2014 "
MAX_NOTE = 16 * 1024
_NAME = re.compile(r"[!-*,-~]+\Z")  # printable ASCII, no space, no '+'
_SIG_LINE = re.compile(r"\u2014 ([^ \n]+) ([A-Za-z0-9+/]+={0,2})\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,19})\Z")


def key_hash(name: str, alg: int, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_raw).digest()[:4]


def vkey(name: str, public_raw: bytes, alg: int = ALG_ED25519) -> str:
    """The verifier key string Go's note.NewVerifier reads: name+hash+base64(alg ‖ pub)."""
    return f"{name}+{key_hash(name, alg, public_raw).hex()}+" + base64.b64encode(
        bytes([alg]) + public_raw).decode()


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


@dataclass(frozen=True)
class Signature:
    name: str
    hash: bytes      # 4 bytes
    sig: bytes       # what follows the key hash

    def line(self) -> str:
        return f"{DASH}{self.name} {base64.b64encode(self.hash + self.sig).decode()}\n"


@dataclass(frozen=True)
class Note:
    text: bytes                 # ends in "\n"
    signatures: tuple[Signature, ...]

    def encode(self) -> bytes:
        return self.text + b"\n" + "".join(s.line() for s in self.signatures).encode()


def sign_line(private: SigningKey, name: str, text: bytes) -> Signature:
    """``private``: a key in memory or any ``Signer`` (a file, ssh-agent, KMS, Vault, PKCS#11),
    whose answer it has verified itself."""
    return Signature(name, key_hash(name, ALG_ED25519, public_key_of(private).raw),
                     sign(private, text))


def parse_note(data: bytes) -> Note:
    """Strict: UTF-8, text ends in a newline, a blank line, then one or more signature lines."""
    if len(data) > MAX_NOTE:
        raise FormatError(f"signed note is {len(data)} bytes, more than {MAX_NOTE}")
    try:
        s = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError("signed note is not UTF-8") from e
    if "\r" in s or not s.endswith("\n"):
        raise FormatError("signed note must end with a newline and hold no CR")
    split = s.rfind("\n\n")
    if split < 0:
        raise FormatError("signed note has no signature block")
    text, block = s[: split + 1], s[split + 2 :]
    sigs = []
    for line in block[:-1].split("\n") if block else ():
        m = _SIG_LINE.match(line)
        if not m or not valid_name(m.group(1)):
            raise FormatError("malformed signature line in signed note")
        try:
            raw = base64.b64decode(m.group(2), validate=True)
        except (binascii.Error, ValueError) as e:
            raise FormatError("signature line is not base64") from e
        if len(raw) < 5 or base64.b64encode(raw).decode() != m.group(2):
            raise FormatError("signature line is too short or not canonical base64")
        sigs.append(Signature(m.group(1), raw[:4], raw[4:]))
    if not sigs:
        raise FormatError("signed note has no signature")
    return Note(text.encode(), tuple(sigs))


def verify_ed25519(note: Note, name: str, public_raw: bytes) -> bool:
    """True when some signature line is ``name``'s Ed25519 signature over the text."""
    want = key_hash(name, ALG_ED25519, public_raw)
    for s in note.signatures:
        if s.name == name and s.hash == want and len(s.sig) == 64:
            try:
                Ed25519PublicKey.from_public_bytes(public_raw).verify(s.sig, note.text)
                return True
            except InvalidSignature:
                continue
    return False


# --- tlog-checkpoint ------------------------------------------------------------------------

@dataclass(frozen=True)
class LogCheckpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> bytes:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n".encode()


def parse_log_checkpoint(text: bytes) -> LogCheckpoint:
    """A tlog-checkpoint body without extension lines (we write none and accept none)."""
    try:
        lines = text.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise FormatError("log checkpoint is not UTF-8") from e
    if len(lines) != 4 or lines[3] != "":
        raise FormatError("log checkpoint must be exactly origin, size and root lines")
    origin, size, root = lines[:3]
    if not origin or not _DECIMAL.match(size) or int(size) >= 2**63:
        raise FormatError("log checkpoint origin or size is malformed")
    try:
        raw = base64.b64decode(root, validate=True)
    except (binascii.Error, ValueError) as e:
        raise FormatError("log checkpoint root is not base64") from e
    if len(raw) != 32 or base64.b64encode(raw).decode() != root:
        raise FormatError("log checkpoint root is not 32 bytes of canonical base64")
    cp = LogCheckpoint(origin, int(size), raw)
    if cp.body() != text:
        raise FormatError("log checkpoint is not canonical")
    return cp


# A log's name (docs/format.md §12.2): one key may sign several logs, one per name.
LOG_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?\Z")


def valid_log_name(name: str) -> bool:
    return bool(LOG_NAME.match(name))


def origin_for(public_raw: bytes, name: str | None = None) -> str:
    """docs/format.md §12.2: the log's origin, fixed by its key and, for a named log, its
    name (``merkle-backup.log/<key hash>/<name>``)."""
    base = f"merkle-backup.log/{hashlib.sha256(public_raw).hexdigest()[:16]}"
    return base if name is None else f"{base}/{name}"


def origin_of(public_raw: bytes, origin: str, name: str | None, *, any_name: bool) -> bool:
    """Whether ``origin`` is the log ``name``'s of this key (with ``any_name``: any log of
    this key, named or not)."""
    if not any_name:
        return origin == origin_for(public_raw, name)
    base = origin_for(public_raw)
    return origin == base or (origin.startswith(base + "/")
                              and valid_log_name(origin[len(base) + 1:]))


def sign_log_checkpoint(private: SigningKey, size: int, root: bytes,
                        name: str | None = None) -> bytes:
    origin = origin_for(public_key_of(private).raw, name)
    body = LogCheckpoint(origin, size, root).body()
    return Note(body, (sign_line(private, origin, body),)).encode()


def open_log_checkpoint(data: bytes, trusted_raw: list[bytes], name: str | None = None, *,
                        any_name: bool = False) -> tuple[LogCheckpoint, Note, bytes]:
    """The checkpoint, its note and the raw key that signed it; NotAuthentic unless a trusted
    key's origin for the log ``name`` (any of its logs, with ``any_name``) names it and that
    key signed it."""
    note = parse_note(data)
    cp = parse_log_checkpoint(note.text)
    for raw in trusted_raw:
        if origin_of(raw, cp.origin, name, any_name=any_name) and \
                verify_ed25519(note, cp.origin, raw):
            return cp, note, raw
    what = "a trusted key" if name is None or any_name else f"a trusted key for log {name}"
    raise NotAuthentic(f"log checkpoint of {cp.origin} is not signed by {what}")


# --- tlog-cosignature/v1 ----------------------------------------------------------------------

def cosigned_message(body: bytes, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body


def cosign(private: SigningKey, name: str, body: bytes, timestamp: int) -> Signature:
    raw = public_key_of(private).raw
    sig = sign(private, cosigned_message(body, timestamp))
    return Signature(name, key_hash(name, ALG_COSIGNATURE_V1, raw),
                     timestamp.to_bytes(8, "big") + sig)


def verify_cosignature(note: Note, public_raw: bytes) -> int | None:
    """The timestamp of a valid cosignature by ``public_raw`` (under any name), or None."""
    for s in note.signatures:
        if len(s.sig) != 72 or s.hash != key_hash(s.name, ALG_COSIGNATURE_V1, public_raw):
            continue
        ts = int.from_bytes(s.sig[:8], "big")
        try:
            Ed25519PublicKey.from_public_bytes(public_raw).verify(
                s.sig[8:], cosigned_message(note.text, ts))
            return ts
        except InvalidSignature:
            continue
    return None
