"""`keygen`, `seal` (one backup) and `seal-all` (every final backup of a location, with or
without the transparency log)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from merkle_backup.archive import Limits
    from merkle_backup.fleet.sweep import SealAllReport
    from merkle_backup.signers import Signer
    from merkle_backup.storage.source import BackupSource

from merkle_backup.cli.common import (
    command,
    findings,
    funnel,
    open_location,
    open_log,
    open_signing_keys,
    open_source,
    print_interrupted,
    print_rows,
    single_pass,
    warn,
)
from merkle_backup.cli.options import (
    FiniteFloat,
    jobs_option,
    json_option,
    key_option,
    limits_from,
    limits_options,
    log_options,
    max_age_option,
    seal_option,
    storage_options,
    storage_options_for,
)
from merkle_backup.cli.terminal import (
    Progress,
    RowCount,
)
from merkle_backup.display import shown
from merkle_backup.errors import ExitCode, Interrupted


@command()
@click.argument("keyfile", type=click.Path(path_type=Path))
@funnel
def keygen(keyfile: Path) -> None:
    """Write a new Ed25519 key pair: KEYFILE (private, mode 0600) and KEYFILE.pub. A missing
    folder is created (mode 0700)."""
    from merkle_backup.signing import generate_keypair, load_public_key

    if keyfile.name.endswith(".pub"):  # T76: the private key would be written under .pub
        from merkle_backup.errors import UsageError

        raise UsageError(f"{shown(keyfile)}: KEYFILE is where the private key goes (the public "
                         f"key goes to KEYFILE.pub); give {shown(keyfile.name[:-4] or 'signer')}"
                         f", not {shown(keyfile.name)}")
    if not keyfile.parent.exists():
        from merkle_backup.errors import StorageError

        try:
            keyfile.parent.mkdir(mode=0o700, parents=True)
        except OSError as e:
            raise StorageError(f"cannot create {keyfile.parent}: {e.strerror or e}") from e
        click.echo(f"created folder {shown(keyfile.parent)} (mode 0700)")
    private, public = generate_keypair(keyfile)
    key = load_public_key(public)
    click.echo(f"private key: {private}\npublic key:  {public}\nkey id:      {key.key_id.hex()}")


@command()
@click.argument("keyref")
@click.option("-o", "--output", type=click.Path(path_type=Path), metavar="FILE",
              help="Write it to FILE (never replaced) instead of printing it.")
@click.option("--vkey", "vkey_name", metavar="NAME",
              help="The C2SP note verifier key NAME+HASH+BASE64 instead of PEM: a trust file's "
                   "line, and what Go's note package reads.")
@funnel
def pubkey(keyref: str, output: Path | None, vkey_name: str | None) -> None:
    """The public key of KEYREF (a private key file, or a key reference as --key takes it), as
    the PEM that verifiers pin with --trust. The verifier never asks a KMS or an agent."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from merkle_backup.errors import UsageError
    from merkle_backup.signers import open_signer
    from merkle_backup.tlog.note import valid_name, vkey

    if vkey_name is not None and not valid_name(vkey_name):
        raise UsageError(f"--vkey {vkey_name!r}: a note key name has no space, '+' or control "
                         "character")
    signer = open_signer(keyref)
    key = signer.public_key
    signer.close()
    if vkey_name is not None:
        text = vkey(vkey_name, key.raw) + "\n"
    else:
        text = Ed25519PublicKey.from_public_bytes(key.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    if output is None:
        click.echo(text, nl=False)
        return
    from merkle_backup.storage.local import write_atomic

    write_atomic(output, text.encode(), mode=0o644, replace=False)
    click.echo(f"public key of {shown(signer.name)} (key id {key.key_id.hex()}) written to "
               f"{shown(output)}")


@command()
@click.argument("backup")
@key_option(multiple=True)
@seal_option
@click.option("--replace", is_flag=True, help="Overwrite an existing seal.")
@click.option("--force", is_flag=True,
              help="Seal even if classic and -preferredversion copies differ or a manifest's "
                   "metadata disagrees with its path (reported as warnings).")
@click.option("--max-age", "max_age", type=FiniteFloat(min=0, max=1e8), default=6.0,
              show_default=True, metavar="HOURS",
              help="Warn when the backup completed longer ago than this (as seal-all --log's "
                   "`seal missing`); the seal is written all the same.")
@limits_options
@storage_options
@funnel
@single_pass
def seal(backup: str, key_refs: tuple[str, ...], pins: tuple[Path, ...], seal_path: Path | None,
         replace: bool, force: bool, *, max_age: float, max_entry_size: int | None,
         max_entries: int | None) -> None:
    """Seal BACKUP (a backup folder, a .tar.gz, or s3://BUCKET/PREFIX/backups/NAME) with a
    signed Merkle tree."""
    from merkle_backup.builder import seal_backup

    private = open_signing_keys(key_refs, pins)
    source = open_source(backup, seal_path)
    with Progress("seal") as progress:
        result = seal_backup(
            source,
            private,
            created_at=datetime.now(timezone.utc),
            limits=limits_from(max_entry_size, max_entries),
            replace=replace,
            force=force,
            progress=progress,
        )
    cp = result.checkpoint
    click.echo(f"sealed {shown(cp.backup)} (uid {shown(cp.uid)}): {result.entries} tar entries and "
               f"{result.bucket_objects} bucket objects, {cp.tree_size} leaves\n"
               f"root {cp.root.hex()}\nseal {shown(source.seal_path)}")
    for item in result.inconsistencies:
        click.echo(f"warning: sealed despite: {shown(item.path)}: {shown(item.problem)}", err=True)
    late = sealed_late(source, max_age)
    if late:
        warn(late)


def sealed_late(source: BackupSource, max_age: float) -> str | None:
    """The warning for a backup whose velero-backup.json says it completed longer ago than
    ``max_age`` hours (or says nothing of it); None when recent, or with no velero-backup.json."""
    from merkle_backup.velero import BACKUP_OBJECT, backup_times, completed_within

    data = source.read_object(BACKUP_OBJECT)
    if data is None:
        return None
    completed, _ = backup_times(data)
    now = datetime.now(timezone.utc)
    if completed_within(completed, now, timedelta(hours=max_age)):
        return None
    when = (f"completed {completed:%Y-%m-%dT%H:%M:%SZ}" if completed
            else "has no completionTimestamp")
    if completed is not None and completed > now:
        when += " (in the future)"
    return (f"{source.name} {when}, not within --max-age ({max_age:g} h) of now: sealed anyway; "
            "seal-all --log would report it as `seal missing` (check it was not changed before "
            "this seal)")



@command("seal-all")
@click.argument("location", required=False)
@key_option(multiple=True, extra=" With --log: one key, which also signs the log.")
@jobs_option(2)
@log_options
@max_age_option
@click.option("--backfill", is_flag=True, help="Also seal (and, with --log, log) final backups "
              "older than --max-age; run it by hand, after checking them.")
@json_option
@limits_options
@storage_options_for("LOCATION")
@funnel
def seal_all(location: str | None, key_refs: tuple[str, ...], pins: tuple[Path, ...], jobs: int,
             log: str | None,
             log_state: Path | None, max_age: float, backfill: bool, as_json: bool,
             max_entry_size: int | None, max_entries: int | None) -> int:
    """Seal every final backup under LOCATION (s3://BUCKET/PREFIX, or a folder holding backups/)
    that has no seal yet; skip the rest with a reason. Exit 0, or 3 if any could not be sealed."""
    from merkle_backup.errors import UsageError
    from merkle_backup.fleet.sweep import seal_all as run

    if log and len(key_refs) > 1:
        raise UsageError("seal-all --log signs with one --key (the log's origin is its key); "
                         "seal with several keys without --log")
    private = open_signing_keys(key_refs, pins)
    try:
        if log:
            report = seal_all_logged(location, private[0], jobs, log, log_state, max_age, backfill,
                                      limits_from(max_entry_size, max_entries))
        else:
            where = open_location(location, jobs)
            with RowCount("seal-all") as counter:
                report = run(where, private, jobs=jobs, clock=lambda: datetime.now(timezone.utc),
                             limits=limits_from(max_entry_size, max_entries), progress=counter,
                             max_age=timedelta(hours=max_age), backfill=backfill)
    except Interrupted as e:
        print_interrupted(e.partial, as_json, verbose_failures=False)
        raise
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return int(report.exit_code)
    print_rows(report.backups, verbose_failures=False)
    s = report.summary
    click.echo(f"{shown(report.location)}: {s['sealed']} sealed, {s['skipped']} skipped, "
               f"{s['tampered']} with a broken seal, {s['error']} could not be sealed"
               + findings(s))
    for note in report.notes:
        click.echo(f"note: {shown(note)}")
    if report.exit_code == ExitCode.NOT_AUTHENTIC:
        broken = (f", {s['tampered']} backup(s) have a seal that does not decode"
                  if s["tampered"] else "")
        click.echo(f"merkle-backup: not authentic:{(broken + findings(s))[1:]}", err=True)
    elif report.exit_code:
        click.echo(f"merkle-backup: error: {s['error']} backup(s) could not be sealed", err=True)
    return int(report.exit_code)




def seal_all_logged(location: str | None, private: Signer, jobs: int, log: str,
                    log_state: Path | None, max_age: float, backfill: bool,
                    limits: Limits) -> SealAllReport:
    from merkle_backup.fleet.seal_logged import seal_all_logged
    from merkle_backup.signing import public_key_of

    where = open_location(location, jobs)
    return seal_all_logged(where, private, open_log(log, log_state, [public_key_of(private)],
                                                      where.describe()),
                           clock=lambda: datetime.now(timezone.utc),
                           max_age=timedelta(hours=max_age), backfill=backfill, jobs=jobs,
                           limits=limits)
