"""What every command shares: the error funnel (one line and an exit code per error), the option
decorators, the progress bar, and how a backup, a location and the log are opened from what the
user typed. No command lives here."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from merkle_backup.display import shown
from merkle_backup.errors import Error, ExitCode, Interrupted, NotAuthentic

if TYPE_CHECKING:
    from merkle_backup.archive import Limits
    from merkle_backup.fleet import AuditReport, BackupRow, SealAllReport
    from merkle_backup.signing import PublicKey
    from merkle_backup.storage.options import ConnectionOptions
    from merkle_backup.storage.source import BackupSource, Location
    from merkle_backup.tlog.log import Log

MAX_SHOWN_FAILURES = 50

# An option a user reaches for out of another tool's habit (cosign's --key for the public key),
# and the option of ours it means, when the command has that one and not the other.
DID_YOU_MEAN = {"--key": "--trust", "--pub": "--trust", "--public-key": "--trust",
                "--trust": "--key", "--private-key": "--key"}


def exit_code_table(formatter: click.HelpFormatter) -> None:
    """The exit codes, from ``errors.EXIT_MEANINGS`` (never written out again)."""
    from merkle_backup.errors import EXIT_MEANINGS

    with formatter.section("Exit codes"):
        formatter.write_dl([(str(int(code)), text) for code, text in EXIT_MEANINGS.items()],
                           col_max=4)


class Group(click.Group):
    """The ``merkle-backup`` group: its help ends with the exit-code table too."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        exit_code_table(formatter)


class Command(click.Command):
    """Every command's class: its help ends with the exit-code table (``errors.EXIT_MEANINGS``),
    and a habitual wrong option name gets the right one (``DID_YOU_MEAN``)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        exit_code_table(formatter)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as e:
            meant = DID_YOU_MEAN.get(e.option_name.split("=", 1)[0])
            ours = {o for p in self.params for o in getattr(p, "opts", ())}
            if meant is None or meant not in ours:
                raise
            what = ("the trusted public key (KEY.pub)" if meant == "--trust"
                    else "the private key that signs")
            raise click.NoSuchOption(
                e.option_name, f"No such option: {e.option_name}. Did you mean {meant}? "
                f"{ctx.command_path} takes {what} as {meant} FILE.", ctx=ctx) from None


def command(name: str | None = None, **attrs: Any) -> Callable[[Callable[..., Any]], Command]:
    """``click.command`` with ``Command`` as its class."""
    return click.command(name, cls=Command, **attrs)


def funnel(command: Callable[..., int | None]) -> Callable[..., None]:
    """Turn every deliberate error into one line on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        as_json = kwargs.get("as_json", False)
        try:
            code = command(*args, **kwargs) or ExitCode.VERIFIED
        except Error as e:
            message = explained(e, kwargs)
            click.echo(
                f"merkle-backup: {'not authentic' if isinstance(e, NotAuthentic) else 'error'}: "
                f"{shown(message)}",
                err=True,
            )
            if as_json:  # the same shape as a report, so callers need one parser
                subject = str(kwargs.get("backup") or kwargs.get("proof_file") or "")
                problem = "not authentic" if isinstance(e, NotAuthentic) else "could not check"
                click.echo(json.dumps({
                    "verified": False, "backup": None, "root": None, "tree_size": None,
                    "checked": 0,
                    "failures": [{"path": subject, "problem": problem, "detail": message}],
                    "error": message, "exit_code": e.exit_code,
                }))
            code = e.exit_code
        except Interrupted:
            raise  # the entry point prints the line and exits 130 (it may not wait for threads)
        except KeyboardInterrupt:  # run without the entry point's handler (e.g. in-process)
            click.echo("merkle-backup: interrupted", err=True)
            code = ExitCode.INTERRUPTED
        sys.exit(code)

    return wrapper


def explained(e: Error, kwargs: dict[str, Any]) -> str:
    """The error's message with the file it is about and a hint (cli/hints.py)."""
    from merkle_backup.cli.hints import SOURCE_KEY, explain

    ctx = click.get_current_context(silent=True)
    command = ctx.info_name or "" if ctx is not None else ""
    source = ctx.meta.get(SOURCE_KEY) if ctx is not None else None
    return explain(e, command, kwargs, source)


def trust_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--trust", "trust", multiple=True, required=True, type=click.Path(path_type=Path),
        help="Trusted Ed25519 public key (PEM). Repeatable. Keys in the backup are never used.",
    )(f)


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


class Progress:
    """Progress on stderr, only when stderr is a terminal (nothing otherwise, not even a
    question to the storage): a bar for each pass the library announces (merkle_backup/
    progress.py: ``phase(name, total)``), labelled with the command and the pass; a pass of no
    known length shows its name, then how long it took."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.on = sys.stderr.isatty()
        self.bar: Any = None
        self.waiting: tuple[str, float] | None = None  # a pass of unknown length: (name, start)

    def __enter__(self) -> Progress | None:
        return self if self.on else None

    def __call__(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done)

    def phase(self, name: str, total: int | None) -> None:
        self._close(finished=True)
        if total:
            self.bar = click.progressbar(length=total, label=f"{self.label}: {name}",
                                         file=sys.stderr, show_eta=True)
            self.bar.__enter__()
        else:
            sys.stderr.write(f"{self.label}: {name} ...")
            sys.stderr.flush()
            self.waiting = (name, time.monotonic())

    def _close(self, *, finished: bool) -> None:
        if self.bar is not None:
            if finished and self.bar.pos < self.bar.length:
                # The pass is over; its total was an upper bound (the seal's table is read
                # from its first leaf on, past a head of a few hundred bytes).
                self.bar.update(self.bar.length - self.bar.pos)
            self.bar.__exit__(None, None, None)
            self.bar = None
        if self.waiting is not None:
            sys.stderr.write(f" {time.monotonic() - self.waiting[1]:.1f} s\n")
            sys.stderr.flush()
            self.waiting = None

    def __exit__(self, kind: object, *exc: object) -> None:
        self._close(finished=kind is None)


class RowCount:
    """audit and seal-all on a terminal: one stderr line, redrawn as each backup is done, with
    the count done of all, the running count by status, and the backup just done."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.on = sys.stderr.isatty()
        self.counts: dict[str, int] = {}
        self.width = 0

    def __enter__(self) -> RowCount | None:
        return self if self.on else None

    def __call__(self, row: Any, done: int, total: int) -> None:
        self.counts[row.status] = self.counts.get(row.status, 0) + 1
        so_far = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items()))
        line = f"{self.label}: {done}/{total} backups ({so_far}); last: {shown(row.name)[:40]}"
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()
        self.width = len(line)

    def __exit__(self, *exc: object) -> None:
        if self.width:
            sys.stderr.write("\n")
            sys.stderr.flush()


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
                type=click.FloatRange(min=0.1, max=86400),
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
    return options if options is not None else ConnectionOptions()


def log_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--log and --log-state (the transparency log, merkle_backup/tlog/)."""
    f = click.option("--log-state", "log_state", type=click.Path(path_type=Path),
                     help="The last log checkpoint trusted (default: "
                          "$XDG_STATE_HOME/merkle-backup/log-state.json).")(f)
    return click.option("--log", "log", metavar="DIR|s3://BUCKET/PREFIX",
                        help="The backup transparency log (never under Velero's prefix).")(f)


def max_age_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--max-age", "max_age", type=click.FloatRange(min=0, max=1e8), default=6.0,
                        show_default=True, metavar="HOURS",
                        help="A final backup completed longer ago than this is never sealed "
                             "silently: `seal missing` (keep it above the CronJob period).")(f)


def open_log(log: str, log_state: Path | None, keys: Sequence[PublicKey],
             location: str | None = None) -> Log:
    from merkle_backup.errors import UsageError
    from merkle_backup.tlog.log import Log, LogState
    from merkle_backup.tlog.store import open_log_store

    if location is not None and inside(log, location):
        raise UsageError(f"--log {log} is inside the Velero location {location}: put the log "
                         "elsewhere (a new folder under Velero's prefix breaks its sync)")
    return Log(open_log_store(log, storage(), warn=warn), keys, LogState(log_state))


def inside(log: str, location: str) -> bool:
    import os

    if log.startswith("s3://") != location.startswith("s3://"):
        return False
    if log.startswith("s3://"):
        a, b = log.rstrip("/") + "/", location.rstrip("/") + "/"
        return a.startswith(b)
    a, b = os.path.realpath(log), os.path.realpath(location)
    return a == b or a.startswith(b.rstrip("/") + "/")


def warn(message: str) -> None:
    click.echo(f"merkle-backup: warning: {shown(message)}", err=True)


def open_source(backup: str | Path, seal_path: Path | None) -> BackupSource:
    """A local folder or tarball, or s3://BUCKET/PREFIX/backups/NAME (storage/resolve.py)."""
    from merkle_backup.cli.hints import SOURCE_KEY
    from merkle_backup.storage.resolve import open_backup

    source = open_backup(backup, storage(), seal_path, warn=warn)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[SOURCE_KEY] = source  # for the funnel's hints: which tarball, which seal
    return source


def single_pass(command: Callable[..., Any]) -> Callable[..., Any]:
    """seal, verify, prove: one bulk pass in this process, so the interpreter is tuned for it
    (tuning.bulk_pass: process-wide settings, hence only here, never in a library call nor in
    audit / seal-all, whose passes run on a thread pool)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from merkle_backup.tuning import bulk_pass

        with bulk_pass():
            return command(*args, **kwargs)

    return wrapper


def read_file(path: Path, cap: int) -> bytes:
    """A file the user named: regular (a FIFO or device is refused, never waited on), capped."""
    from merkle_backup.storage.files import read_bounded

    return read_bounded(path, cap, follow=True)


# --- every backup of a storage location (fleet.py) ----------------------------------------------

def open_location(location: str | None, jobs: int) -> Location:
    from merkle_backup.storage.resolve import open_location

    return open_location(location, storage(), pool_size=jobs + 2, warn=warn)


def jobs_option(default: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--jobs", type=click.IntRange(1, 64), default=default, show_default=True,
                        help="Backups processed in parallel.")


def print_rows(rows: Sequence[BackupRow], verbose_failures: bool) -> None:
    names = [shown(r.name) for r in rows]  # folder names under backups/ are the bucket's
    width = max([len(n) for n in names] + [6])
    click.echo(f"{'BACKUP':<{width}}  {'STATUS':<10}  DETAIL")
    for name, row in zip(names, rows, strict=True):
        status = row.status.upper() if row.status in ("tampered", "error") else row.status
        click.echo(f"{name:<{width}}  {status:<10}  {shown(row.detail)}")
        if verbose_failures:
            for failure in row.failures[:MAX_SHOWN_FAILURES]:
                detail = f"  ({shown(failure.detail)})" if failure.detail else ""
                click.echo(f"{'':<{width}}    {failure.problem:<10} {shown(failure.path)}{detail}")


def print_interrupted(report: AuditReport | SealAllReport | None, as_json: bool,
                      verbose_failures: bool) -> None:
    """The rows an interrupted audit or seal-all finished (the entry point then exits 130)."""
    if report is None:
        return
    if as_json:
        click.echo(json.dumps({**report.to_json(), "exit_code": ExitCode.INTERRUPTED,
                               "interrupted": True}, indent=2))
        return
    if report.backups:
        print_rows(report.backups, verbose_failures=verbose_failures)
    for note in report.notes:
        click.echo(f"note: {shown(note)}")


def findings(summary: dict[str, int]) -> str:
    from merkle_backup.tlog.check import BAD

    return "".join(f", {summary[k]} {k}" for k in BAD if summary.get(k))

