"""Every error merkle-backup raises on purpose.

Two families, because callers and exit codes depend on the difference (docs/format.md §8):

* ``NotAuthentic``: the input was checked and it is not what was sealed (exit 1).
* ``CannotCheck``: the input could not be checked at all: missing file, unreadable or malformed
  seal, bad key, I/O, an archive the sealer refuses (exit 3).

Bugs are not caught anywhere: they crash with a traceback.

``Interrupted`` is not an ``Error``: it is how a SIGINT reaches the command line (exit 130).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """The exit codes (README, docs/format.md §8): the only place they are written down."""

    VERIFIED = 0
    NOT_AUTHENTIC = 1
    USAGE = 2
    CANNOT_CHECK = 3
    INTERRUPTED = 130


#: What each exit code means, as every command's help and README's table say it
#: (tests/test_help.py checks both against this).
EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.VERIFIED: "verified",
    ExitCode.NOT_AUTHENTIC: "not authentic: tampering or corruption found (each failure named "
                            "with its path)",
    ExitCode.USAGE: "usage error",
    ExitCode.CANNOT_CHECK: "could not check: missing file, unreadable input, malformed seal, "
                           "bad key, I/O",
    ExitCode.INTERRUPTED: "interrupted (SIGINT); audit and seal-all print the rows they "
                          "finished first",
}


class Error(Exception):
    """Base of every deliberate merkle-backup error; its class decides the exit code."""

    exit_code = ExitCode.CANNOT_CHECK

    def diagnostics(self) -> str:
        """The whole message, exactly (it may hold attacker-controlled paths, even newlines):
        whoever prints it to a terminal escapes it (``display.shown``); JSON carries it as it is.
        """
        return str(self) or type(self).__name__


class CannotCheck(Error):
    """The input could not be checked (exit 3)."""

    exit_code = ExitCode.CANNOT_CHECK


class NotAuthentic(Error):
    """The input was checked and does not match what was sealed (exit 1)."""

    exit_code = ExitCode.NOT_AUTHENTIC


class ArchiveError(CannotCheck):
    """The tarball breaks the strict reader's rules (docs/format.md §2).

    ``path`` names the offending entry when there is one. When sealing this is a refusal
    (exit 3); the verifier turns it into a ``malformed`` failure, since a sealed archive was
    well-formed when it was sealed.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}" if path else message)


class NotGzip(ArchiveError):
    """The tarball object is not a gzip stream at all (e.g. stored in aws-chunked framing,
    Velero issue #9951): nothing can be checked, so even the verifier says "could not check"."""


class LimitExceeded(ArchiveError):
    """A configured cap (entry size, entry count, total size, path or PAX length) was hit.

    ``limit`` names the cap (a field of archive.Limits), so that a verifier can tell whether
    the sealed backup itself is that large (verifier.archive_verdict)."""

    def __init__(self, message: str, path: str | None = None, *, limit: str) -> None:
        super().__init__(message, path)
        self.limit = limit


class FormatError(CannotCheck):
    """A seal or proof file is not a valid file of its format (strict decoding)."""


class KeyFileError(CannotCheck):
    """A key file is unreadable, of the wrong type, or a weak (low-order / non-canonical) key."""


class SignatureError(NotAuthentic):
    """No trusted key produced the checkpoint's signature."""


class ProofError(NotAuthentic):
    """A Merkle proof does not lead to the signed root, or has the wrong shape."""


class StorageError(CannotCheck):
    """Reading or writing the backup's storage (local folder or S3) failed."""


class UsageError(Error):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = ExitCode.USAGE


class Interrupted(BaseException):
    """The user interrupted the run (SIGINT): exit 130, whatever was found so far.

    Raised by the command line's SIGINT handler (``merkle_backup._entry``) instead of
    ``KeyboardInterrupt``, so that click does not turn it into "Aborted!" and exit 1. Not an
    ``Error`` (nor an ``Exception``): no ``except Exception`` may swallow it. ``partial`` carries
    what a fleet run had finished (``fleet.audit`` / ``fleet.seal_all`` rows), or None.
    """

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, partial: Any = None) -> None:
        super().__init__("interrupted")
        self.partial: Any = partial  # rows or a report: whatever the interrupted run returns


class SignerError(CannotCheck):
    """A signer (key file, ssh-agent, KMS, Vault/OpenBao transit, PKCS#11 token) could not sign:
    it failed, timed out, refused, or answered a signature that does not verify with its public
    key (or with the key the user pinned). Nothing is written after it (exit 3)."""
