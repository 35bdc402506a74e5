"""From what the user typed to a backup source: a local folder or tarball, or S3.

* ``open_backup("s3://BUCKET/PREFIX/backups/NAME", options)`` -> ``S3Backup``; anything else is a
  local path -> ``LocalBackup``. With ``--bsl`` a bare backup NAME is looked up in the
  BackupStorageLocation's bucket and prefix.
* ``open_location("s3://BUCKET/PREFIX" or a folder, options)`` -> the storage location that holds
  ``backups/<name>/`` folders, for ``seal-all`` and ``audit``.
* ``load_bsl``, which reads the S3 settings (``storage.options.ConnectionOptions``) from a
  BackupStorageLocation manifest (JSON, or the plain YAML that ``kubectl get bsl -o yaml`` and
  hand-written manifests use: see ``parse_simple_yaml``).

Nothing here imports boto3: ``storage.s3`` is imported only when an ``s3://`` location is opened.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from merkle_backup.errors import CannotCheck, StorageError, UsageError
from merkle_backup.formats.seal import SealHead, read_seal_head
from merkle_backup.storage.files import non_regular_kind, read_bounded
from merkle_backup.storage.local import MAX_OBJECT_BYTES, SEAL_SUFFIX, LocalBackup, open_local_seal
from merkle_backup.storage.options import ConnectionOptions
from merkle_backup.velero import is_backup_name

S3_SCHEME = "s3://"
BACKUPS_FOLDER = "backups"
MAX_BSL_BYTES = 1 << 20
# S3 bucket names, loosely (S3-compatible stores accept a little more than AWS does).
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


@dataclass(frozen=True)
class S3Url:
    bucket: str
    prefix: str  # no leading or trailing "/"; "" for the bucket's root

    def __str__(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{S3_SCHEME}{self.bucket}"


@dataclass(frozen=True)
class BackupStorageLocation:
    """What merkle-backup uses of a Velero BackupStorageLocation."""

    name: str
    location: S3Url
    options: ConnectionOptions
    notes: tuple[str, ...] = ()


# -- BACKUP and LOCATION strings ----------------------------------------------------------------


def parse_s3_url(text: str) -> S3Url:
    """``s3://BUCKET[/PREFIX...]`` -> S3Url; UsageError for anything else."""
    if not text.startswith(S3_SCHEME):
        raise UsageError(f"{text!r} is not an s3:// URL")
    bucket, _, key = text[len(S3_SCHEME):].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise UsageError(f"{text}: {bucket!r} is not a bucket name")
    key = key.strip("/")
    segments = key.split("/") if key else []
    if any(s in ("", ".", "..") for s in segments):
        raise UsageError(f"{text}: empty, '.' or '..' segment in the key prefix")
    return S3Url(bucket, key)


def split_backup_url(text: str) -> tuple[S3Url, str]:
    """``s3://BUCKET/PREFIX/backups/NAME`` -> (location s3://BUCKET/PREFIX, NAME)."""
    url = parse_s3_url(text)
    segments = url.prefix.split("/") if url.prefix else []
    if len(segments) < 2 or segments[-2] != BACKUPS_FOLDER:
        raise UsageError(
            f"{text}: an S3 backup is s3://BUCKET[/PREFIX]/{BACKUPS_FOLDER}/NAME (Velero's layout)"
        )
    name = segments[-1]
    if not is_backup_name(name):
        raise UsageError(f"{text}: {name!r} is not a Velero backup name")
    return S3Url(url.bucket, "/".join(segments[:-2])), name


Warn = Callable[[str], None]


def open_backup(backup: str | Path, options: ConnectionOptions | None = None,
                seal_path: Path | None = None, *, warn: Warn | None = None) -> Any:
    """The BackupSource for BACKUP: S3Backup for s3:// URLs (or a bare NAME with --bsl),
    LocalBackup for a local folder or tarball."""
    options = options or ConnectionOptions()
    text = str(backup)
    bsl = load_bsl(options.bsl) if options.bsl else None
    if text.startswith(S3_SCHEME) or (bsl is not None and _is_bare_name(text)):
        if text.startswith(S3_SCHEME):
            location, name = split_backup_url(text)
        else:
            assert bsl is not None
            location, name = bsl.location, text
        from merkle_backup.storage.s3 import S3Backup

        store = _connect(location.bucket, options, bsl, warn=warn)
        return S3Backup(store, location.prefix, name, seal_path)
    return LocalBackup(Path(backup), seal_path)


def open_location(location: str | None, options: ConnectionOptions | None = None,
                  *, pool_size: int = 10, warn: Warn | None = None) -> Any:
    """The storage location for ``seal-all`` / ``audit``: S3Bucket or LocalBucket. Without
    LOCATION, the BackupStorageLocation's bucket and prefix (--bsl)."""
    options = options or ConnectionOptions()
    bsl = load_bsl(options.bsl) if options.bsl else None
    if location is None:
        if bsl is None:
            raise UsageError("give a LOCATION (s3://BUCKET/PREFIX or a folder) or --bsl FILE")
        url = bsl.location
    elif location.startswith(S3_SCHEME):
        url = parse_s3_url(location)
    else:
        return LocalBucket(Path(location))
    from merkle_backup.storage.s3 import S3Bucket

    return S3Bucket(_connect(url.bucket, options, bsl, pool_size=pool_size, warn=warn), url.prefix)


def _is_bare_name(text: str) -> bool:
    return is_backup_name(text) and not Path(text).exists()


def _connect(bucket: str, options: ConnectionOptions, bsl: BackupStorageLocation | None,
             *, pool_size: int = 10, warn: Warn | None = None) -> Any:
    from merkle_backup.storage.s3 import connect

    effective = options.over(bsl.options) if bsl is not None else options
    if bsl is not None and warn is not None:
        for note in bsl.notes:
            warn(note)
    return connect(bucket, effective, pool_size=pool_size, warn=warn)


class LocalBucket:
    """A local folder laid out like a bucket (``aws s3 sync s3://BUCKET/PREFIX DIR``): it holds
    ``backups/<name>/`` folders."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.backups = self.root / BACKUPS_FOLDER
        if not self.backups.is_dir():
            if self.root.name == BACKUPS_FOLDER and self.root.is_dir():
                raise StorageError(
                    f"{self.root}: give the folder that holds {BACKUPS_FOLDER}/, not "
                    f"{BACKUPS_FOLDER}/ itself"
                )
            raise StorageError(f"{self.root}: no {BACKUPS_FOLDER}/ folder (not a bucket layout)")

    def describe(self) -> str:
        return str(self.root)

    def backup_names(self) -> list[str]:
        """Every folder under backups/, and every link there (reported, never followed: a link
        planted in the bucket layout is not a backup folder)."""
        try:
            with os.scandir(self.backups) as entries:
                return sorted(e.name for e in entries
                              if e.is_symlink() or e.is_dir(follow_symlinks=False))
        except OSError as e:
            raise StorageError(f"cannot list {self.backups}: {e.strerror or e}") from e

    def _folder(self, name: str) -> Path:
        """backups/NAME, refused unless it is a real folder (not a link to one)."""
        folder = self.backups / name
        kind = non_regular_kind(folder, follow=False)
        if kind is not None and kind != "a directory":
            raise StorageError(f"{folder} is {kind}, not a backup folder")
        return folder

    def read_object(self, name: str, filename: str) -> bytes | None:
        backup = self._folder(name)
        path = backup / filename
        if not backup.is_dir():
            return None
        try:
            return read_bounded(path, MAX_OBJECT_BYTES, follow=False)
        except StorageError:
            if not os.path.lexists(path):
                return None
            raise

    def has_seal(self, name: str) -> bool:
        """True when anything (even a link or a FIFO) is at the seal's place."""
        return os.path.lexists(self._folder(name) / f"{name}{SEAL_SUFFIX}")

    def read_seal_head(self, name: str) -> SealHead:
        """The head of the seal (FormatError when it does not decode, NotRegularFile when a
        link or FIFO is in its place): the whole file is read through, in constant memory."""
        with open_local_seal(self._folder(name) / f"{name}{SEAL_SUFFIX}", follow=False) as f:
            return read_seal_head(f)

    def open(self, name: str) -> LocalBackup:
        return LocalBackup(self._folder(name))


# -- BackupStorageLocation manifests ------------------------------------------------------------


def load_bsl(path: Path) -> BackupStorageLocation:
    """Read a BackupStorageLocation manifest (JSON or simple YAML) into connection options."""
    raw = read_bounded(path, MAX_BSL_BYTES, follow=True, error=CannotCheck)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CannotCheck(f"{path}: not UTF-8 text") from e
    if text.lstrip().startswith(("{", "[")):
        try:
            document = json.loads(text)
        except ValueError as e:
            raise CannotCheck(f"{path}: not valid JSON: {e}") from e
        documents = [document]
    else:
        try:
            documents = parse_simple_yaml(text)
        except YamlSubsetError as e:
            raise CannotCheck(
                f"{path}: {e} (only simple YAML is read; `kubectl get bsl NAME -o json` "
                "gives JSON, which always works)"
            ) from e
    return bsl_from_manifest(_pick_bsl(documents, path), path)


def _pick_bsl(documents: list[Any], path: Path) -> dict:
    found: list[dict] = []
    for document in documents:
        if not isinstance(document, dict):
            continue
        if document.get("kind") in ("List", "BackupStorageLocationList"):
            items = document.get("items")
            if isinstance(items, list):
                found.extend(i for i in items if isinstance(i, dict))
        else:
            found.append(document)
    found = [d for d in found if d.get("kind") == "BackupStorageLocation"]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise CannotCheck(f"{path}: {what} BackupStorageLocation objects; give a file with exactly one")
    return found[0]


def bsl_from_manifest(obj: dict, source: Path | str = "BackupStorageLocation") -> BackupStorageLocation:
    """The S3 settings of a BackupStorageLocation object (already parsed)."""
    def fail(message: str) -> CannotCheck:
        return CannotCheck(f"{source}: {message}")

    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise fail("no spec")
    provider = spec.get("provider")
    if isinstance(provider, str) and provider.rsplit("/", 1)[-1] not in ("aws", "velero-plugin-for-aws"):
        raise fail(f"provider {provider!r} is not S3 (aws); only S3-compatible storage is supported")
    storage = spec.get("objectStorage")
    if not isinstance(storage, dict) or not isinstance(storage.get("bucket"), str):
        raise fail("no spec.objectStorage.bucket")
    prefix = storage.get("prefix") or ""
    if not isinstance(prefix, str):
        raise fail("spec.objectStorage.prefix is not a string")
    try:
        location = parse_s3_url(f"{S3_SCHEME}{storage['bucket']}/{prefix.strip('/')}")
    except UsageError as e:
        raise fail(str(e)) from e
    config = spec.get("config") or {}
    if not isinstance(config, dict):
        raise fail("spec.config is not a map")
    config = {str(k): v for k, v in config.items()}
    for key, value in config.items():
        if not isinstance(value, (str, bool, int)):
            raise fail(f"spec.config.{key} is not a string")

    def text(key: str) -> str | None:
        value = config.get(key)
        return None if value is None else str(value)

    def flag(key: str) -> bool | None:
        value = config.get(key)
        if value is None:
            return None
        lowered = str(value).strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise fail(f"spec.config.{key} is {value!r}, not true or false")

    notes: list[str] = []
    if config.get("customerKeyEncryptionSecret"):
        notes.append("customerKeyEncryptionSecret is a Kubernetes Secret: mount it and pass "
                     "--sse-c-key FILE")
    if config.get("signatureVersion") not in (None, "", "4", "v4"):
        notes.append(f"signatureVersion {config['signatureVersion']} is ignored (SigV4 is used)")
    ca_cert = storage.get("caCert")
    ca_pem = None
    if isinstance(ca_cert, str) and ca_cert.strip():
        try:
            ca_pem = decode_ca_cert(ca_cert)
        except ValueError as e:
            raise fail(f"spec.objectStorage.caCert: {e}") from e
    key_file = text("customerKeyEncryptionFile")
    credentials = text("credentialsFile")
    options = ConnectionOptions(
        endpoint_url=text("s3Url") or None,
        region=text("region") or None,
        profile=text("profile") or None,
        path_style=flag("s3ForcePathStyle"),
        insecure_skip_tls_verify=flag("insecureSkipTLSVerify"),
        sse_c_key_file=Path(key_file) if key_file else None,
        credentials_file=Path(credentials) if credentials else None,
        server_side_encryption=text("serverSideEncryption") or None,
        kms_key_id=text("kmsKeyId") or None,
        checksum_algorithm=text("checksumAlgorithm"),
        ca_cert_pem=ca_pem,
    )
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    name = name if isinstance(name, str) else "(unnamed)"
    return BackupStorageLocation(name, location, options, tuple(notes))


def decode_ca_cert(value: str) -> bytes:
    """``spec.objectStorage.caCert``: base64 of a PEM bundle (ValueError when it is not)."""
    try:
        pem = base64.b64decode("".join(value.split()), validate=True)
    except ValueError as e:
        raise ValueError(f"not base64 ({e})") from e
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("no PEM certificate in it")
    return pem


# -- a small YAML subset ------------------------------------------------------------------------


class YamlSubsetError(ValueError):
    """The text uses YAML this reader does not handle (or is not YAML)."""


_KEY = re.compile(r"""(?P<key>"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"{}\[\],&*!|>%@`][^#]*?)\s*:(?:\s+|$)(?P<rest>.*)$""")


def parse_simple_yaml(text: str) -> list[Any]:
    """Parse the YAML that Kubernetes manifests use, without a YAML library.

    Supported: ``---`` separated documents; block mappings and block sequences (``- item``,
    including ``- key: value`` items) by indentation; plain, single- and double-quoted scalars;
    ``|`` and ``>`` block scalars (with ``-``/``+`` chomping); ``#`` comments; empty ``{}`` and
    ``[]``. Scalars stay strings (BSL config values are strings anyway); ``null`` and ``~`` are
    None. Refused with YamlSubsetError: anchors, aliases, tags, flow collections with content,
    multi-line plain scalars, tabs for indentation, duplicate keys.
    """
    documents: list[Any] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.rstrip() == "---" or line.startswith("--- "):
            if any(_content(x) for x in current):
                documents.append(_Parser(current).document())
            current = []
            continue
        if line.rstrip() == "...":
            continue
        current.append(line)
    if any(_content(x) for x in current):
        documents.append(_Parser(current).document())
    return documents


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _strip_comment(value: str) -> str:
    """A plain or quoted scalar's text without a trailing ' # comment'."""
    value = value.strip()
    if value.startswith(('"', "'")):
        quote = value[0]
        i = 1
        while i < len(value):
            if quote == '"' and value[i] == "\\":
                i += 2
                continue
            if value[i] == quote:
                if quote == "'" and i + 1 < len(value) and value[i + 1] == "'":
                    i += 2
                    continue
                rest = value[i + 1:].strip()
                if rest and not rest.startswith("#"):
                    raise YamlSubsetError(f"text after a quoted scalar: {value!r}")
                return value[: i + 1]
            i += 1
        raise YamlSubsetError(f"unterminated quoted scalar: {value!r}")
    match = re.search(r"\s#", value)
    return value[: match.start()].rstrip() if match else value


def _scalar(raw: str) -> Any:
    value = _strip_comment(raw)
    if value.startswith('"'):
        try:
            return json.loads(value)
        except ValueError as e:
            raise YamlSubsetError(f"unsupported double-quoted scalar {value!r}") from e
    if value.startswith("'"):
        return value[1:-1].replace("''", "'")
    if value in ("", "~", "null", "Null", "NULL"):
        return None
    if value == "{}":
        return {}
    if value == "[]":
        return []
    if value[0] in "&*!{[%@`" or value.startswith(("- ", "? ")):
        raise YamlSubsetError(f"unsupported YAML (anchor, alias, tag or flow collection): {value!r}")
    return value


class _Parser:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.i = 0

    def _next_content(self) -> int | None:
        while self.i < len(self.lines) and not _content(self.lines[self.i]):
            self.i += 1
        if self.i >= len(self.lines):
            return None
        line = self.lines[self.i]
        indent = len(line) - len(line.lstrip(" "))
        if line[indent:indent + 1] == "\t":
            raise YamlSubsetError(f"line {self.i + 1}: tab used for indentation")
        return indent

    def document(self) -> Any:
        indent = self._next_content()
        if indent is None:
            return None
        value = self._node(indent)
        if self._next_content() is not None:
            raise YamlSubsetError(f"line {self.i + 1}: unexpected indentation")
        return value

    def _node(self, indent: int) -> Any:
        line = self.lines[self.i][indent:]
        if line.startswith("- ") or line.rstrip() == "-":
            return self._sequence(indent)
        if _KEY.match(line):
            return self._mapping(indent)
        if len(self.lines) - self.i == 1 or self._only_line():
            self.i += 1
            return _scalar(line)
        raise YamlSubsetError(f"line {self.i + 1}: multi-line scalars are not supported")

    def _only_line(self) -> bool:
        return not any(_content(x) for x in self.lines[self.i + 1:])

    def _mapping(self, indent: int) -> dict:
        result: dict[str, Any] = {}
        while True:
            at = self._next_content()
            if at is None or at < indent:
                return result
            if at > indent:
                raise YamlSubsetError(f"line {self.i + 1}: unexpected indentation")
            line = self.lines[self.i][indent:]
            if line.startswith("- ") or line.rstrip() == "-":
                raise YamlSubsetError(f"line {self.i + 1}: a sequence item inside a mapping")
            match = _KEY.match(line)
            if not match:
                raise YamlSubsetError(f"line {self.i + 1}: expected 'key: value'")
            key = _scalar(match.group("key"))
            if not isinstance(key, str):
                raise YamlSubsetError(f"line {self.i + 1}: unsupported key")
            if key in result:
                raise YamlSubsetError(f"line {self.i + 1}: duplicate key {key!r}")
            result[key] = self._value(match.group("rest"), indent)

    def _value(self, rest: str, indent: int) -> Any:
        """The value after 'key:' or '- ' on line self.i, consuming its lines."""
        rest_clean = _strip_comment(rest) if rest.strip() else ""
        if rest_clean[:1] in ("|", ">"):
            return self._block_scalar(rest_clean, indent)
        self.i += 1
        if rest_clean:
            return _scalar(rest_clean)
        at = self._next_content()
        if at is None:
            return None
        line = self.lines[self.i][at:]
        # A sequence may sit at the same indentation as its key (kubectl writes it so).
        if at > indent or (at == indent and (line.startswith("- ") or line.rstrip() == "-")):
            return self._node(at)
        return None

    def _block_scalar(self, header: str, indent: int) -> str:
        style, chomp = header[0], header[1:].strip()
        if chomp not in ("", "-", "+"):
            raise YamlSubsetError(f"line {self.i + 1}: unsupported block scalar header {header!r}")
        self.i += 1
        body: list[str] = []
        block_indent = None
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip():
                this = len(line) - len(line.lstrip(" "))
                if this <= indent:
                    break
                if block_indent is None:
                    block_indent = this
                elif this < block_indent:
                    break
                body.append(line[block_indent:])
            else:
                body.append("")
            self.i += 1
        while body and not body[-1] and chomp != "+":
            body.pop()
        if style == "|":
            text = "\n".join(body)
        else:
            text = " ".join(x for x in body)
        if chomp == "-":
            return text
        return text + "\n" if text else ""

    def _sequence(self, indent: int) -> list:
        result: list[Any] = []
        while True:
            at = self._next_content()
            if at is None or at < indent:
                return result
            line = self.lines[self.i][at:]
            if at != indent or not (line.startswith("- ") or line.rstrip() == "-"):
                return result
            item = line[2:] if line.startswith("- ") else ""
            stripped = item.lstrip(" ")
            if stripped and _KEY.match(stripped):
                # "- key: value" starts a mapping indented at the item's text.
                inner = indent + 2 + (len(item) - len(stripped))
                self.lines[self.i] = " " * inner + stripped
                result.append(self._mapping(inner))
            else:
                result.append(self._value(item, indent))
