"""What the plugin's server and its ObjectStore implementation agree on: the interface, the
errors and how they reach Velero, and the log that Velero shows.

Velero's side, for reference (velero-io/velero d30d389b, hashicorp/go-plugin v1.7.0):

* Errors travel as a gRPC status. Velero's own plugin servers send code Unknown with the error's
  text and a ``generated.Stack`` in the status details (pkg/plugin/framework/common/
  server_errors.go:35-59); its client turns the details back into the error's location
  (common/client_errors.go:33-49) and the error is logged with ``error.file`` and
  ``error.function`` (pkg/util/logging/error_location_hook.go:68-71). We send the same details
  with a code that says what went wrong (``status_of``).
* Logging: a plugin writes JSON lines on stderr with hclog's ``@level`` and ``@message``
  (pkg/plugin/framework/logger.go:27-61); go-plugin's client parses each line and logs it
  through Velero's logger at that level with the other keys as fields (go-plugin client.go:
  1167-1276, log_entry.go:38-75), so every line appears in the Velero server's log with
  ``cmd=<the plugin's path>``. ``@message`` and ``@level`` must be strings: go-plugin's
  parseJSON asserts their type (log_entry.go:48-56). ``logSource`` plus the marker
  ``@logSourceSetBy`` keep the plugin's own file:line (pkg/util/logging/
  log_location_hook.go:83-96).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Protocol

from merkle_backup import errors
from merkle_backup.display import shown

#: The ObjectStore plugin's name: the BSL's ``provider`` (Velero: <DNS subdomain>/<name>,
#: pkg/plugin/framework/common/server_mux.go:86-114).
PLUGIN_NAME = "merkle-backup.io/aws"
#: The plugin kind Velero asks PluginLister for (pkg/plugin/framework/common/plugin_kinds.go).
PLUGIN_KIND = "ObjectStore"


class ObjectStoreBackend(Protocol):
    """Velero's ObjectStore interface (pkg/plugin/velero/object_store.go), in Python.

    Raise ``merkle_backup.errors.Error`` subclasses or ``PluginError``; anything else is a bug,
    reported to Velero as INTERNAL with one line (the traceback goes to the plugin's log only).
    """

    def init(self, config: dict[str, str]) -> None: ...

    def put_object(self, bucket: str, key: str, body: Iterator[bytes]) -> None:
        """``body``: the request chunks' bytes, in order, lazily. It raises (``PluginError``
        CANCELLED) instead of ending if Velero's stream breaks before its end: a truncated
        object never looks complete."""
        ...

    def object_exists(self, bucket: str, key: str) -> bool: ...

    def get_object(self, bucket: str, key: str) -> Iterator[bytes]:
        """Streamed to Velero as Bytes messages as produced, never buffered; an exception
        mid-way aborts the stream with an error status (Velero's download then fails)."""
        ...

    def list_common_prefixes(self, bucket: str, prefix: str, delimiter: str) -> list[str]: ...

    def list_objects(self, bucket: str, prefix: str) -> list[str]: ...

    def delete_object(self, bucket: str, key: str) -> None: ...

    def create_signed_url(self, bucket: str, key: str, ttl_seconds: int) -> str: ...


# gRPC status codes (grpc/grpc doc/statuscodes.md); plain ints so that this module, which the
# ObjectStore imports, does not import grpc.
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
NOT_FOUND = 5
FAILED_PRECONDITION = 9
ABORTED = 10
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
DATA_LOSS = 15


class PluginError(Exception):
    """An error with the gRPC status code Velero receives, for what ``errors.Error`` does not
    say (e.g. NOT_FOUND for an object that does not exist)."""

    def __init__(self, grpc_code: int, message: str) -> None:
        super().__init__(message)
        self.grpc_code = grpc_code
        self.message = message


def status_of(exc: BaseException) -> tuple[int, str]:
    """The gRPC code and the one-line message Velero gets for ``exc``.

    Not authentic (a seal or record that does not match) -> DATA_LOSS; storage unreachable ->
    UNAVAILABLE; a bad BSL config or key file -> INVALID_ARGUMENT; anything else that could
    not be checked -> FAILED_PRECONDITION; a bug -> INTERNAL. Messages are escaped to one line
    (``display.shown``): they may quote object names from the bucket.
    """
    if isinstance(exc, PluginError):
        return exc.grpc_code, one_line(exc.message)
    if isinstance(exc, errors.Error):
        if isinstance(exc, errors.NotAuthentic):
            code = DATA_LOSS
        elif isinstance(exc, errors.StorageError):
            code = UNAVAILABLE
        elif isinstance(exc, errors.UsageError | errors.KeyFileError):
            code = INVALID_ARGUMENT
        else:
            code = FAILED_PRECONDITION
        return code, one_line(exc.diagnostics())
    return INTERNAL, one_line(f"merkle-backup plugin: internal error: {type(exc).__name__}: {exc}")


def one_line(text: str) -> str:
    return shown(text) or "error"


def error_location(exc: BaseException, backend_file: str = "") -> tuple[str, int, str]:
    """(file, line, function) where ``exc`` was raised, the file relative to the package's
    parent (``merkle_backup/plugin/store.py``), as Velero's Stack frames name Go files relative
    to their module: the innermost frame of our code or of the backend's module
    (``backend_file``) other than the server's own, else the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if not frames:
        return "", 0, ""
    server = ("merkle_backup/plugin/server.py", "merkle_backup/plugin/protocol.py")
    backend = _relative(backend_file) if backend_file else None

    def ours(filename: str) -> bool:
        name = _relative(filename)
        return (name.startswith("merkle_backup/") and name not in server) or name == backend

    frame = ([f for f in frames if ours(f.filename)] or frames)[-1]
    return _relative(frame.filename), frame.lineno or 0, frame.name


def _relative(path: str) -> str:
    parts = path.replace(os.sep, "/").split("/")
    if "merkle_backup" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("merkle_backup"):])
    return parts[-1]


# --- the log -----------------------------------------------------------------------------------

#: hclog's level names, most verbose first (go-hclog LevelFromString); Velero's --log-level
#: names (logrus) map onto them.
LEVELS = ("trace", "debug", "info", "warn", "error")
_LOGRUS = {"trace": "trace", "debug": "debug", "info": "info", "warning": "warn", "warn": "warn",
           "error": "error", "fatal": "error", "panic": "error"}
_log_lock = threading.Lock()
_log_threshold = [LEVELS.index("info")]  # set once, from Velero's flags, before serving


def set_log_level(name: str) -> None:
    """Velero passes its own ``--log-level`` to every plugin (clientmgmt/process/
    client_builder.go:56-57); messages below it are not written."""
    level = _LOGRUS.get(name.lower())
    if level is not None:
        _log_threshold[0] = LEVELS.index(level)


def log(level: str, message: str, /, **fields: object) -> None:
    """One log line that Velero's server log shows, at ``level`` (trace, debug, info, warn,
    error), with ``fields`` as its fields (values written as JSON; anything else as text).

    ``message`` and string fields are written as they are (JSON escapes them; Velero's log
    formatter quotes them). The line names the caller's file:line as ``logSource``.
    """
    _write(level, message, 2, fields)


def _write(level: str, message: str, depth: int, fields: dict[str, object]) -> None:
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    if LEVELS.index(level) < _log_threshold[0]:
        return
    caller = sys._getframe(depth)
    entry: dict[str, object] = {}
    for key, value in fields.items():
        entry[key] = value if isinstance(value, str | int | float | bool) or value is None \
            else str(value)
    entry["@level"] = level
    entry["@message"] = str(message)
    entry["logSource"] = f"{_relative(caller.f_code.co_filename)}:{caller.f_lineno}"
    entry["@logSourceSetBy"] = "plugin"
    line = json.dumps(entry, ensure_ascii=True, separators=(",", ":")) + "\n"
    with _log_lock:
        try:
            os.write(2, line.encode())
        except OSError:
            pass  # Velero closed our stderr: nowhere left to say it


def log_exception(message: str, exc: BaseException, /, **fields: object) -> None:
    """An unexpected exception: one error line with the whole traceback as a field (only in
    the plugin's log, never in the status Velero shows)."""
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    _write("error", message, 2, {"error": f"{type(exc).__name__}: {exc}", "traceback": trace,
                                 **fields})
