"""The plugin process: hashicorp go-plugin's handshake and the gRPC services Velero calls.

What Velero's plugin manager does, and so what this serves (velero-io/velero d30d389b,
hashicorp/go-plugin v1.7.0, the version Velero's go.mod:26 pins):

1. Velero starts every executable file under /plugins (pkg/plugin/clientmgmt/process/
   registry.go:130-187) with its own server flags as arguments (client_builder.go:52-57: e.g.
   ``--log-level=info``; unknown ones are ignored, as Velero's framework does,
   pkg/plugin/framework/server.go:143) and the environment go-plugin adds: the magic cookie
   ``VELERO_PLUGIN=hello`` (pkg/plugin/framework/handshake.go:22-31), ``PLUGIN_PROTOCOL_VERSIONS``,
   ``PLUGIN_MIN_PORT``/``PLUGIN_MAX_PORT`` (go-plugin client.go:638-658).
2. The plugin checks the cookie (else a human message and exit 1: go-plugin server.go:258-266),
   listens on a unix socket (in ``PLUGIN_UNIX_SOCKET_DIR`` when set: server.go:139-142,
   578-597) and prints ``CORE|APP|unix|PATH|grpc|`` on stdout (server.go:421-446): core
   protocol 1, Velero's app protocol 2, no TLS certificate (Velero sets no AutoMTLS:
   client_builder.go:66-83). It ignores SIGINT (server.go:460-473).
3. Velero's go-plugin client connects, opens the broker stream and the stdio stream
   (grpc_client.go:58-91), asks ``generated.PluginLister/ListPlugins`` (registry.go:189-208),
   then the ObjectStore's ``Init`` with the BSL's config and its calls; every request names
   the plugin (``plugin`` field, checked here as Velero's ServerMux does: common/
   server_mux.go:66-84).
4. To stop it, ``plugin.GRPCController/Shutdown``, then a kill after 2 s (client.go:498-572).

Each ObjectStore method does what Velero's Go server does (pkg/plugin/framework/
object_store_server.go), with our errors mapped to gRPC status codes (``protocol.status_of``)
plus the Stack detail Velero logs as ``error.file``/``error.function``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from merkle_backup.plugin import _wire
from merkle_backup.plugin.protocol import (
    CANCELLED,
    FAILED_PRECONDITION,
    INTERNAL,
    INVALID_ARGUMENT,
    NOT_FOUND,
    PLUGIN_KIND,
    PLUGIN_NAME,
    ObjectStoreBackend,
    PluginError,
    error_location,
    log,
    log_exception,
    set_log_level,
    status_of,
)

if TYPE_CHECKING:
    import grpc

MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE = "VELERO_PLUGIN", "hello"  # framework/handshake.go:29-30
CORE_PROTOCOL_VERSION = 1  # go-plugin's CoreProtocolVersion
APP_PROTOCOL_VERSION = 2  # framework/handshake.go:27
#: go-plugin's message for a plugin run by hand (server.go:260-263), word for word.
NOT_A_PLUGIN = ("This binary is a plugin. These are not meant to be executed directly.\n"
                "Please execute the program that consumes these plugins, which will\n"
                "load any plugins automatically\n")
#: GetObject's chunks are sent as the backend yields them, cut to at most this size (Velero's
#: own server sends 16 KiB: object_store_client.go:32; a gRPC client's default limit is 4 MiB).
MAX_CHUNK = 1 << 20
#: After Shutdown, running calls get this long before they are cut; go-plugin kills the process
#: 2 s after asking (client.go:554-560).
SHUTDOWN_GRACE = 1.0
WORKERS = 16
#: How long the end of a PutObject stream waits for a cancellation to show (see _body).
END_OF_STREAM_SETTLE = 0.05


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script ``merkle-backup-velero-plugin`` (and the frozen build's executable)."""

    def factory() -> ObjectStoreBackend:
        # Imported when Velero first calls Init, not before the handshake: Velero starts the
        # plugin once per operation, and the store pulls in boto3 and the sealing code.
        from merkle_backup.plugin.store import VeleroObjectStore

        return VeleroObjectStore(log=log)

    serve(factory, argv)


def serve(backend_factory: Callable[[], ObjectStoreBackend],
          argv: list[str] | None = None) -> NoReturn:
    """Serve one plugin process until Velero shuts it down, then exit (``os._exit``: a backend
    call stuck in I/O must not keep the process alive after Shutdown). ``backend_factory`` is
    called once, at the first Init."""
    code = _serve(backend_factory, sys.argv[1:] if argv is None else argv)
    try:
        sys.stderr.flush()
    finally:
        os._exit(code)


def _serve(backend_factory: Callable[[], ObjectStoreBackend], argv: list[str]) -> int:
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write(NOT_A_PLUGIN)
        return 1
    _apply_velero_flags(argv)
    _check_protocol_versions(os.environ.get("PLUGIN_PROTOCOL_VERSIONS", ""))
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from concurrent.futures import ThreadPoolExecutor

    import grpc

    socket_dir = os.environ.get("PLUGIN_UNIX_SOCKET_DIR", "")
    own_dir = not socket_dir
    if own_dir:
        socket_dir = tempfile.mkdtemp(prefix="merkle-backup-plugin-")  # 0700, ours alone
        path = os.path.join(socket_dir, "plugin.sock")
    else:
        path = os.path.join(socket_dir, f"plugin{secrets.token_hex(6)}")
    shutdown = threading.Event()
    # SIGTERM (a pod stopping) shuts down as Shutdown does: the socket and its folder are removed.
    signal.signal(signal.SIGTERM, lambda *_: shutdown.set())
    server = grpc.server(ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="grpc"))
    try:
        server.add_generic_rpc_handlers(_Services(backend_factory, shutdown, grpc).handlers())
        if server.add_insecure_port(f"unix:{path}") == 0:
            raise OSError(f"cannot listen on unix socket {path}")
        server.start()
        # server.go:426-446: CORE|APP|NETWORK|ADDRESS|PROTOCOL|SERVER-CERT (empty: no TLS).
        line = f"{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|unix|{path}|grpc|\n"
        os.write(1, line.encode())
        # Nothing else may reach stdout (go-plugin reads it): stray output goes to the log.
        os.dup2(2, 1)
        log("debug", "plugin serving", socket=path, pid=os.getpid())
        shutdown.wait()
        server.stop(SHUTDOWN_GRACE).wait(SHUTDOWN_GRACE + 1)
        return 0
    except (OSError, RuntimeError) as e:  # grpc: RuntimeError "Failed to bind to address"
        log("error", f"plugin init error: {e}")  # go-plugin: server.go:284-288
        return 1
    finally:
        try:
            if own_dir:
                shutil.rmtree(socket_dir, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass


def _apply_velero_flags(argv: list[str]) -> None:
    """Velero's server flags, passed to every plugin: only ``--log-level`` matters here."""
    for i, arg in enumerate(argv):
        if arg.startswith("--log-level="):
            set_log_level(arg.split("=", 1)[1])
        elif arg == "--log-level" and i + 1 < len(argv):
            set_log_level(argv[i + 1])


def _check_protocol_versions(offered: str) -> None:
    """go-plugin's server picks the newest version both sides know and otherwise announces its
    own, leaving the client to refuse (server.go:148-221); we speak version 2 only."""
    versions = []
    for item in filter(None, offered.split(",")):
        try:
            versions.append(int(item))
        except ValueError:
            log("warn", f"Velero sent an invalid plugin protocol version {item!r}")
    if versions and APP_PROTOCOL_VERSION not in versions:
        log("warn", f"Velero asks for plugin protocol versions {offered}; this plugin speaks "
                    f"version {APP_PROTOCOL_VERSION} only")


class _Services:
    """The gRPC services, as generic handlers over the hand-written codecs in ``_wire``."""

    def __init__(self, backend_factory: Callable[[], ObjectStoreBackend],
                 shutdown: threading.Event, grpc_module: Any) -> None:
        self._factory = backend_factory
        self._backend: ObjectStoreBackend | None = None
        self._ready = False
        self._init_lock = threading.Lock()
        self._shutdown = shutdown
        self._grpc = grpc_module
        self._codes = {code.value[0]: code for code in grpc_module.StatusCode}

    def handlers(self) -> tuple[Any, ...]:
        g = self._grpc
        u, us = g.unary_unary_rpc_method_handler, g.unary_stream_rpc_method_handler
        su, ss = g.stream_unary_rpc_method_handler, g.stream_stream_rpc_method_handler
        generic = g.method_handlers_generic_handler
        return (
            generic("grpc.health.v1.Health", {"Check": u(self.health_check),
                                              "Watch": us(self.health_watch)}),
            generic("plugin.GRPCController", {"Shutdown": u(self.controller_shutdown)}),
            generic("plugin.GRPCStdio", {"StreamStdio": us(self.stream_stdio)}),
            generic("plugin.GRPCBroker", {"StartStream": ss(self.broker_stream)}),
            generic("generated.PluginLister", {"ListPlugins": u(self.list_plugins)}),
            generic("generated.ObjectStore", {
                "Init": u(self.init),
                "PutObject": su(self.put_object),
                "ObjectExists": u(self.object_exists),
                "GetObject": us(self.get_object),
                "ListCommonPrefixes": u(self.list_common_prefixes),
                "ListObjects": u(self.list_objects),
                "DeleteObject": u(self.delete_object),
                "CreateSignedURL": u(self.create_signed_url),
            }),
        )

    # --- errors ---------------------------------------------------------------------------

    def _fail(self, context: grpc.ServicerContext, method: str, exc: BaseException,
              **fields: object) -> NoReturn:
        """End the call with ``exc`` as Velero's servers end theirs: a status whose details
        carry a Stack frame (common/server_errors.go:35-53)."""
        if isinstance(exc, _wire.WireError):
            exc = PluginError(INVALID_ARGUMENT, f"{method}: malformed request: {exc}")
        code, message = status_of(exc)
        if code == INTERNAL:
            log_exception(f"{method} failed", exc, **fields)
        else:
            log("debug", f"{method} refused", error=message, **fields)
        module = sys.modules.get(type(self._backend).__module__) if self._backend else None
        file, line, function = error_location(exc, getattr(module, "__file__", None) or "")
        details = _wire.rpc_status(code, message, [_wire.StackFrame(file, line, function)])
        context.set_trailing_metadata((("grpc-status-details-bin", details),))
        context.abort(self._codes[code], message)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    def _store(self, method: str, plugin: str) -> ObjectStoreBackend:
        """The backend, for a request naming ``plugin``; Init must have succeeded."""
        if plugin != PLUGIN_NAME:
            # Velero's wording (common/server_mux.go:73), with what we serve.
            raise PluginError(NOT_FOUND, f"{PLUGIN_KIND} plugin: {plugin} was not found or has "
                                         f"an invalid name format (this plugin serves "
                                         f"{PLUGIN_NAME})")
        if not self._ready or self._backend is None:
            raise PluginError(FAILED_PRECONDITION, f"{method} before Init: Velero initializes "
                                                   f"an object store before using it")
        return self._backend

    def _unary(self, method: str, request: bytes, context: grpc.ServicerContext,
               run: Callable[[], bytes]) -> bytes:
        try:
            return run()
        except Exception as exc:
            self._fail(context, method, exc)

    # --- go-plugin's services ---------------------------------------------------------------

    def health_check(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """grpc.health.v1: "plugin" (go-plugin's GRPCServiceName) and "" are SERVING; any
        other service is NOT_FOUND, as gRPC's health spec says."""
        def run() -> bytes:
            service = _wire.health_check_request(request)
            if service not in ("", "plugin"):
                raise PluginError(NOT_FOUND, f"unknown service {service}")
            return _wire.health_check_response(1)
        return self._unary("Health/Check", request, context, run)

    def health_watch(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        service = _wire.health_check_request(request)
        yield _wire.health_check_response(1 if service in ("", "plugin") else 3)
        self._idle(context)

    def controller_shutdown(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        log("debug", "plugin shutting down (Shutdown from Velero)")
        self._shutdown.set()
        return _wire.empty()

    def stream_stdio(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Open until the end: this plugin writes nothing to stdout after the handshake, and
        its log goes to stderr, which go-plugin reads directly (client.go:756-760)."""
        self._idle(context)
        yield from ()

    def broker_stream(self, requests: Iterator[bytes],
                      context: grpc.ServicerContext) -> Iterator[bytes]:
        """Accepted and idle: Velero's plugins never open extra connections through the
        broker (no ObjectStore method takes a callback)."""
        try:
            for _ in requests:
                pass
        except self._grpc.RpcError:
            pass
        yield from ()

    def _idle(self, context: grpc.ServicerContext) -> None:
        while context.is_active() and not self._shutdown.wait(0.5):
            pass

    def list_plugins(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """One ObjectStore; ``command`` is our argv[0], as Velero's framework sends os.Args[0]
        (pkg/plugin/framework/server.go:271-283) and Velero runs it again for each operation."""
        def run() -> bytes:
            _wire.any_message(request)
            me = _wire.PluginIdentifier(command=sys.argv[0], kind=PLUGIN_KIND, name=PLUGIN_NAME)
            return _wire.list_plugins_response([me])
        return self._unary("ListPlugins", request, context, run)

    # --- the ObjectStore ---------------------------------------------------------------------

    def init(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        def run() -> bytes:
            req = _wire.init_request(request)
            if req.plugin != PLUGIN_NAME:
                self._store("Init", req.plugin)  # raises: the name check
            with self._init_lock:
                self._ready = False
                if self._backend is None:
                    self._backend = self._factory()
                self._backend.init(req.config)
                self._ready = True
            log("debug", "object store initialized", keys=",".join(sorted(req.config)))
            return _wire.empty()
        return self._unary("Init", request, context, run)

    def put_object(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        fields: dict[str, object] = {}
        try:
            try:
                first = _wire.object_request(next(requests))
            except StopIteration:
                # Velero's server fails on a stream without a chunk: its first Recv is io.EOF
                # (object_store_server.go:85-88); its client sends none for an empty body
                # (object_store_client.go:81-89), so Velero cannot store an empty object.
                raise PluginError(INVALID_ARGUMENT, "PutObject: the stream ended before its "
                                                    "first chunk (no bucket, no key)") from None
            fields = {"bucket": first.bucket, "key": first.key}
            backend = self._store("PutObject", first.plugin)
            body = self._body(first, requests, context)
            backend.put_object(first.bucket, first.key, body)
            if next(body, None) is not None:
                raise RuntimeError("the object store returned before reading the whole body")
            return _wire.empty()
        except self._grpc.RpcError:
            self._fail(context, "PutObject", PluginError(
                CANCELLED, "PutObject: Velero's stream broke before its end"), **fields)
        except Exception as exc:
            self._fail(context, "PutObject", exc, **fields)

    def _body(self, first: _wire.ObjectRequest, requests: Iterator[bytes],
              context: grpc.ServicerContext) -> Iterator[bytes]:
        """The chunks' bytes in order. Every chunk must name the same plugin, bucket and key
        (Velero's client repeats them: object_store_client.go:97); a stream that breaks
        raises rather than ends, so the backend never takes a prefix for the object."""
        yield first.body
        header = _wire.object_header(first)
        try:
            for raw in requests:
                body = _wire.chunk_body(raw, header)
                if body is not None:
                    yield body
                    continue
                chunk = _wire.object_request(raw)
                if (chunk.plugin, chunk.bucket, chunk.key) != (first.plugin, first.bucket,
                                                               first.key):
                    raise PluginError(INVALID_ARGUMENT, f"PutObject: a chunk for "
                                      f"{chunk.bucket}/{chunk.key} in the stream of "
                                      f"{first.bucket}/{first.key}")
                yield chunk.body
        except self._grpc.RpcError:
            raise PluginError(CANCELLED, "PutObject: Velero's stream broke before its end") \
                from None
        # gRPC Python reports a cancelled stream (RST_STREAM) first as the end of its messages,
        # like a half-close, and only then as cancelled: give the cancellation time to show
        # before the object is taken as whole.
        deadline = time.monotonic() + END_OF_STREAM_SETTLE
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.002)
        if not context.is_active():
            raise PluginError(CANCELLED, "PutObject: Velero's stream broke before its end")

    def object_exists(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        def run() -> bytes:
            req = _wire.object_request(request)
            exists = self._store("ObjectExists", req.plugin).object_exists(req.bucket, req.key)
            return _wire.object_exists_response(bool(exists))
        return self._unary("ObjectExists", request, context, run)

    def get_object(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """The backend's chunks as they come: an exception mid-way ends the stream with an
        error status, so Velero's reader fails instead of seeing a short object
        (object_store_client.go:133-146)."""
        fields: dict[str, object] = {}
        chunks: Iterator[bytes] | None = None
        try:
            req = _wire.object_request(request)
            fields = {"bucket": req.bucket, "key": req.key}
            chunks = iter(self._store("GetObject", req.plugin).get_object(req.bucket, req.key))
            for chunk in chunks:
                view = memoryview(chunk)
                for start in range(0, len(view), MAX_CHUNK):
                    yield _wire.bytes_message(bytes(view[start:start + MAX_CHUNK]))
        except Exception as exc:
            self._fail(context, "GetObject", exc, **fields)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def list_common_prefixes(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        def run() -> bytes:
            req = _wire.list_common_prefixes_request(request)
            found = self._store("ListCommonPrefixes", req.plugin).list_common_prefixes(
                req.bucket, req.prefix, req.delimiter)
            return _wire.strings_response(found)
        return self._unary("ListCommonPrefixes", request, context, run)

    def list_objects(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        def run() -> bytes:
            req = _wire.list_objects_request(request)
            keys = self._store("ListObjects", req.plugin).list_objects(req.bucket, req.prefix)
            return _wire.strings_response(keys)
        return self._unary("ListObjects", request, context, run)

    def delete_object(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        def run() -> bytes:
            req = _wire.object_request(request)
            self._store("DeleteObject", req.plugin).delete_object(req.bucket, req.key)
            return _wire.empty()
        return self._unary("DeleteObject", request, context, run)

    def create_signed_url(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        def run() -> bytes:
            req = _wire.create_signed_url_request(request)
            backend = self._store("CreateSignedURL", req.plugin)
            # A Go time.Duration in nanoseconds (object_store_server.go:268); Velero asks for
            # 10 minutes. Whole seconds, at least one: S3 presigns in seconds.
            if req.ttl_ns <= 0:
                raise PluginError(INVALID_ARGUMENT, f"CreateSignedURL: ttl {req.ttl_ns} ns is "
                                                    f"not positive")
            ttl_seconds = max(1, req.ttl_ns // 1_000_000_000)
            return _wire.create_signed_url_response(
                backend.create_signed_url(req.bucket, req.key, ttl_seconds))
        return self._unary("CreateSignedURL", request, context, run)


if __name__ == "__main__":  # python -m merkle_backup.plugin.server: the same as the console script
    main()
