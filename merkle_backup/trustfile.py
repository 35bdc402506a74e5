"""Trust files (docs/format.md §6.3): several trusted keys, each optionally bounded, so that a
retired key stops counting without re-sealing history.

```
merkle-backup-trust v1
# a comment; blank lines are ignored
<vkey> [not-after <YYYY-MM-DDTHH:MM:SSZ>] [not-after-size <N>]
```

``<vkey>`` is the C2SP note verifier key ``name+hash+base64(0x01 ‖ pub)`` that
``merkle-backup pubkey --vkey`` prints; its 4-byte hash is checked. ``not-after`` bounds seals
(their signed ``created`` time, §5.1), ``not-after-size`` log heads (their tree size, §12.2).
``parse_trust_file`` is pure; ``load_trusted`` reads a file named on the command line, a trust
file or a PEM public key as before.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timezone
from pathlib import Path

from merkle_backup.errors import KeyFileError
from merkle_backup.signing import PublicKey, check_public_key

HEADER = "merkle-backup-trust v1"
MAX_TRUST_FILE_BYTES = 64 * 1024
MAX_KEYS = 64
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,18})\Z")
_VKEY = re.compile(r"([!-*,-~]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+={0,2})\Z")


def is_trust_file(data: bytes) -> bool:
    return data.startswith(HEADER.encode() + b"\n")


def parse_vkey(text: str, source: str) -> PublicKey:
    """A C2SP vkey ``name+hash+base64(0x01 ‖ pub)``: an Ed25519 key whose hash matches."""
    from merkle_backup.tlog.note import ALG_ED25519, key_hash

    m = _VKEY.match(text)
    if not m:
        raise KeyFileError(f"{source}: not a key NAME+HASH+BASE64 (merkle-backup pubkey --vkey)")
    name, hash_hex, b64 = m.groups()
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise KeyFileError(f"{source}: the key is not base64") from e
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise KeyFileError(f"{source}: not an Ed25519 key (type byte 0x01 and 32 bytes)")
    if key_hash(name, ALG_ED25519, raw[1:]).hex() != hash_hex:
        raise KeyFileError(f"{source}: the key's hash {hash_hex} does not match its name and key")
    return check_public_key(raw[1:], f"{source} ({name})")


def parse_trust_file(data: bytes, source: str) -> list[PublicKey]:
    """Every key of a trust file, with its bounds; KeyFileError (exit 3) for anything else."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KeyFileError(f"{source}: a trust file is UTF-8 text") from e
    if not is_trust_file(data) or "\r" in text:
        raise KeyFileError(f"{source}: a trust file starts with the line {HEADER!r}")
    keys: list[PublicKey] = []
    for number, line in enumerate(text.split("\n")[1:], start=2):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{source}:{number}"
        key = parse_vkey(words[0], where)
        not_after, not_after_size = None, None
        rest = words[1:]
        while rest:
            if len(rest) < 2:
                raise KeyFileError(f"{where}: {rest[0][:40]!r} needs a value")
            label, value, rest = rest[0], rest[1], rest[2:]
            if label == "not-after" and not_after is None and _TIME.match(value):
                try:
                    not_after = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(
                        tzinfo=timezone.utc)
                except ValueError as e:
                    raise KeyFileError(f"{where}: not-after {value}: {e}") from e
            elif label == "not-after-size" and not_after_size is None and _DECIMAL.match(value):
                not_after_size = int(value)
            else:
                raise KeyFileError(f"{where}: expected not-after YYYY-MM-DDTHH:MM:SSZ or "
                                   f"not-after-size N, got {label[:40]!r} {value[:40]!r}")
        if any(k.raw == key.raw for k in keys):
            raise KeyFileError(f"{where}: the key is listed twice")
        keys.append(PublicKey(key.raw, key.source, not_after, not_after_size))
        if len(keys) > MAX_KEYS:
            raise KeyFileError(f"{source}: more than {MAX_KEYS} keys")
    if not keys:
        raise KeyFileError(f"{source}: the trust file lists no key")
    return keys


def load_trusted(path: Path) -> list[PublicKey]:
    """``--trust FILE``: a trust file's keys, or the one PEM public key the file holds."""
    from merkle_backup.signing import MAX_KEY_FILE_BYTES, load_public_key
    from merkle_backup.storage.files import read_bounded

    data = read_bounded(path, max(MAX_KEY_FILE_BYTES, MAX_TRUST_FILE_BYTES), follow=True,
                        error=KeyFileError, what="key file")
    if is_trust_file(data):
        return parse_trust_file(data, str(path))
    return [load_public_key(path)]
