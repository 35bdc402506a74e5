"""The option decorators the commands share: keys and trust, JSON output, seals, limits, the S3
connection (named after a BackupStorageLocation's settings), the log, --max-age and --jobs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from merkle_backup.archive import Limits
    from merkle_backup.storage.options import ConnectionOptions


class FiniteFloat(click.FloatRange):
    """``click.FloatRange`` that also refuses nan and inf (nan passes every range comparison
    and then crashes date arithmetic): a usage error, exit 2 (docs/threat-model.md T74)."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def trust_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--trust", "trust", multiple=True, required=True, type=click.Path(path_type=Path),
        help="Trusted Ed25519 public key (PEM), or a trust file of several keys with their "
             "bounds (docs/format.md §6.3). Repeatable. Keys in the backup are never used.",
    )(f)


KEY_HELP = ("Signing key: a PEM private key file, or a key reference: ssh-agent[:SHA256:FP], "
            "awskms:///KEY (or awskms://HOST:PORT/KEY), hashivault://KEY, openbao://KEY, "
            "pkcs11:URI (README, docs/format.md §6.1).")
PUB_HELP = ("Pin the signing key: refuse to sign unless --key's public key is this one (PEM, or "
            "a trust file). Repeatable.")


def key_option(*, multiple: bool = False, required: bool = True, name: str = "key_refs",
               extra: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--key KEYREF`` (repeatable for overlap rotation where ``multiple``) and ``--pub FILE``:
    what every signing command takes (docs/format.md §6.1)."""
    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option("--pub", "pins", multiple=True, type=click.Path(path_type=Path),
                         metavar="FILE", help=PUB_HELP)(f)
        more = " Repeat to sign with several keys (overlap rotation)." if multiple else ""
        return click.option("--key", name, multiple=multiple, required=required,
                            metavar="KEYREF", help=KEY_HELP + more + extra)(f)
    return decorate


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(f)


def seal_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--seal",
        "seal_path",
        type=click.Path(path_type=Path),
        help="Seal file (default: <backup-dir>/<name>-merkle.seal, or X.seal beside a bare "
             "tarball X).",
    )(f)


def limits_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--max-entry-size",
        type=click.IntRange(min=1),
        help="Largest entry in bytes (default 64 MiB).",
    )(f)
    f = click.option(
        "--max-entries", type=click.IntRange(min=1), help="Most entries (default 5,000,000)."
    )(f)
    return f


def limits_from(max_entry_size: int | None, max_entries: int | None) -> Limits:
    from merkle_backup.archive import Limits

    overrides: dict[str, int] = {}
    if max_entry_size:
        overrides["max_entry_size"] = max_entry_size
    if max_entries:
        overrides["max_entries"] = max_entries
    return Limits(**overrides)
STORAGE_KEY = "merkle_backup.storage"


BSL_HELP = {
    "BACKUP": "Read the settings below, and the bucket and prefix, from a "
              "BackupStorageLocation manifest (JSON, or simple YAML): BACKUP may then be a bare "
              "NAME. Options given here win.",
    "LOCATION": "Read the settings below, and the bucket and prefix, from a "
                "BackupStorageLocation manifest (JSON, or simple YAML): LOCATION may then be "
                "left out. Options given here win.",
    "URL": "Read the settings below from a BackupStorageLocation manifest (JSON, or simple "
           "YAML), to reach URL. Options given here win.",
    "--log": "Read the settings below from a BackupStorageLocation manifest (JSON, or simple "
             "YAML), to reach the --log bucket. Options given here win.",
}


def storage_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """S3 connection options, named after a Velero BackupStorageLocation's settings. They are
    kept in the click context (read by open_source), so commands do not pass them around."""
    return _storage_options(f, "BACKUP")


def storage_options_for(argument: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``storage_options`` for a command whose argument is not a BACKUP (LOCATION, URL, or
    --log): what --bsl's help says it gives."""
    return functools.partial(_storage_options, argument=argument)


def _storage_options(f: Callable[..., Any], argument: str) -> Callable[..., Any]:
    bsl_help = BSL_HELP[argument]

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from merkle_backup.storage.options import ConnectionOptions

        click.get_current_context().meta[STORAGE_KEY] = ConnectionOptions(
            endpoint_url=kwargs.pop("endpoint_url"), region=kwargs.pop("region"),
            profile=kwargs.pop("profile"), path_style=kwargs.pop("path_style") or None,
            ca_bundle=kwargs.pop("ca_bundle"),
            insecure_skip_tls_verify=kwargs.pop("insecure_skip_tls_verify") or None,
            sse_c_key_file=kwargs.pop("sse_c_key"), bsl=kwargs.pop("bsl"),
            timeout=kwargs.pop("timeout"),
        )
        return f(*args, **kwargs)

    wrapper.__click_params__ = list(getattr(f, "__click_params__", []))  # type: ignore[attr-defined]
    path = click.Path(path_type=Path)
    for option in reversed(
        [
            click.option("--bsl", type=path, help=bsl_help),
            click.option(
                "--endpoint-url", help="S3 endpoint (BSL s3Url), for MinIO, Ceph and others."
            ),
            click.option("--region", help="Bucket region (BSL region)."),
            click.option("--profile", help="AWS profile for credentials (BSL profile)."),
            click.option(
                "--path-style", is_flag=True, help="Path-style addressing (BSL s3ForcePathStyle)."
            ),
            click.option(
                "--ca-bundle", type=path, help="PEM CA bundle for the endpoint's TLS (BSL caCert)."
            ),
            click.option(
                "--insecure-skip-tls-verify",
                is_flag=True,
                help="Do not check the endpoint's TLS certificate (BSL insecureSkipTLSVerify).",
            ),
            click.option(
                "--sse-c-key",
                type=path,
                help="SSE-C key file, 32 raw bytes (BSL customerKeyEncryptionFile).",
            ),
            click.option(
                "--timeout",
                type=FiniteFloat(min=0.1, max=86400),
                metavar="SECONDS",
                help="Most time one storage operation may take, retries included (default "
                "60); each connect and read waits a third of it at most.",
            ),
        ]
    ):
        wrapper = option(wrapper)
    return wrapper


def storage() -> ConnectionOptions:
    from merkle_backup.storage.options import ConnectionOptions

    ctx = click.get_current_context(silent=True)
    options: ConnectionOptions | None = ctx.meta.get(STORAGE_KEY) if ctx is not None else None
    # Checked here, where the command's error funnel turns a refusal into one line (exit 2).
    return options.checked() if options is not None else ConnectionOptions()


def log_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--log, --log-name and --log-state (the transparency log, merkle_backup/tlog/)."""
    f = log_name_option(f)
    f = click.option("--log-state", "log_state", type=click.Path(path_type=Path),
                     help="The last log checkpoint trusted (default: "
                          "$XDG_STATE_HOME/merkle-backup/log-state.json).")(f)
    return click.option("--log", "log", metavar="DIR|s3://BUCKET/PREFIX",
                        help="The backup transparency log (never under Velero's prefix).")(f)


LOG_NAME_KEY = "merkle_backup.log_name"


def log_name_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """--log-name, kept in the click context (read by open_log)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        click.get_current_context().meta[LOG_NAME_KEY] = kwargs.pop("log_name")
        return f(*args, **kwargs)

    wrapper.__click_params__ = list(getattr(f, "__click_params__", []))  # type: ignore[attr-defined]
    return click.option("--log-name", "log_name", metavar="NAME",
                        help="The log's name, when one key signs several logs (one per "
                             "cluster): part of its signed origin. Default: none, the key's "
                             "own log.")(wrapper)


def log_name() -> str | None:
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(LOG_NAME_KEY) if ctx is not None else None


def max_age_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--max-age", "max_age", type=FiniteFloat(min=0, max=1e8), default=6.0,
                        show_default=True, metavar="HOURS",
                        help="A final backup completed longer ago than this is never sealed "
                             "silently: seal-all skips it (--backfill seals it), audit names it, "
                             "`seal missing` with --log (keep it above the CronJob period).")(f)
def jobs_option(default: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--jobs", type=click.IntRange(1, 64), default=default, show_default=True,
                        help="Backups processed in parallel.")
