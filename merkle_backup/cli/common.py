"""What every command shares: the error funnel (one line and an exit code per error), the help
with its exit-code table, and how a backup, a location and the log are opened from what the
user typed (options.py holds the option decorators, terminal.py the progress display). No
command lives here."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from merkle_backup.cli.options import log_name, storage
from merkle_backup.display import redacted, shown
from merkle_backup.errors import Error, ExitCode, Interrupted, NotAuthentic

if TYPE_CHECKING:
    from merkle_backup.fleet.sweep import AuditReport, BackupRow, SealAllReport
    from merkle_backup.signers import Signer
    from merkle_backup.signing import PublicKey
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


# click >= 8.2 raises this usage error, whose message is the whole help, for a bare group.
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class Group(click.Group):
    """The ``merkle-backup`` group: its help ends with the exit-code table too, and a usage
    error (an unknown option, a malformed value, a missing argument) is one line and exit 2,
    like every other error, instead of click's three (``Usage:``, ``Try ...``, ``Error:``)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        exit_code_table(formatter)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as e:
            if isinstance(e, _NO_ARGS_IS_HELP):  # bare `merkle-backup`: the help, as click shows it
                e.show()
                sys.exit(e.exit_code)
            where = e.ctx.command_path if e.ctx is not None else "merkle-backup"
            said = " ".join(e.format_message().split())
            click.echo(f"merkle-backup: error: {shown(said)} (see '{shown(where)} --help')",
                       err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"merkle-backup: error: {shown(' '.join(e.format_message().split()))}",
                       err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


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
            message = redacted(explained(e, kwargs))  # T71: no URL's password in a log
            click.echo(
                f"merkle-backup: {'not authentic' if isinstance(e, NotAuthentic) else 'error'}: "
                f"{shown(message)}",
                err=True,
            )
            if as_json:  # the same shape as a report, so callers need one parser
                subject = redacted(str(kwargs.get("backup") or kwargs.get("proof_file") or ""))
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


def open_log(log: str, log_state: Path | None, keys: Sequence[PublicKey],
             location: str | None = None) -> Log:
    from merkle_backup.errors import UsageError
    from merkle_backup.tlog.log import Log, LogState
    from merkle_backup.tlog.store import open_log_store

    if location is not None and inside(log, location):
        raise UsageError(f"--log {log} is inside the Velero location {location}: put the log "
                         "elsewhere (a new folder under Velero's prefix breaks its sync)")
    return Log(open_log_store(log, storage(), warn=warn), keys, LogState(log_state), log_name())


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


def open_signing_keys(refs: Sequence[str], pins: Sequence[Path]) -> list[Signer]:
    """``--key`` (each a path or a key reference) and ``--pub``: the signers, opened and checked
    against the pinned keys before anything is read or signed (docs/format.md §6.1)."""
    from merkle_backup.signers import open_signers
    from merkle_backup.trustfile import load_trusted

    pinned = [key for path in pins for key in load_trusted(path)]
    return list(open_signers(refs, pins=pinned))
