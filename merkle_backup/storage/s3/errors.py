"""Every botocore and urllib3 error as one line that says what failed and why (a
``StorageError``, exit 3)."""

from __future__ import annotations

from typing import Any

_THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
     "TooManyRequests", "TooManyRequestsException", "RequestThrottled", "503"}
)


class DeadlineExceeded(Exception):
    """A storage operation would run past its total time (--timeout)."""

    def __init__(self, total: float) -> None:
        super().__init__(f"gave up after {total:g} s without an answer (--timeout {total:g})")
        self.total = total


def error_code(e: BaseException) -> str:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def http_status(e: BaseException) -> int:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0


def describe_error(e: BaseException, action: str, url: str, *, bucket: str = "",
                   sse_c: bool = False) -> str | None:
    """``_describe_error`` with any URL's user and password taken out (botocore's messages
    hold the endpoint, which AWS_ENDPOINT_URL may set with a password in it)."""
    from merkle_backup.display import redacted

    line = _describe_error(e, action, url, bucket=bucket, sse_c=sse_c)
    return None if line is None else redacted(line)


def _describe_error(e: BaseException, action: str, url: str, *, bucket: str = "",
                    sse_c: bool = False) -> str | None:
    """One line for a failure talking to the storage; None for anything that is not one (a bug
    in this program, which must crash with its traceback). ``bucket``: the store's bucket (empty
    before there is one); ``sse_c``: the store sends an SSE-C key."""
    import botocore.exceptions as bx

    try:
        import urllib3.exceptions as ux

        stream_errors: tuple[type[BaseException], ...] = (ux.HTTPError, OSError)
    except ImportError:  # pragma: no cover
        stream_errors = (OSError,)
    where = f"{action} {url}"
    if isinstance(e, bx.ClientError):
        code, status = error_code(e), http_status(e)
        message = e.response.get("Error", {}).get("Message", "") or ""
        attempts = e.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        if code == "NoSuchBucket" or (code == "404" and action == "list"):
            return f"{where}: no such bucket {bucket!r}"
        if code in ("NoSuchKey", "404", "NotFound"):
            return f"{where}: no such object"
        if code == "InvalidAccessKeyId":
            return (f"{where}: access denied: the storage does not know this access key id "
                    "(InvalidAccessKeyId)")
        if code == "SignatureDoesNotMatch":
            return f"{where}: access denied: the secret access key is wrong (SignatureDoesNotMatch)"
        if code in ("ExpiredToken", "TokenRefreshRequired", "InvalidToken"):
            return f"{where}: access denied: the session token has expired or is invalid ({code})"
        if code in _THROTTLE_CODES or status in (429, 503):
            label = f"{code}, HTTP {status}" if code and not code.isdigit() else f"HTTP {status}"
            return (f"{where}: the storage is throttling requests ({label}) "
                    f"and still was after {attempts + 1} attempts; try again later "
                    "(AWS_MAX_ATTEMPTS raises the number of attempts)")
        if status == 400 and not sse_c and action == "read" and (
                "encrypt" in message.lower() or not message):
            # S3 says "The object was stored using a form of Server Side Encryption..." (a HEAD
            # has no body, so only its status is known).
            return (
                f"{where}: bad request (HTTP 400, {code}): if the object is encrypted with "
                f"a customer key (SSE-C), pass --sse-c-key FILE{': ' + message if message else ''}"
            )
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled") or status == 403:
            hint = "wrong credentials or no permission"
            if sse_c and action == "read":
                hint += ", or a wrong SSE-C key (--sse-c-key)"
            return f"{where}: access denied (HTTP 403, {code}): {hint}"
        if code == "PermanentRedirect" or status == 301:
            return f"{where}: the bucket is in another region: pass --region ({message or code})"
        detail = f": {message}" if message else ""
        return f"{where}: {code or 'error'} (HTTP {status}){detail}"
    if isinstance(e, bx.NoCredentialsError):
        return (f"{where}: no AWS credentials found (environment, --profile, shared credentials "
                "file, or an instance/pod role)")
    if isinstance(e, bx.PartialCredentialsError):
        return f"{where}: incomplete AWS credentials: {e}"
    if isinstance(e, bx.ProfileNotFound):
        return f"{where}: {e}"
    if isinstance(e, bx.SSLError):
        return (f"{where}: TLS error: {_first_line(e)} (--ca-bundle FILE trusts a private CA; "
                "--insecure-skip-tls-verify turns checking off)")
    if isinstance(e, DeadlineExceeded):
        return f"{where}: the endpoint did not answer in time: {e}"
    if isinstance(e, bx.ConnectTimeoutError):
        return f"{where}: timed out connecting to the endpoint ({_first_line(e)})"
    if isinstance(e, bx.ReadTimeoutError):
        return f"{where}: the endpoint stopped answering (read timeout)"
    if isinstance(e, bx.EndpointConnectionError):
        endpoint = _endpoint_of(getattr(e, "kwargs", {}).get("endpoint_url", ""))
        return (f"{where}: cannot connect to the endpoint {endpoint} (is it up? is "
                "--endpoint-url right?)")
    if isinstance(e, bx.ConnectionClosedError):
        return f"{where}: the endpoint closed the connection: {_first_line(e)}"
    if isinstance(e, getattr(bx, "ResponseStreamingError", ())):
        # botocore wraps urllib3's ProtocolError("Connection broken: ...", IncompleteRead(...)).
        inner = getattr(e, "kwargs", {}).get("error")
        args: tuple[Any, ...] = tuple(getattr(inner, "args", ()))
        cause = args[-1] if len(args) > 1 else inner
        shown = _first_line(cause) if isinstance(cause, BaseException) else str(cause)
        return f"{where}: the connection broke ({shown})"
    if isinstance(e, bx.IncompleteReadError):
        return f"{where}: the connection closed early ({_first_line(e)})"
    if isinstance(e, bx.FlexibleChecksumError):
        return f"{where}: the object's bytes do not match its stored checksum ({_first_line(e)})"
    if isinstance(e, bx.ParamValidationError):
        return f"{where}: {_first_line(e)}"
    if isinstance(e, (bx.BotoCoreError, bx.HTTPClientError)):
        return f"{where}: {_first_line(e)}"
    if isinstance(e, stream_errors):
        return f"{where}: {type(e).__name__}: {_first_line(e)}"
    return None


def _endpoint_of(url: str) -> str:
    """scheme://host:port of a request URL (the rest is noise in a one-line message)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else (url or "(unknown)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
