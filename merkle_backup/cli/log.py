"""The transparency log's own commands: `forget` (a signed tombstone) and `witness` (a
cosignature)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click

from merkle_backup.cli.common import (
    command,
    funnel,
    open_log,
    open_signing_keys,
)
from merkle_backup.cli.options import (
    key_option,
    log_name_option,
    storage_options_for,
    trust_option,
)
from merkle_backup.display import shown


@command()
@click.argument("name")
@key_option()
@click.option("--log", "log", required=True, metavar="DIR|s3://BUCKET/PREFIX", help="The log.")
@click.option("--log-state", "log_state", type=click.Path(path_type=Path), help="See seal-all.")
@log_name_option
@storage_options_for("--log")
@funnel
def forget(name: str, key_refs: str, pins: tuple[Path, ...], log: str,
           log_state: Path | None) -> None:
    """Log a signed tombstone for backup NAME: deleting it on purpose (before its expiration)
    is then not `deleted early`."""
    from merkle_backup.tlog.check import forget as run

    [private] = open_signing_keys([key_refs], pins)
    index, entry = run(open_log(log, log_state, [private.public_key]), private, name,
                       lambda: datetime.now(timezone.utc))
    click.echo(f"forgot {shown(name)} (uid {shown(entry.uid)}, root {entry.root.hex()}): "
               f"tombstone at log entry {index}")


@command()
@click.option(
    "--log", "log", required=True, metavar="DIR|s3://BUCKET/PREFIX", help="The log to witness."
)
@trust_option
@key_option(extra=" The witness's own key.")
@click.option("--name", "name", help="The witness's name in its cosignature (default: "
              "merkle-backup-witness/<key id prefix>).")
@click.option("--state", "log_state", type=click.Path(path_type=Path),
              help="The witness's own state: the last checkpoint it cosigned.")
@log_name_option
@storage_options_for("--log")
@funnel
def witness(log: str, trust: tuple[Path, ...], key_refs: str, pins: tuple[Path, ...],
            name: str | None, log_state: Path | None) -> None:
    """Check that the log (signed by a --trust key) extends the last checkpoint this witness
    saw, then add a C2SP cosignature (tlog-cosignature/v1) to its checkpoint."""
    from merkle_backup.errors import UsageError
    from merkle_backup.tlog.check import witness as run
    from merkle_backup.tlog.note import valid_name
    from merkle_backup.trustfile import load_trusted

    [private] = open_signing_keys([key_refs], pins)
    me = private.public_key
    name = name or f"merkle-backup-witness/{me.key_id.hex()[:16]}"
    if not valid_name(name):
        raise UsageError(f"--name {name!r}: a note key name has no space, '+' or control character")
    trusted = [k for p in trust for k in load_trusted(p)]
    head = run(open_log(log, log_state, trusted), private, name, lambda: datetime.now(timezone.utc))
    click.echo(f"cosigned {shown(head.checkpoint.origin)} at {head.size} entries as {shown(name)}")
