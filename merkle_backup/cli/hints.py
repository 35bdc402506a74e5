"""What a refusal says beyond the library's own message (issue 15): the file it is about, when
the message does not name it yet, and the common mistake that explains it:

* a tarball that is not gzip-compressed, but a plain tar;
* an archive that is not in Velero's layout (a folder archived with tar, a file outside
  resources/ and metadata/version);
* a proof given where a seal is expected, a seal where a proof is expected, and a seal that is
  neither (damaged, truncated, or another file);
* a private key given to --trust, a public key given to --key.

Used only by the error funnel (``common.funnel``): the library's messages and exit codes are
left as they are. The file is sniffed only when it is local and regular, and only its first
bytes are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from merkle_backup.errors import ArchiveError, Error, FormatError, KeyFileError, NotGzip

SOURCE_KEY = "merkle_backup.source"  # the BackupSource a command opened (common.open_source)
_SNIFF = 4096
_MAGIC_WITHIN = 256  # the magic is the first field of both formats
_PROOF_MAGIC = b"merkle-backup-proof"
_SEAL_MAGIC = b"merkle-backup-seal"


def explain(e: Error, command: str, kwargs: dict[str, Any], source: Any) -> str:
    """The message the user sees: ``e.diagnostics()``, with the file named and a hint added
    (or, for a file of the wrong kind, instead of the decoder's complaint)."""
    message = e.diagnostics()
    label, local = _subject(e, message, command, kwargs, source)
    wrong = _wrong_kind(e, message, local)
    if wrong is not None:
        return f"{label}: {wrong}"
    hint = _hint(e, message, local, kwargs)
    if label and not message.startswith(f"{label}:") and f" {label}" not in message:
        message = f"{label}: {message}"
    return f"{message}; hint: {hint}" if hint else message


def _wrong_kind(e: Error, message: str, local: Path | None) -> str | None:
    """A proof where a seal is expected, or a seal where a proof is expected."""
    if not isinstance(e, FormatError) or local is None:
        return None
    head = _head(local)[:_MAGIC_WITHIN]
    if message.startswith(("seal", "not a seal")) and _PROOF_MAGIC in head:
        return ("not a seal but a proof file (written by `prove`): check it with "
                f"`merkle-backup verify-proof {local} --trust KEY.pub`")
    if message.startswith(("proof", "not a proof")) and _SEAL_MAGIC in head:
        return ("not a proof file but a seal (written by `seal`): verify the backup with "
                "`merkle-backup verify BACKUP --trust KEY.pub`, or write a proof of it with "
                "`merkle-backup prove`")
    return None


def _subject(e: Error, message: str, command: str, kwargs: dict[str, Any],
             source: Any) -> tuple[str | None, Path | None]:
    """The file an error is about (its label, and its local path when it has one)."""
    if isinstance(e, ArchiveError) and source is not None:
        tarball = getattr(source, "tarball", None)
        if isinstance(tarball, Path):
            return str(tarball), tarball
        key = getattr(source, "tarball_key", None)
        store = getattr(source, "store", None)
        if key is not None and store is not None:
            return str(store.url(key)), None
        return None, None
    if isinstance(e, FormatError):
        if message.startswith(("seal", "not a seal")):
            if command == "inspect":
                return _local(kwargs.get("seal_file"))
            if source is not None:
                return _local(getattr(source, "seal_path", None))
        if message.startswith(("proof", "not a proof")) and kwargs.get("proof_file") is not None:
            return _local(kwargs["proof_file"])
    if isinstance(e, KeyFileError):
        for p in [*(kwargs.get("trust") or ()), *key_paths(kwargs)]:
            if p is not None and message.startswith(f"{p}:"):
                return _local(p)
    return None, None


def key_paths(kwargs: dict[str, Any]) -> list[Path]:
    """The --key values of a signing command that are paths (not key references)."""
    from merkle_backup.signers import is_reference

    refs = kwargs.get("key_refs") or ()
    refs = (refs,) if isinstance(refs, str) else refs
    return [Path(r) for r in refs if isinstance(r, str) and not is_reference(r)]


def _local(p: object) -> tuple[str | None, Path | None]:
    if p is None:
        return None, None
    return str(p), (p if isinstance(p, Path) else None)


def _head(path: Path | None) -> bytes:
    """The first bytes of a local regular file, or b"" (never waits on a FIFO, never raises)."""
    if path is None:
        return b""
    try:
        from merkle_backup.storage.files import open_user_file

        with open_user_file(path) as f:
            return f.read(_SNIFF)
    except (Error, OSError):
        return b""


def _hint(e: Error, message: str, local: Path | None, kwargs: dict[str, Any]) -> str | None:
    if isinstance(e, NotGzip):
        head = _head(local)
        if head[257:262] == b"ustar":
            return ("it is an uncompressed tar archive; Velero writes its backups as gzip-"
                    "compressed .tar.gz: give the file Velero wrote")
        return None
    if isinstance(e, ArchiveError):
        reason = getattr(e, "reason", "")
        if "directory entries" in reason or "outside Velero's layout" in reason:
            return ("this archive is not in Velero's layout, which holds only files under "
                    "resources/ and metadata/version and no folder entries: seal the .tar.gz "
                    "that Velero wrote, not an archive made with tar")
        return None
    if isinstance(e, FormatError) and _head(local):
        if message.startswith(("seal", "not a seal")):
            return ("not a seal that merkle-backup wrote (damaged, truncated or another file): "
                    "the backup cannot be verified against it")
        if message.startswith(("proof", "not a proof")):
            return "not a proof file that merkle-backup wrote (damaged, truncated or another file)"
        return None
    if isinstance(e, KeyFileError):
        head = _head(local)
        if b"PRIVATE KEY" in head and local in (kwargs.get("trust") or ()):
            return f"that is a private key: --trust takes the public key, {local}.pub"
        if b"PUBLIC KEY" in head and local in key_paths(kwargs):
            name = local.name.removesuffix(".pub") if local is not None else "KEY"
            return f"that is a public key: --key takes the private key, {name} (without .pub)"
    return None
